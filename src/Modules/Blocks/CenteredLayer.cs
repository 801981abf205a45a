using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>6.5 A layer without parameters: subtracts the mean of its input.</summary>
public sealed class CenteredLayer : nn.Module<Tensor, Tensor>
{
    /// <summary>Creates the layer.</summary>
    public CenteredLayer() : base(TorchSharpRuntime.Checked(nameof(CenteredLayer))) { }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var mean = x.mean();
        return x.add(mean, Scalars.MinusOne); // x - mean, with a kept-alive alpha (see Scalars)
    }
}
