using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules.Tests;

/// <summary>6.3 Parameter initialization.</summary>
public class InitializationTests
{
    private static Sequential Net() => nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1));

    [Fact]
    public void NormalInitHasTheRequestedMeanAndStdAndZeroBias()
    {
        using var layer = nn.Linear(1000, 1000);
        layer.ApplyInit(new InitScheme(Initializer.Normal(0, 0.01), Initializer.Zeros, Seed: 1));
        var w = layer.weight;
        Assert.InRange(w.mean().item<float>(), -2e-4f, 2e-4f);   // 1e6 samples: standard error 1e-5
        Assert.InRange(w.std().item<float>(), 0.0099f, 0.0101f);
        Assert.Equal(0f, layer.bias!.abs().max().item<float>());
    }

    [Fact]
    public void ConstantInitSetsExactValues()
    {
        using var net = Net();
        net.ApplyInit(InitScheme.ConstantOne);
        Assert.All(TensorAssert.Values(((Linear)net[0]).weight), v => Assert.Equal(1f, v));
        Assert.All(TensorAssert.Values(((Linear)net[0]).bias!), v => Assert.Equal(0f, v));
        Assert.All(TensorAssert.Values(((Linear)net[2]).weight), v => Assert.Equal(1f, v));
    }

    [Fact]
    public void DifferentBlocksGetDifferentInitializers()
    {
        // The chapter: Xavier on the first layer, the constant 42 on the third.
        using var net = Net();
        net.ApplyInit(Initializer.Constant(100)); // far outside Xavier's bound: a rule that did nothing would show
        net[0].ApplyInit(Initializer.XavierUniform());
        net[2].ApplyInit(Initializer.Constant(42));
        double bound = Math.Sqrt(6.0 / (4 + 8));
        Assert.All(TensorAssert.Values(((Linear)net[0]).weight), v => Assert.InRange(v, -bound, bound));
        Assert.All(TensorAssert.Values(((Linear)net[2]).weight), v => Assert.Equal(42f, v));
    }

    [Fact]
    public void XavierUniformStaysWithinItsBoundAndFillsIt()
    {
        using var layer = nn.Linear(300, 200);
        layer.ApplyInit(Initializer.XavierUniform().WithBias(Initializer.Zeros));
        double a = Math.Sqrt(6.0 / 500);
        var w = layer.weight;
        Assert.True(w.abs().max().item<float>() <= a);
        Assert.True(w.abs().max().item<float>() > 0.99 * a);
        // Var of U(-a, a) is a²/3.
        Assert.InRange(w.var().item<float>(), 0.97 * a * a / 3, 1.03 * a * a / 3);
    }

    [Fact]
    public void ChapterCustomDistributionHasItsThreeParts()
    {
        using var layer = nn.Linear(500, 400);
        layer.ApplyInit(new InitScheme(Initializer.ChapterCustom(), Seed: 5));
        var v = TensorAssert.Values(layer.weight);
        double n = v.Length;
        double zeros = v.Count(x => x == 0) / n, high = v.Count(x => x >= 5 && x <= 10) / n, low = v.Count(x => x <= -5 && x >= -10) / n;
        Assert.Equal(1.0, zeros + high + low, 6); // nothing in (-5, 0) ∪ (0, 5) or beyond ±10
        Assert.InRange(zeros, 0.49, 0.51);
        Assert.InRange(high, 0.24, 0.26);
        Assert.InRange(low, 0.24, 0.26);
    }

    [Fact]
    public void DirectSettingWithoutAutograd()
    {
        using var net = Net();
        net.ApplyInit(InitScheme.ConstantOne);
        var w = ((Linear)net[0]).weight;
        using (no_grad())
        {
            w.add_(1);
            w[0, 0] = 42;
        }
        Assert.Equal(42f, w[0, 0].item<float>());
        Assert.Equal(2f, w[0, 1].item<float>());
        Assert.True(w.requires_grad);
    }

    [Fact]
    public void SameSeedSameSchemeGivesBitIdenticalWeights()
    {
        using var a = Net();
        using var b = Net();
        var scheme = new InitScheme(Initializer.Normal(0, 0.5), Initializer.Uniform(-1, 1), Seed: 42);
        manual_seed(1);
        a.ApplyInit(scheme);
        manual_seed(999); // the global generator does not matter when the scheme is seeded
        b.ApplyInit(scheme);
        foreach (var ((name, pa), (_, pb)) in a.named_parameters().Zip(b.named_parameters()))
            Assert.True(pa.equal(pb).all().item<bool>(), name);
        using var c = Net();
        c.ApplyInit(scheme.WithSeed(43));
        Assert.False(((Linear)a[0]).weight.equal(((Linear)c[0]).weight).all().item<bool>());
    }

    [Fact]
    public void InitActsOnLazyLayersOnceMaterializedAndRefusesBefore()
    {
        using var net = nn.Sequential(new LazyLinear(8), nn.ReLU(), new LazyLinear(1));
        var ex = Assert.Throws<LazyModuleNotInitializedException>(() => net.ApplyInit(InitScheme.ConstantOne));
        Assert.Contains("dry run", ex.Message);
        using var x = rand(2, 4);
        net.ApplyInit(x, InitScheme.ConstantOne);
        Assert.All(TensorAssert.Values(((LazyLinear)net[0]).weight), v => Assert.Equal(1f, v));
        Assert.All(TensorAssert.Values(((LazyLinear)net[2]).bias!), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void BadArgumentsAreRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Initializer.Normal(0, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Initializer.Uniform(1, 0));
        using var bias = zeros(3);
        var ex = Assert.Throws<ArgumentException>(() => Initializer.XavierUniform().Fill(bias));
        Assert.Contains("[3]", ex.Message);
    }
}
