using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules.Onnx;

/// <summary>The export rules MlNetGuide ships: TorchSharp's common layers and the chapter's blocks.</summary>
internal static class OnnxExportRules
{
    public static void RegisterBuiltIns()
    {
        OnnxExporter.Register<Sequential>((g, m, x) =>
        {
            foreach (var (_, child) in m.named_children()) x = g.Add(child, x);
            return x;
        });
        OnnxExporter.Register<Linear>((g, m, x) => Linear(g, x, m.weight, m.bias));
        OnnxExporter.Register<LazyLinear>((g, m, x) =>
        {
            if (!m.IsInitialized)
                throw new OnnxExportException($"{m} has not seen its first input: run one forward pass (a dry run) before exporting.");
            return Linear(g, x, m.weight, m.bias);
        });
        OnnxExporter.Register<ReLU>((g, _, x) => g.Node("Relu", [x]));
        OnnxExporter.Register<Sigmoid>((g, _, x) => g.Node("Sigmoid", [x]));
        OnnxExporter.Register<Tanh>((g, _, x) => g.Node("Tanh", [x]));
        OnnxExporter.Register<GELU>((g, m, x) => Gelu(g, x, tanh: m.approximate.ToString().Equals("tanh", StringComparison.OrdinalIgnoreCase)));
        OnnxExporter.Register<Softmax>((g, m, x) => g.Node("Softmax", [x], ("axis", m.dim)));
        OnnxExporter.Register<Dropout>((g, _, x) => g.Node("Identity", [x])); // inference: dropout is the identity
        OnnxExporter.Register<Flatten>((g, m, x) =>
        {
            if (m.start_dim != 1 || m.end_dim != -1)
                throw new OnnxExportException($"Flatten(start_dim={m.start_dim}, end_dim={m.end_dim}) has no export rule; only Flatten(1, -1) (everything after the batch dimension) is exported.");
            return g.Node("Flatten", [x], ("axis", 1L));
        });
        OnnxExporter.Register<Conv2d>(Conv2d);
        OnnxExporter.Register<MaxPool2d>((g, m, x) => g.Node("MaxPool", [x],
            ("kernel_shape", m.kernel_size), ("strides", m.stride ?? m.kernel_size), ("pads", Pads(m.padding)),
            ("dilations", m.dilation ?? [1, 1]), ("ceil_mode", m.ceil_mode ? 1L : 0L)));
        OnnxExporter.Register<AvgPool2d>((g, m, x) =>
        {
            if (m.divisor_override is not null)
                throw new OnnxExportException($"AvgPool2d with divisor_override={m.divisor_override} has no ONNX equivalent.");
            return g.Node("AveragePool", [x], ("kernel_shape", m.kernel_size), ("strides", m.stride ?? m.kernel_size),
                ("pads", Pads(m.padding)), ("ceil_mode", m.ceil_mode ? 1L : 0L), ("count_include_pad", m.count_include_pad ? 1L : 0L));
        });
        OnnxExporter.Register<BatchNorm1d>((g, m, x) => BatchNorm(g, m, x));
        OnnxExporter.Register<BatchNorm2d>((g, m, x) => BatchNorm(g, m, x));

        // The chapter's blocks (6.1, 6.4, 6.5).
        OnnxExporter.Register<FeatureBag>((g, m, x) =>
        {
            var bag = OnnxExporter.Child(m, "bag"); // its registered parameter: the weight getter wraps a new handle
            var weight = bag.named_parameters().Single(p => p.name == "weight").parameter;
            var decoder = (Linear)OnnxExporter.Child(m, "decoder");
            return Linear(g, g.Node("MatMul", [x, g.Weight(weight)]), decoder.weight, decoder.bias); // x · bag.weight, then the decoder
        });
        OnnxExporter.Register<MLP>((g, m, x) =>
            g.Add(OnnxExporter.Child(m, "output"), g.Node("Relu", [g.Add(OnnxExporter.Child(m, "hidden"), x)])));
        OnnxExporter.Register<NestMLP>((g, m, x) => g.Add(OnnxExporter.Child(m, "linear"), g.Add(OnnxExporter.Child(m, "net"), x)));
        OnnxExporter.Register<MyLinear>((g, m, x) => g.Node("Relu", [g.Node("Add", [g.Node("MatMul", [x, g.Weight(m.weight)]), g.Weight(m.bias)])]));
        // D2L 7.6: rows of C·H·W pixels (or images) reshaped to (N, C, H, W), then the layers.
        OnnxExporter.Register<LeNet>((g, m, x) =>
            g.Add(OnnxExporter.Child(m, "layers"), g.Node("Reshape", [x, g.Int64s("lenet_image_shape", [-1, .. m.ImageShape])])));
        // x.mean() is over every element (the whole batch), as in the chapter: ReduceMean without axes does the same.
        OnnxExporter.Register<CenteredLayer>((g, _, x) => g.Node("Sub", [x, g.Node("ReduceMean", [x], ("keepdims", 1L))]));
        OnnxExporter.Register<FixedHiddenMLP>((_, _, _) => throw new OnnxExportException(
            "FixedHiddenMLP is not exported: its forward pass loops while |h|.sum() > 1 (a value read back from the tensor) and returns " +
            "one scalar for the whole batch, which has no per-row meaning in a scoring graph. Save it with StateDict.Save or NeuralModel.Save."));

        OnnxSequenceExportRules.RegisterBuiltIns();
    }

    /// <summary>x W^T + b (PyTorch's weight layout is (out, in)).</summary>
    internal static string Linear(OnnxGraphBuilder g, string x, Tensor weight, Tensor? bias)
    {
        var product = g.Node("MatMul", [x, g.Node("Transpose", [g.Weight(weight)], ("perm", new long[] { 1, 0 }))]);
        return bias is null ? product : g.Node("Add", [product, g.Weight(bias)]);
    }

    private static string Gelu(OnnxGraphBuilder g, string x, bool tanh)
    {
        var half = g.Constant("half", [0.5f]);
        var one = g.Constant("one", [1f]);
        string inner;
        if (tanh)
        {
            // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
            var cube = g.Node("Mul", [x, g.Node("Mul", [x, x])]);
            var sum = g.Node("Add", [x, g.Node("Mul", [cube, g.Constant("c", [0.044715f])])]);
            inner = g.Node("Tanh", [g.Node("Mul", [sum, g.Constant("sqrt_2_over_pi", [MathF.Sqrt(2f / MathF.PI)])])]);
        }
        else
            inner = g.Node("Erf", [g.Node("Div", [x, g.Constant("sqrt2", [MathF.Sqrt(2f)])])]); // 0.5 x (1 + erf(x / sqrt 2))
        return g.Node("Mul", [g.Node("Mul", [x, half]), g.Node("Add", [inner, one])]);
    }

    private static string Conv2d(OnnxGraphBuilder g, Conv2d m, string x)
    {
        if (m.transposed) throw new OnnxExportException("Conv2d with transposed=true has no export rule.");
        if (m.padding_mode != PaddingModes.Zeros)
            throw new OnnxExportException($"Conv2d with padding_mode={m.padding_mode} has no export rule; only zero padding is exported.");
        if (m.padding_type is { } type && type != Padding.Valid)
            throw new OnnxExportException($"Conv2d with padding={type} has no export rule; give the padding as numbers.");
        var pads = m.padding_type is null ? Pads(m.padding) : [0, 0, 0, 0];
        var inputs = new List<string> { x, g.Weight(m.weight) };
        if (m.bias is not null) inputs.Add(g.Weight(m.bias));
        return g.Node("Conv", inputs, ("kernel_shape", m.kernel_size), ("strides", m.stride), ("pads", pads),
            ("dilations", m.dilation), ("group", m.groups));
    }

    /// <summary>PyTorch's symmetric (h, w) padding as ONNX's (h_begin, w_begin, h_end, w_end).</summary>
    private static long[] Pads(long[]? padding) => padding is null ? [0, 0, 0, 0]
        : padding.Length == 1 ? [padding[0], padding[0], padding[0], padding[0]]
        : [padding[0], padding[1], padding[0], padding[1]];

    private static string BatchNorm(OnnxGraphBuilder g, BatchNorm m, string x)
    {
        if (m.running_mean is null || m.running_var is null)
            throw new OnnxExportException($"{m.GetType().Name} without running statistics (track_running_stats=false) normalizes with batch statistics and has no inference export.");
        long c = m.num_features;
        var scale = m.weight is null ? g.Constant("ones", Enumerable.Repeat(1f, (int)c).ToArray(), c) : g.Weight(m.weight);
        var shift = m.bias is null ? g.Constant("zeros", new float[c], c) : g.Weight(m.bias);
        if (m.num_batches_tracked is not null) g.KeepState(m.num_batches_tracked); // not used by inference; kept so the graph holds the whole state dict
        return g.Node("BatchNormalization", [x, scale, shift, g.Weight(m.running_mean), g.Weight(m.running_var)], ("epsilon", m.eps));
    }
}
