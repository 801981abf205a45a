using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// 6.1 The chapter's MLP as a custom module: hidden layer (ReLU) then output layer, with its own forward.
/// Leave <c>inputs</c> null to infer the input width lazily, as the chapter's <c>nn.LazyLinear</c> version does.
/// </summary>
public sealed class MLP : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> hidden;
    private readonly nn.Module<Tensor, Tensor> output;

    /// <summary>Creates <c>hidden -> ReLU -> output</c>; widths default to the chapter's 256 and 10.</summary>
    public MLP(long hiddenUnits = 256, long outputs = 10, long? inputs = null) : base(TorchSharpRuntime.Checked(nameof(MLP)))
    {
        hidden = inputs is long n ? nn.Linear(n, hiddenUnits) : new LazyLinear(hiddenUnits);
        output = inputs is null ? new LazyLinear(outputs) : nn.Linear(hiddenUnits, outputs);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var h = hidden.call(x);
        h.relu_(); // in place: Linear's backward needs its input, not its output
        return output.call(h);
    }
}
