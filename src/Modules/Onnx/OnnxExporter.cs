using System.Collections.Concurrent;
using Google.Protobuf;
using Onnx;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules.Onnx;

/// <summary>How one module type is written as ONNX nodes: returns the name of the value the module outputs.</summary>
/// <param name="graph">The graph being built: add nodes with <see cref="OnnxGraphBuilder.Node"/>, weights with
/// <see cref="OnnxGraphBuilder.Weight"/>, children with <see cref="OnnxGraphBuilder.Add"/>.</param>
/// <param name="module">The module to export.</param>
/// <param name="input">The name of the module's input value.</param>
public delegate string OnnxExportRule<in TModule>(OnnxGraphBuilder graph, TModule module, string input) where TModule : nn.Module;

/// <summary>
/// Exports TorchSharp modules as ONNX graphs (opset 17), inference mode: weights become initializers named by their
/// state-dict keys, Dropout is the identity and BatchNorm uses its running statistics.
/// </summary>
/// <remarks>
/// <para>Rules exist for TorchSharp's Linear, ReLU, Sigmoid, Tanh, GELU, Softmax, Dropout, Flatten (start_dim 1),
/// Conv2d, MaxPool2d, AvgPool2d, BatchNorm1d/2d and Sequential, and for the chapter's LazyLinear (after its dry run),
/// MLP, NestMLP, MyLinear and CenteredLayer, and for the sequence modules (FastTextClassifier, TextCnn, BiRnnEncoder,
/// TransformerTextEncoder, PositionalEncoding), which take int64 token ids: export those with
/// <see cref="ExportTokenSequences"/>. Add one for your own module type with <see cref="Register{TModule}"/>.
/// Any other module is refused with an <see cref="OnnxExportException"/> naming its type.</para>
/// <para><see cref="FixedHiddenMLP"/> is refused on purpose: its forward pass loops while a value read back from the
/// tensor exceeds 1 and returns a scalar, which has no faithful per-row meaning in a scoring graph.</para>
/// </remarks>
public static class OnnxExporter
{
    private static readonly ConcurrentDictionary<Type, Func<OnnxGraphBuilder, nn.Module, string, string>> Rules = new();

    static OnnxExporter() => OnnxExportRules.RegisterBuiltIns();

    /// <summary>Registers (or replaces) the export rule for modules of exactly type <typeparamref name="TModule"/>.</summary>
    public static void Register<TModule>(OnnxExportRule<TModule> rule) where TModule : nn.Module
    {
        ArgumentNullException.ThrowIfNull(rule);
        Rules[typeof(TModule)] = (g, m, x) => rule(g, (TModule)m, x);
    }

    /// <summary>True when modules of exactly type <paramref name="moduleType"/> have an export rule.</summary>
    public static bool HasRule(Type moduleType) => Rules.ContainsKey(moduleType);

    /// <summary>
    /// Null when <paramref name="module"/> (with every module its rule reaches) exports; otherwise why not, naming
    /// the module type. Builds the graph in memory to find out.
    /// </summary>
    public static string? Refusal(nn.Module<Tensor, Tensor> module, params long[] inputShape)
    {
        try
        {
            Build(module, inputShape, outputShape: null);
            return null;
        }
        catch (OnnxExportException ex)
        {
            return ex.Message;
        }
        catch (LazyModuleNotInitializedException ex)
        {
            return ex.Message;
        }
    }

    /// <summary>
    /// The ONNX model of <paramref name="module"/> for inputs of shape [batch, <paramref name="inputShape"/>...]:
    /// input "input", output "output" (shape found with one forward pass of a single zero row, in eval mode).
    /// </summary>
    public static ModelProto Export(nn.Module<Tensor, Tensor> module, params long[] inputShape)
    {
        ArgumentNullException.ThrowIfNull(module);
        Build(module, inputShape, outputShape: null); // a module without a rule is refused before it runs
        return Build(module, inputShape, OutputShape(module, inputShape));
    }

    /// <summary>Writes <see cref="Export"/>'s model to <paramref name="path"/> atomically (a standalone .onnx file).</summary>
    public static void Save(nn.Module<Tensor, Tensor> module, string path, params long[] inputShape)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var bytes = Export(module, inputShape).ToByteArray();
        AtomicFile.Write(path, s => s.Write(bytes));
    }

    /// <summary>Writes <see cref="Export"/>'s model to a stream.</summary>
    public static void Save(nn.Module<Tensor, Tensor> module, Stream stream, params long[] inputShape)
    {
        ArgumentNullException.ThrowIfNull(stream);
        Export(module, inputShape).WriteTo(stream);
    }

    /// <summary>
    /// The ONNX model of a sequence module (<see cref="FastTextClassifier"/>, <see cref="TextCnn"/>,
    /// <see cref="BiRnnEncoder"/>, <see cref="TransformerTextEncoder"/>, or one of yours with a rule): input "input",
    /// int64 token ids [batch, time] with 0 as padding; output "output", float logits [batch, outputs].
    /// </summary>
    /// <remarks>An id outside the vocabulary is an error from ONNX Runtime's <c>Gather</c>, not the module's
    /// <see cref="ArgumentException"/>: check ids before scoring where that matters. Feed at least one time step (pad
    /// an empty batch to one padding column, as the modules do themselves): ONNX's recurrent ops need a length ≥ 1.</remarks>
    public static ModelProto ExportTokenSequences(nn.Module<Tensor, Tensor> module)
    {
        ArgumentNullException.ThrowIfNull(module);
        BuildTokenSequences(module, outputs: null);
        bool training = module.training;
        module.eval();
        long outputs;
        try
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var device = module.parameters().FirstOrDefault()?.device ?? CPU;
            var y = module.call(zeros([1, 1], ScalarType.Int64, device)); // one row of padding
            if (y.dim() != 2) throw new OnnxExportException($"{module.GetType().Name} returns shape [{string.Join(", ", y.shape)}] for one row; a sequence module returns [batch, outputs].");
            outputs = y.shape[1];
        }
        finally
        {
            if (training) module.train();
        }
        return BuildTokenSequences(module, outputs);
    }

    /// <summary>Writes <see cref="ExportTokenSequences"/>'s model to <paramref name="path"/> atomically (a standalone .onnx file).</summary>
    public static void SaveTokenSequences(nn.Module<Tensor, Tensor> module, string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var bytes = ExportTokenSequences(module).ToByteArray();
        AtomicFile.Write(path, s => s.Write(bytes));
    }

    private static ModelProto BuildTokenSequences(nn.Module<Tensor, Tensor> module, long? outputs)
    {
        var g = new OnnxGraphBuilder(module);
        var input = g.SymbolicInput("input", TensorProto.Types.DataType.Int64, "batch", "time");
        var output = g.Add(module, input);
        g.Output("output", output, TensorProto.Types.DataType.Float, outputs is long n ? [null, n] : []);
        return g.ToModel();
    }

    private static ModelProto Build(nn.Module<Tensor, Tensor> module, long[] inputShape, long[]? outputShape)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(inputShape);
        if (module is ITokenSequenceModule)
            throw new OnnxExportException(
                $"{module.GetType().Name} takes int64 token ids [batch, time], not float rows: export it with OnnxExporter.ExportTokenSequences.");
        if (inputShape.Length == 0 || inputShape.Any(d => d <= 0))
            throw new ArgumentException($"Input shape [{string.Join(", ", inputShape)}] must list positive sizes (without the batch dimension).", nameof(inputShape));
        var g = new OnnxGraphBuilder(module);
        var input = g.Input("input", [null, .. inputShape.Select(d => (long?)d)]);
        var output = g.Add(module, input);
        g.Output("output", output, TensorProto.Types.DataType.Float, outputShape is null ? [] : [null, .. outputShape.Select(d => (long?)d)]);
        return g.ToModel();
    }

    /// <summary>The output shape (without batch) of one zero row through the module in eval mode.</summary>
    private static long[] OutputShape(nn.Module<Tensor, Tensor> module, long[] inputShape)
    {
        bool training = module.training;
        module.eval();
        try
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var device = module.parameters().FirstOrDefault()?.device ?? CPU;
            var y = module.call(zeros([1, .. inputShape], device: device));
            if (y.dim() == 0) throw new OnnxExportException($"{module.GetType().Name} returns a scalar for a batch; an export needs one output row per input row.");
            return y.shape.Skip(1).ToArray();
        }
        finally
        {
            if (training) module.train();
        }
    }

    internal static Func<OnnxGraphBuilder, nn.Module, string, string> RuleFor(nn.Module module) =>
        Rules.TryGetValue(module.GetType(), out var rule)
            ? rule
            : throw new OnnxExportException(
                $"No ONNX export rule for module type {module.GetType().FullName}. Register one with " +
                $"OnnxExporter.Register<{module.GetType().Name}>((graph, module, input) => ...) (see samples/BringYourOwnModule), " +
                "or save the model with NeuralModel.Save, which stores the state dict instead of a graph.");

    /// <summary>The child registered under <paramref name="name"/> (e.g. MLP's "hidden").</summary>
    public static nn.Module Child(nn.Module parent, string name)
    {
        ArgumentNullException.ThrowIfNull(parent);
        foreach (var (childName, child) in parent.named_children())
            if (childName == name) return child;
        throw new OnnxExportException($"{parent.GetType().Name} has no child module named '{name}'.");
    }
}
