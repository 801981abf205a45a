using System.Text.Json.Serialization;
using Google.Protobuf;
using Onnx;

namespace MlNetGuide.Estimators;

/// <summary>
/// The ONNX model a plain zip of a token network starts with (see <see cref="TokenText"/>): the text column in, the
/// slots of ids the network's model reads out. Written with the ONNX protobuf types directly, not OnnxGraphBuilder:
/// it holds no module's weights, and it needs opset 20 (StringSplit) and the ai.onnx.ml domain (LabelEncoder) where
/// the network graphs are opset 17.
/// </summary>
internal static class TokenizerModel
{
    /// <summary>The ONNX metadata key that marks (and describes) a tokenizer model MlNetGuide wrote.</summary>
    public const string Metadata = "mlnetguide.tokenizer";

    /// <summary>The column the tokenizer model writes and the network model reads (dropped at the end of the chain).</summary>
    public const string IdsColumn = "MlNetGuideTokenIds";

    /// <summary>
    /// The tokenizer model of <paramref name="text"/>: input the text column (a string [1, 1], as ML.NET's OnnxTransformer passes one row); output
    /// <see cref="IdsColumn"/>, float [maxTokens] — the slots of <see cref="TokenText.Ids"/>. StringSplit once per separator
    /// (ai.onnx opset 20), LabelEncoder (ai.onnx.ml 2: each word to its key, unknown 0, the empty piece −1), Compress
    /// drops the empty pieces, then padding with zeros and the first maxTokens.
    /// </summary>
    public static ModelProto Write(TokenText text, int maxTokens)
    {
        var graph = new GraphProto { Name = "MlNetGuideTokenizer" };
        int counter = 0;
        string Node(string op, string domain, string[] inputs, params AttributeProto[] attributes)
        {
            var output = $"{op}_{counter++}";
            var node = new NodeProto { OpType = op, Domain = domain, Name = output };
            node.Input.AddRange(inputs);
            node.Output.Add(output);
            if (op == "StringSplit") node.Output.Add(output + "_lengths");
            node.Attribute.AddRange(attributes);
            graph.Node.Add(node);
            return output;
        }
        string Int64s(params long[] values)
        {
            var name = $"const_{counter++}";
            var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
            t.Dims.Add(values.Length);
            t.Int64Data.AddRange(values);
            graph.Initializer.Add(t);
            return name;
        }
        static AttributeProto Text(string name, string value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) };
        static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

        graph.Input.Add(Value(text.Column, TensorProto.Types.DataType.String, 1, 1)); // ML.NET passes a text scalar as [1, 1]
        var pieces = text.Column;
        foreach (var separator in text.Separators)
            pieces = Node("Reshape", "", [Node("StringSplit", "", [pieces], Text("delimiter", separator.ToString())), Int64s(-1)]);
        var encoder = new[]
        {
            new AttributeProto { Name = "keys_strings", Type = AttributeProto.Types.AttributeType.Strings },
            new AttributeProto { Name = "values_int64s", Type = AttributeProto.Types.AttributeType.Ints },
            Int("default_int64", 0),
        };
        encoder[0].Strings.Add(ByteString.Empty);
        encoder[1].Ints.Add(-1);
        for (int i = 0; i < text.Words.Length; i++)
        {
            encoder[0].Strings.Add(ByteString.CopyFromUtf8(text.Words[i]));
            encoder[1].Ints.Add(i + 1);
        }
        var keys = Node("LabelEncoder", "ai.onnx.ml", [pieces], encoder);
        var words = Node("Compress", "", [keys, Node("Not", "", [Node("Equal", "", [keys, Int64s(-1)])])], Int("axis", 0));
        var padded = Node("Concat", "", [words, Node("ConstantOfShape", "", [Int64s(maxTokens)],
            new AttributeProto { Name = "value", Type = AttributeProto.Types.AttributeType.Tensor, T = Zero() })], Int("axis", 0));
        Node("Cast", "", [Node("Slice", "", [padded, Int64s(0), Int64s(maxTokens)])], Int("to", (long)TensorProto.Types.DataType.Float));
        graph.Node[^1].Output[0] = IdsColumn;
        graph.Output.Add(Value(IdsColumn, TensorProto.Types.DataType.Float, maxTokens));

        var model = new ModelProto
        {
            IrVersion = 9, // opset 20 needs IR 9
            ProducerName = "MlNetGuide",
            ProducerVersion = typeof(TokenizerModel).Assembly.GetName().Version?.ToString() ?? "",
            Graph = graph,
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 20 });
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "ai.onnx.ml", Version = 2 });
        model.MetadataProps.Add(new StringStringEntryProto
        {
            Key = Metadata,
            Value = System.Text.Json.JsonSerializer.Serialize(new Description(text.Column, text.Separators, maxTokens, text.Words.Length)),
        });
        return model;

        static TensorProto Zero()
        {
            var t = new TensorProto { DataType = (int)TensorProto.Types.DataType.Int64 };
            t.Dims.Add(1);
            t.Int64Data.Add(0);
            return t;
        }
    }

    private static ValueInfoProto Value(string name, TensorProto.Types.DataType type, params long[] sizes)
    {
        var shape = new TensorShapeProto();
        foreach (var size in sizes) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = size });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } } };
    }

    /// <summary>What the tokenizer model's metadata says of it (the words are its LabelEncoder's keys).</summary>
    public sealed record Description(
        [property: JsonPropertyName("column")] string Column,
        [property: JsonPropertyName("separators")] string Separators,
        [property: JsonPropertyName("maxTokens")] int MaxTokens,
        [property: JsonPropertyName("words")] int Words);
}
