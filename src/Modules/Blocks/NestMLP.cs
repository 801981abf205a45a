using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>6.1 Modules nest: a Sequential inside a custom module, followed by one more layer.</summary>
public sealed class NestMLP : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> net;
    private readonly nn.Module<Tensor, Tensor> linear;

    /// <summary>Creates <c>Sequential(LazyLinear(64), ReLU, LazyLinear(32), ReLU)</c> then <c>LazyLinear(16)</c>.</summary>
    public NestMLP() : base(TorchSharpRuntime.Checked(nameof(NestMLP)))
    {
        net = nn.Sequential(new LazyLinear(64), nn.ReLU(), new LazyLinear(32), nn.ReLU());
        linear = new LazyLinear(16);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var h = net.call(x);
        return linear.call(h);
    }
}
