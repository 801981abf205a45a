using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules.Tests;

/// <summary>6.4 Lazy initialization.</summary>
public class LazyInitializationTests
{
    [Fact]
    public void BeforeTheDryRunTheWeightReportsItselfUninitialized()
    {
        using var layer = new LazyLinear(256);
        Assert.False(layer.IsInitialized);
        Assert.Null(layer.InFeatures);
        var ex = Assert.Throws<LazyModuleNotInitializedException>(() => layer.weight);
        Assert.Contains("LazyLinear(in_features=?, out_features=256", ex.Message);
        Assert.Contains("[uninitialized]", layer.ToString());
        Assert.Empty(layer.parameters());
    }

    [Fact]
    public void OneDryRunMaterializesTheWholeNet()
    {
        using var net = nn.Sequential(new LazyLinear(256), nn.ReLU(), new LazyLinear(10));
        using var x = rand(2, 20);
        net.call(x).Dispose();
        Assert.Equal(new long[] { 256, 20 }, ((LazyLinear)net[0]).weight.shape);
        Assert.Equal(new long[] { 10, 256 }, ((LazyLinear)net[2]).weight.shape);
        Assert.Equal(new[] { "0.weight", "0.bias", "2.weight", "2.bias" }, net.named_parameters().Select(p => p.name));
        // Linear's default init: U(-1/sqrt(in), 1/sqrt(in)).
        Assert.True(((LazyLinear)net[0]).weight.abs().max().item<float>() <= 1 / MathF.Sqrt(20));
    }

    [Fact]
    public void MaterializesOnTheInputsDtype()
    {
        using var layer = new LazyLinear(3);
        using var x = rand(new long[] { 2, 5 }, dtype: ScalarType.Float64);
        layer.call(x).Dispose();
        Assert.Equal(ScalarType.Float64, layer.weight.dtype);
    }

    [Fact]
    public void AnotherWidthLaterFailsClearly()
    {
        using var layer = new LazyLinear(3);
        using (var x = rand(2, 5)) layer.call(x).Dispose();
        using var wrong = rand(2, 7);
        var ex = Assert.Throws<ArgumentException>(() => layer.call(wrong));
        Assert.Contains("width 5", ex.Message);
        Assert.Contains("width 7", ex.Message);
    }

    [Fact]
    public void ApplyInitDoesTheDryRunThenInitializes()
    {
        using var net = new MLP();
        using var x = rand(2, 20);
        net.ApplyInit(x, InitScheme.NormalSmall.WithSeed(0));
        Assert.True(net.IsFullyInitialized());
        var w = net.parameters().First();
        Assert.Equal(new long[] { 256, 20 }, w.shape);
        Assert.True(w.abs().max().item<float>() < 0.06); // N(0, 0.01): 5120 draws stay within 6σ
    }

    [Fact]
    public void LazilyCreatedParametersReachOptimizersStateDictAndSurviveScopes()
    {
        // No ReLU between them: with random weights all four hidden units can be dead for the batch (about 1 run in 16),
        // and then the first layer's weights rightly get no gradient.
        using var net = nn.Sequential(new LazyLinear(4), new LazyLinear(1));
        using (var scope = NewDisposeScope())
        {
            net.call(rand(3, 6)).Dispose(); // dry run inside a scope that disposes everything it saw
        }
        Assert.False(((LazyLinear)net[0]).weight.IsInvalid);
        Assert.Equal(new[] { "0.weight", "0.bias", "1.weight", "1.bias" }, net.state_dict().Keys);
        using var opt = optim.SGD(net.parameters(), 0.1);
        var before = TensorAssert.Values(((LazyLinear)net[0]).weight);
        using var x = rand(3, 6);
        using (var loss = net.call(x).pow(2).sum()) loss.backward();
        opt.step();
        Assert.NotEqual(before, TensorAssert.Values(((LazyLinear)net[0]).weight));
    }

    [Fact]
    public void EnsureInitializedNamesTheLayerThatStillNeedsADryRun()
    {
        using var net = nn.Sequential(nn.Linear(3, 4), new LazyLinear(2));
        var ex = Assert.Throws<LazyModuleNotInitializedException>(() => net.EnsureInitialized());
        Assert.Contains("'1'", ex.Message);
    }

    [Fact]
    public void AnUninitializedLazyNetMovesAndThenMaterializesOnTheTargetDevice()
    {
        // (No ReLU here: libtorch's CPU build has no META kernel for it.)
        using var net = nn.Sequential(new LazyLinear(4), new LazyLinear(2));
        var meta = new Device(DeviceType.META);
        net.to(meta);
        using var x = rand(new long[] { 3, 5 }, device: meta);
        net.call(x).Dispose();
        Assert.All(net.parameters(), p => Assert.Equal(DeviceType.META, p.device_type));
        Assert.Equal(new long[] { 4, 5 }, ((LazyLinear)net[0]).weight.shape);
        Assert.Equal(new long[] { 2, 4 }, ((LazyLinear)net[1]).weight.shape);
    }
}
