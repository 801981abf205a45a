using Onnx;

namespace MlNetGuide.Modules.Onnx;

/// <summary>
/// Bounds an untrusted ONNX model on the wire, before Google.Protobuf materializes it: the number of tensors, nodes,
/// metadata entries and dimensions, all elements together, and the nesting depth; and refuses tensors whose data lives
/// in an external file (ONNX Runtime would open that path next to the model). Google.Protobuf bounds bytes and
/// recursion, not objects: a 269 KB zip of 30 M empty initializers parses into gigabytes, so the walk counts first.
/// </summary>
/// <remarks>
/// Hand-written because nothing served walks protobuf's wire format without building the messages: about a hundred
/// lines over a span, following onnx.proto's field numbers (taken from OnnxSharp's generated types). Every field
/// occurrence counts as one element; packed numbers count once (their memory is their bytes).
/// </remarks>
internal static class OnnxWireBounds
{
    /// <summary>Bounds generous for any graph we or a model zoo export, far below what a crafted file asks for.</summary>
    public sealed record Limits
    {
        public int Tensors { get; init; } = 65_536;
        public int Nodes { get; init; } = 65_536;
        public int MetadataEntries { get; init; } = 1_024;
        public int DimsPerShape { get; init; } = 64;
        public int Elements { get; init; } = 1 << 20;
        /// <summary>Numbers in packed varint fields (dims, int64_data, ints): each becomes 8 bytes from as little as 1.</summary>
        public int PackedNumbers { get; init; } = 1 << 23;
        public int Depth { get; init; } = 32;

        public static Limits Default { get; } = new();
    }

    private enum Kind { Leaf, Model, Graph, Node, Attribute, Tensor, SparseTensor, ValueInfo, Type, TypeTensor, TypeSequence, TypeMap, TypeOptional, Shape, Dimension, Entry, Function, TrainingInfo, TensorAnnotation }

    private sealed class Counts(Limits limits, string source)
    {
        public readonly Limits Limits = limits;
        public readonly string Source = source;
        public int Tensors, Nodes, Metadata, Elements, Numbers;

        public void Add(ref int count, int limit, string what)
        {
            if (++count > limit) throw Refuse($"more than {limit:N0} {what}");
            if (++Elements > Limits.Elements) throw Refuse($"more than {Limits.Elements:N0} protobuf elements");
        }

        public ModelFormatException Refuse(string what) => new($"{Source}: the ONNX model holds {what}; refused before parsing it.");
    }

    /// <summary>Checks the bytes of a ModelProto.</summary>
    /// <exception cref="ModelFormatException">A bound is passed, a tensor names external data, or the bytes are not protobuf.</exception>
    public static void Check(ReadOnlySpan<byte> model, string source, Limits? limits = null) =>
        Walk(model, Kind.Model, new Counts(limits ?? Limits.Default, source), depth: 0);

    private static void Walk(ReadOnlySpan<byte> message, Kind kind, Counts counts, int depth)
    {
        if (depth >= counts.Limits.Depth) throw counts.Refuse($"messages nested more than {counts.Limits.Depth} deep");
        int dims = 0, pos = 0;
        while (pos < message.Length)
        {
            ulong tag = Varint(message, ref pos, counts);
            int field = (int)(tag >> 3), wire = (int)(tag & 7);
            if (field == 0) throw counts.Refuse("a field numbered 0 (not protobuf)");
            ReadOnlySpan<byte> payload = default;
            ulong number = 0;
            switch (wire)
            {
                case 0: number = Varint(message, ref pos, counts); break;
                case 1: Skip(message, ref pos, 8, counts); break;
                case 5: Skip(message, ref pos, 4, counts); break;
                case 2:
                    ulong length = Varint(message, ref pos, counts);
                    if (length > (ulong)(message.Length - pos)) throw counts.Refuse("a field longer than its message (cut or not protobuf)");
                    payload = message.Slice(pos, (int)length);
                    pos += (int)length;
                    break;
                default: throw counts.Refuse($"protobuf wire type {wire}, which ONNX does not use");
            }

            if (kind == Kind.Tensor && field == TensorProto.DataLocationFieldNumber && wire == 0 && number == (ulong)TensorProto.Types.DataLocation.External ||
                kind == Kind.Tensor && field == TensorProto.ExternalDataFieldNumber)
                throw counts.Refuse("a tensor stored in an external file (ONNX external data); MlNetGuide loads no file but the one given");
            int packed = wire == 2 && PackedVarints(kind, field) ? CountVarints(payload) : 0;
            if (packed > 0 && (counts.Numbers += packed) > counts.Limits.PackedNumbers)
                throw counts.Refuse($"more than {counts.Limits.PackedNumbers:N0} packed numbers");
            if (kind is Kind.Tensor && field == TensorProto.DimsFieldNumber || kind is Kind.Shape && field == TensorShapeProto.DimFieldNumber ||
                kind is Kind.SparseTensor && field == SparseTensorProto.DimsFieldNumber)
            {
                dims += wire == 2 && kind != Kind.Shape ? packed : 1;
                if (dims > counts.Limits.DimsPerShape) throw counts.Refuse($"a shape of more than {counts.Limits.DimsPerShape} dimensions");
            }

            var child = wire == 2 ? Child(kind, field) : Kind.Leaf;
            switch (child)
            {
                case Kind.Tensor or Kind.SparseTensor: counts.Add(ref counts.Tensors, counts.Limits.Tensors, "tensors"); break;
                case Kind.Node: counts.Add(ref counts.Nodes, counts.Limits.Nodes, "nodes"); break;
                case Kind.Entry when kind is Kind.Model or Kind.Graph or Kind.Node or Kind.Tensor:
                    counts.Add(ref counts.Metadata, counts.Limits.MetadataEntries, "metadata entries"); break;
                default:
                    if (++counts.Elements > counts.Limits.Elements) throw counts.Refuse($"more than {counts.Limits.Elements:N0} protobuf elements");
                    break;
            }
            if (child != Kind.Leaf) Walk(payload, child, counts, depth + 1);
        }
    }

    // FunctionProto's attribute_proto and value_info (onnx.proto 1.13+; OnnxSharp's older types keep them as unknown
    // fields, which parse into one byte string each, but a newer parser would build them).
    private const int FunctionAttributeProtoField = 11, FunctionValueInfoField = 12;

    /// <summary>
    /// The message kind of field <paramref name="field"/> of a <paramref name="parent"/> (onnx.proto), or Leaf. Every
    /// field that holds a message with repeated fields inside is walked; a Leaf is a scalar, a string or a message of
    /// scalars, one element each.
    /// </summary>
    private static Kind Child(Kind parent, int field) => parent switch
    {
        Kind.Model => field switch
        {
            ModelProto.GraphFieldNumber => Kind.Graph,
            ModelProto.MetadataPropsFieldNumber => Kind.Entry,
            ModelProto.TrainingInfoFieldNumber => Kind.TrainingInfo,
            ModelProto.FunctionsFieldNumber => Kind.Function,
            _ => Kind.Leaf,
        },
        Kind.Graph => field switch
        {
            GraphProto.NodeFieldNumber => Kind.Node,
            GraphProto.InitializerFieldNumber => Kind.Tensor,
            GraphProto.SparseInitializerFieldNumber => Kind.SparseTensor,
            GraphProto.InputFieldNumber or GraphProto.OutputFieldNumber or GraphProto.ValueInfoFieldNumber => Kind.ValueInfo,
            GraphProto.QuantizationAnnotationFieldNumber => Kind.TensorAnnotation,
            _ => Kind.Leaf,
        },
        Kind.Node => field == NodeProto.AttributeFieldNumber ? Kind.Attribute : Kind.Leaf,
        Kind.Attribute => field switch
        {
            AttributeProto.TFieldNumber or AttributeProto.TensorsFieldNumber => Kind.Tensor,
            AttributeProto.GFieldNumber or AttributeProto.GraphsFieldNumber => Kind.Graph,
            AttributeProto.SparseTensorFieldNumber or AttributeProto.SparseTensorsFieldNumber => Kind.SparseTensor,
            AttributeProto.TpFieldNumber or AttributeProto.TypeProtosFieldNumber => Kind.Type,
            _ => Kind.Leaf,
        },
        Kind.Tensor => field == TensorProto.ExternalDataFieldNumber ? Kind.Entry : Kind.Leaf,
        Kind.SparseTensor => field is SparseTensorProto.ValuesFieldNumber or SparseTensorProto.IndicesFieldNumber ? Kind.Tensor : Kind.Leaf,
        Kind.ValueInfo => field == ValueInfoProto.TypeFieldNumber ? Kind.Type : Kind.Leaf,
        Kind.Type => field switch
        {
            TypeProto.TensorTypeFieldNumber or TypeProto.SparseTensorTypeFieldNumber => Kind.TypeTensor,
            TypeProto.SequenceTypeFieldNumber => Kind.TypeSequence,
            TypeProto.MapTypeFieldNumber => Kind.TypeMap,
            TypeProto.OptionalTypeFieldNumber => Kind.TypeOptional,
            _ => Kind.Leaf,
        },
        Kind.TypeTensor => field == TypeProto.Types.Tensor.ShapeFieldNumber ? Kind.Shape : Kind.Leaf,
        Kind.TypeSequence => field == TypeProto.Types.Sequence.ElemTypeFieldNumber ? Kind.Type : Kind.Leaf,
        Kind.TypeMap => field == TypeProto.Types.Map.ValueTypeFieldNumber ? Kind.Type : Kind.Leaf,
        Kind.TypeOptional => field == TypeProto.Types.Optional.ElemTypeFieldNumber ? Kind.Type : Kind.Leaf,
        Kind.Shape => field == TensorShapeProto.DimFieldNumber ? Kind.Dimension : Kind.Leaf,
        Kind.Function => field switch
        {
            FunctionProto.NodeFieldNumber => Kind.Node,
            FunctionAttributeProtoField => Kind.Attribute,
            FunctionValueInfoField => Kind.ValueInfo,
            _ => Kind.Leaf,
        },
        Kind.TensorAnnotation => field == TensorAnnotation.QuantParameterTensorNamesFieldNumber ? Kind.Entry : Kind.Leaf,
        Kind.TrainingInfo => field switch
        {
            TrainingInfoProto.InitializationFieldNumber or TrainingInfoProto.AlgorithmFieldNumber => Kind.Graph,
            _ => Kind.Entry,
        },
        _ => Kind.Leaf,
    };

    /// <summary>The repeated varint fields onnx.proto packs: dims and integer data of tensors, ints of attributes.</summary>
    private static bool PackedVarints(Kind kind, int field) => kind switch
    {
        Kind.Tensor => field is TensorProto.DimsFieldNumber or TensorProto.Int32DataFieldNumber or TensorProto.Int64DataFieldNumber or TensorProto.Uint64DataFieldNumber,
        Kind.SparseTensor => field == SparseTensorProto.DimsFieldNumber,
        Kind.Attribute => field == AttributeProto.IntsFieldNumber,
        _ => false,
    };

    /// <summary>Varints in a packed payload: one per byte without the continuation bit.</summary>
    private static int CountVarints(ReadOnlySpan<byte> payload)
    {
        int n = 0;
        foreach (var b in payload) if (b < 0x80) n++;
        return n;
    }

    private static ulong Varint(ReadOnlySpan<byte> s, ref int pos, Counts counts)
    {
        ulong value = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            if (pos >= s.Length) throw counts.Refuse("a number cut short (cut or not protobuf)");
            byte b = s[pos++];
            value |= (ulong)(b & 0x7f) << shift;
            if (b < 0x80) return value;
        }
        throw counts.Refuse("a number longer than 10 bytes (not protobuf)");
    }

    private static void Skip(ReadOnlySpan<byte> s, ref int pos, int bytes, Counts counts)
    {
        if (s.Length - pos < bytes) throw counts.Refuse("a fixed-width number cut short (cut or not protobuf)");
        pos += bytes;
    }
}
