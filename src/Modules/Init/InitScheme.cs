using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// 6.3 How to initialize the weighted layers of a net — linear layers and convolutions: a weight rule, an optional
/// bias rule (null leaves biases as they are) and an optional seed. With a seed the same scheme on the same
/// architecture gives bit-identical weights. Fan-in and fan-out of a convolution kernel count its receptive field, as
/// PyTorch's <c>nn.init</c> does.
/// </summary>
public sealed record InitScheme(Initializer Weight, Initializer? Bias = null, long? Seed = null)
{
    /// <summary>Returns the same scheme drawing from its own generator seeded with <paramref name="seed"/>.</summary>
    public InitScheme WithSeed(long seed) => this with { Seed = seed };

    /// <summary>The chapter's <c>init_normal</c>: weights N(0, 0.01²), biases zero.</summary>
    public static InitScheme NormalSmall { get; } = new(Initializer.Normal(0, 0.01), Initializer.Zeros);

    /// <summary>The chapter's <c>init_constant</c>: weights 1, biases zero.</summary>
    public static InitScheme ConstantOne { get; } = new(Initializer.Constant(1), Initializer.Zeros);

    /// <summary>Xavier-uniform weights, zero biases: a good default for ReLU MLPs trained with SGD.</summary>
    public static InitScheme Xavier { get; } = new(Initializer.XavierUniform(), Initializer.Zeros);

    /// <summary>
    /// Applies the scheme to every linear layer and convolution in <paramref name="module"/> (itself included), in
    /// registration order.
    /// Throws <see cref="LazyModuleNotInitializedException"/> if a lazy layer has not been materialized yet.
    /// </summary>
    public void Apply(nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        var layers = LinearLayersOf(module).ToList();
        var pending = module.Modules().OfType<LazyLinear>().FirstOrDefault(l => !l.IsInitialized);
        if (pending is not null)
            throw new LazyModuleNotInitializedException(pending.ToString());
        using var generator = Seed is long s ? new Generator((ulong)s) : null;
        foreach (var (weight, bias) in layers)
        {
            Weight.Fill(weight, generator);
            if (Bias is not null && bias is not null) Bias.Fill(bias, generator);
        }
    }

    /// <summary>Weight and bias of each distinct linear layer or convolution, depth first, each layer once even when shared.</summary>
    internal static IEnumerable<(Parameter weight, Parameter? bias)> LinearLayersOf(nn.Module module)
    {
        var seen = new HashSet<nn.Module>(ReferenceEqualityComparer.Instance);
        foreach (var m in module.Modules())
        {
            if (!seen.Add(m)) continue;
            switch (m)
            {
                case Linear lin:
                    yield return (lin.weight, lin.bias);
                    break;
                case Convolution conv:
                    yield return (conv.weight!, conv.bias);
                    break;
                case ILinearLayer { Weight: { } w } layer:
                    yield return (w, layer.Bias);
                    break;
            }
        }
    }

    /// <inheritdoc />
    public override string ToString() =>
        $"weight {Weight}, bias {(Bias?.ToString() ?? "unchanged")}{(Seed is long s ? $", seed {s}" : "")}";
}
