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
    /// <summary>Creates the layer; <paramref name="generator"/> makes its initial values reproducible.</summary>
    public MyLinear(long inUnits, long units, Generator? generator = null) : base(TorchSharpRuntime.Checked(nameof(MyLinear)))
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inUnits);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(units);
        // Registered by name, not through fields, so that the public properties can carry the book's names
        // (and .to() may replace the Parameter objects: the properties read them back from the registry).
        register_parameter(nameof(weight), new Parameter(randn(new long[] { inUnits, units }, generator: generator)));
        register_parameter(nameof(bias), new Parameter(randn(new long[] { units }, generator: generator)));
    }

    /// <summary>The (in, units) weight: <c>weight</c>, as on TorchSharp's <c>Linear</c> and our <see cref="LazyLinear"/>.</summary>
    public Parameter weight => (Parameter)get_parameter(nameof(weight))!;

    /// <summary>The bias of length units.</summary>
    public Parameter bias => (Parameter)get_parameter(nameof(bias))!;

    Parameter? ILinearLayer.Weight => weight;
    Parameter? ILinearLayer.Bias => bias;

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var linear = x.matmul(weight).add_(bias, Scalars.One); // a kept-alive alpha: see Scalars
        return nn.functional.relu(linear);
    }
}
