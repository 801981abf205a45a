using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// 6.5 A layer with its own parameters: <c>relu(X W + b)</c>, W of shape (in, units), both drawn from N(0, 1).
/// Unlike the chapter's <c>.data</c> version, gradients flow to W and b, so it trains.
/// </summary>
public sealed class MyLinear : nn.Module<Tensor, Tensor>, ILinearLayer
{
    private readonly Parameter weight;
    private readonly Parameter bias;

    /// <summary>Creates the layer; <paramref name="generator"/> makes its initial values reproducible.</summary>
    public MyLinear(long inUnits, long units, Generator? generator = null) : base(TorchSharpRuntime.Checked(nameof(MyLinear)))
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inUnits);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(units);
        weight = new Parameter(randn(new long[] { inUnits, units }, generator: generator));
        bias = new Parameter(randn(new long[] { units }, generator: generator));
        RegisterComponents();
    }

    /// <summary>The (in, units) weight.</summary>
    public Parameter Weight => (Parameter)get_parameter(nameof(weight))!;

    /// <summary>The bias of length units.</summary>
    public Parameter Bias => (Parameter)get_parameter(nameof(bias))!;

    Parameter? ILinearLayer.Weight => Weight;
    Parameter? ILinearLayer.Bias => Bias;

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var linear = x.matmul(Weight).add_(Bias, Scalars.One); // a kept-alive alpha: see Scalars
        return nn.functional.relu(linear);
    }
}
