using MlNetGuide.Estimators;
using MlNetGuide.Modules;
using MlNetGuide.Modules.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Samples.BringYourOwnModule;

/// <summary>
/// Your own module: two hidden layers with a tanh and a skip connection — nothing MlNetGuide ships.
/// Built from the widths the estimator asks for (<see cref="ModuleRequest"/>).
/// </summary>
public sealed class IrisNet : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> input, hidden, output;

    public IrisNet(ModuleRequest request) : base(nameof(IrisNet))
    {
        long width = request.HiddenWidths.Count > 0 ? request.HiddenWidths[0] : 16;
        input = nn.Linear(request.Inputs, width);
        hidden = nn.Linear(width, width);
        output = nn.Linear(width, request.Outputs);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = input.call(x).tanh();
        h = h.add(hidden.call(h).tanh(), Scalars.One); // h + tanh(W h): a residual step
        return output.call(h).MoveToOuterDisposeScope();
    }

    /// <summary>The name both processes register the factory under.</summary>
    public const string Name = "iris-net";

    /// <summary>
    /// Registers the factory (the training and the scoring process both call this) and the ONNX export rule, which
    /// lets <c>mlContext.Model.Save</c> write the network as ONNX: the same forward pass as ONNX nodes, with the
    /// children's own rules for the Linear layers (their weights keep their state-dict names, e.g. "input.weight").
    /// </summary>
    public static void Register()
    {
        NeuralModuleRegistry.Register(Name, request => new IrisNet(request));
        OnnxExporter.Register<IrisNet>((graph, net, x) =>
        {
            var h = graph.Node("Tanh", [graph.Add(OnnxExporter.Child(net, nameof(input)), x)]);
            h = graph.Node("Add", [h, graph.Node("Tanh", [graph.Add(OnnxExporter.Child(net, nameof(hidden)), h)])]);
            return graph.Add(OnnxExporter.Child(net, nameof(output)), h);
        });
    }
}

/// <summary>
/// Your own initializer (6.3): LeCun normal, N(0, 1/fan_in), for tanh layers. Subclass <see cref="Initializer"/> and
/// return the values; MlNetGuide copies them in without autograd and seeds the generator.
/// </summary>
public sealed class LeCunNormal : Initializer
{
    protected override Tensor Sample(long[] shape, ScalarType dtype, Generator? generator)
    {
        if (shape.Length != 2) return zeros(shape, dtype: dtype); // biases: zero
        using var std = (1.0 / Math.Sqrt(shape[1])).ToScalar();
        return randn(shape, generator: generator).mul_(std).to_type(dtype);
    }

    public override string ToString() => "LeCunNormal";
}
