using Google.Protobuf;
using Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Modules.Onnx;

/// <summary>
/// Builds one ONNX graph (opset <see cref="OpsetVersion"/>) from modules: <see cref="Add"/> looks up the export rule of
/// a module's type (see <see cref="OnnxExporter.Register{TModule}"/>) and a rule emits nodes with <see cref="Node"/> and
/// weights with <see cref="Weight"/>. Weights are initializers named by their state-dict keys, so a graph's
/// initializers load back into a module with <see cref="StateDict.Load(nn.Module, IReadOnlyDictionary{string, Tensor}, bool)"/>.
/// </summary>
public sealed class OnnxGraphBuilder
{
    /// <summary>The ONNX operator set the graph uses (ONNX 1.12 and every ONNX Runtime since 1.12 read it).</summary>
    public const int OpsetVersion = 17;

    /// <summary>The ONNX IR version that goes with <see cref="OpsetVersion"/>.</summary>
    public const int IrVersion = 8;

    private readonly GraphProto _graph = new() { Name = "mlnetguide" };
    private readonly Dictionary<IntPtr, string> _stateNames = new();
    private readonly HashSet<string> _initializers = new(StringComparer.Ordinal);
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _metadata = new(StringComparer.Ordinal);
    private int _counter;

    /// <summary>
    /// A builder whose weights are named after <paramref name="root"/>'s state dict (the module the graph describes;
    /// lazy layers must have had their dry run). Tied tensors become one initializer.
    /// </summary>
    public OnnxGraphBuilder(nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        foreach (var (name, tensor) in StateDict.Get(root, includeAliases: false))
            _stateNames.TryAdd(tensor.Handle, name);
        Root = root;
    }

    /// <summary>The module the graph describes.</summary>
    public nn.Module Root { get; }

    /// <summary>Declares a float input; a null dimension is the symbolic batch dimension "batch".</summary>
    public string Input(string name, params long?[] shape)
    {
        Reserve(name);
        _graph.Input.Add(ValueInfo(name, TensorProto.Types.DataType.Float, shape));
        return name;
    }

    /// <summary>Declares an input of <paramref name="type"/> whose dimensions are all symbolic, e.g. int64 token ids ("batch", "time").</summary>
    public string SymbolicInput(string name, TensorProto.Types.DataType type, params string[] dimensions)
    {
        ArgumentNullException.ThrowIfNull(dimensions);
        Reserve(name);
        var shape = new TensorShapeProto();
        foreach (var d in dimensions) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = d });
        _graph.Input.Add(new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        });
        return name;
    }

    /// <summary>Declares value <paramref name="value"/> as graph output <paramref name="name"/> (an Identity renames it when the names differ).</summary>
    public void Output(string name, string value, TensorProto.Types.DataType type, params long?[] shape)
    {
        if (name != value)
        {
            Reserve(name);
            var node = new NodeProto { OpType = "Identity", Name = name + "/Identity" };
            node.Input.Add(value);
            node.Output.Add(name);
            _graph.Node.Add(node);
        }
        _graph.Output.Add(ValueInfo(name, type, shape));
    }

    /// <summary>Exports <paramref name="module"/> applied to <paramref name="input"/>; returns the name of its output.</summary>
    /// <exception cref="OnnxExportException">No export rule for the module's type (or one of its children's).</exception>
    public string Add(nn.Module module, string input)
    {
        ArgumentNullException.ThrowIfNull(module);
        return OnnxExporter.RuleFor(module)(this, module, input);
    }

    /// <summary>Adds node <paramref name="opType"/> with one output; returns the output's name.</summary>
    /// <param name="opType">An ONNX operator of the default domain, e.g. "Gemm".</param>
    /// <param name="inputs">Input value names ("" for an omitted optional input).</param>
    /// <param name="attributes">Attributes: long, float/double, string, long[] or float[] values.</param>
    public string Node(string opType, IEnumerable<string> inputs, params (string Name, object Value)[] attributes)
    {
        ArgumentException.ThrowIfNullOrEmpty(opType);
        var output = Fresh(opType);
        var node = new NodeProto { OpType = opType, Name = output };
        node.Input.AddRange(inputs);
        node.Output.Add(output);
        foreach (var (name, value) in attributes) node.Attribute.Add(Attribute(name, value));
        _graph.Node.Add(node);
        return output;
    }

    /// <summary>
    /// The initializer for a tensor of the module's state dict (a parameter or a buffer), named by its state-dict key;
    /// added once however often it is used.
    /// </summary>
    /// <exception cref="OnnxExportException">The tensor is not in the root module's state dict.</exception>
    public string Weight(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!_stateNames.TryGetValue(tensor.Handle, out var name))
            throw new OnnxExportException(
                $"A tensor of shape [{string.Join(", ", tensor.shape)}] is not in the state dict of {Root.GetType().Name}: use Constant for values that are not parameters or buffers.");
        if (_initializers.Add(name))
            _graph.Initializer.Add(ToTensorProto(name, tensor));
        return name;
    }

    /// <summary>Adds a state-dict tensor as an initializer even though no node reads it (e.g. BatchNorm's num_batches_tracked), so that the graph holds the whole state dict.</summary>
    public void KeepState(Tensor tensor) => Weight(tensor);

    /// <summary>A float constant (not part of the state dict).</summary>
    public string Constant(string hint, float[] values, params long[] dims)
    {
        var name = Fresh(hint);
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        t.Dims.AddRange(dims);
        t.FloatData.AddRange(values);
        _graph.Initializer.Add(t);
        return name;
    }

    /// <summary>An int64 constant of shape [values.Length] (shapes, axes).</summary>
    public string Int64s(string hint, params long[] values)
    {
        var name = Fresh(hint);
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
        t.Dims.Add(values.Length);
        t.Int64Data.AddRange(values);
        _graph.Initializer.Add(t);
        return name;
    }

    /// <summary>Stores a key/value pair in the model's metadata_props.</summary>
    public void Metadata(string key, string value) => _metadata[key] = value;

    /// <summary>The metadata key listing the initializers that hold the root module's state dict (a JSON array of keys).</summary>
    public const string StateDictKeysMetadata = "mlnetguide.state_dict_keys";

    /// <summary>The finished model.</summary>
    public ModelProto ToModel()
    {
        _metadata[StateDictKeysMetadata] = System.Text.Json.JsonSerializer.Serialize(_graph.Initializer.Select(i => i.Name).Where(_stateNames.ContainsValue).ToArray());
        var model = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = "MlNetGuide",
            ProducerVersion = typeof(OnnxGraphBuilder).Assembly.GetName().Version?.ToString() ?? "",
            Graph = _graph.Clone(),
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = OpsetVersion });
        foreach (var (k, v) in _metadata) model.MetadataProps.Add(new StringStringEntryProto { Key = k, Value = v });
        return model;
    }

    private string Fresh(string hint)
    {
        string name;
        do name = $"{hint}_{_counter++}"; while (!_names.Add(name));
        return name;
    }

    private void Reserve(string name)
    {
        if (!_names.Add(name)) throw new ArgumentException($"The graph already has a value named '{name}'.", nameof(name));
    }

    private static ValueInfoProto ValueInfo(string name, TensorProto.Types.DataType type, long?[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
            shape.Dim.Add(d is long v ? new TensorShapeProto.Types.Dimension { DimValue = v } : new TensorShapeProto.Types.Dimension { DimParam = "batch" });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }

    private static AttributeProto Attribute(string name, object value) => value switch
    {
        long l => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = l },
        int i => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = i },
        float f => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = f },
        double d => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = (float)d },
        string s => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(s) },
        long[] ls => Ints(name, ls),
        float[] fs => Floats(name, fs),
        _ => throw new ArgumentException($"Attribute '{name}' has unsupported type {value?.GetType().Name ?? "null"}.", nameof(value)),
    };

    private static AttributeProto Ints(string name, long[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }

    private static AttributeProto Floats(string name, float[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Floats };
        a.Floats.AddRange(values);
        return a;
    }

    /// <summary>A CPU copy of <paramref name="tensor"/> as raw little-endian bytes (float32, float64 or int64).</summary>
    private static TensorProto ToTensorProto(string name, Tensor tensor)
    {
        var type = tensor.dtype switch
        {
            ScalarType.Float32 => TensorProto.Types.DataType.Float,
            ScalarType.Float64 => TensorProto.Types.DataType.Double,
            ScalarType.Int64 => TensorProto.Types.DataType.Int64,
            var other => throw new OnnxExportException($"State tensor '{name}' has dtype {other}; the exporter writes float32, float64 and int64."),
        };
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("ONNX raw data is little-endian.");
        using var scope = NewDisposeScope(); // detach, cpu and contiguous each make a tensor (the same storage)
        var cpu = tensor.detach().cpu().contiguous();
        var proto = new TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(cpu.bytes) };
        proto.Dims.AddRange(tensor.shape);
        return proto;
    }
}
