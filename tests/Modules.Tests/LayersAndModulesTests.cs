using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules.Tests;

/// <summary>6.1 Layers and modules.</summary>
public class LayersAndModulesTests
{
    [Fact]
    public void SequentialMapsTwentyFeaturesToTen()
    {
        using var net = nn.Sequential(new LazyLinear(256), nn.ReLU(), new LazyLinear(10));
        using var x = rand(2, 20);
        using var y = net.call(x);
        Assert.Equal(new long[] { 2, 10 }, y.shape);
    }

    [Fact]
    public void MlpIsACustomModuleWithItsOwnForward()
    {
        using var net = new MLP();
        using var x = rand(2, 20);
        using var y = net.call(x);
        Assert.Equal(new long[] { 2, 10 }, y.shape);
        Assert.Equal(new[] { "hidden.weight", "hidden.bias", "output.weight", "output.bias" }, net.named_parameters().Select(p => p.name));
        // Its forward is hidden -> relu -> output: recompute it by hand.
        var hidden = (LazyLinear)net.named_children().First().module;
        var output = (LazyLinear)net.named_children().Last().module;
        using var manual = nn.functional.linear(nn.functional.relu(nn.functional.linear(x, hidden.weight, hidden.bias)), output.weight, output.bias);
        TensorAssert.Close(manual, y);
    }

    [Fact]
    public void MySequentialRegistersChildrenInOrder()
    {
        var a = nn.Linear(20, 256);
        var r = nn.ReLU();
        var b = nn.Linear(256, 10);
        using var net = new MySequential(a, r, b);
        Assert.Equal(new[] { "0", "1", "2" }, net.named_children().Select(c => c.name));
        Assert.Same(a, net[0]);
        Assert.Same(b, net[2]);
        Assert.Equal(3, net.Count);
        using var x = rand(2, 20);
        using var y = net.call(x);
        using var expected = b.call(r.call(a.call(x)));
        TensorAssert.Close(expected, y);
        Assert.Equal(4, net.parameters().Count());
    }

    [Fact]
    public void MySequentialRejectsNullModules()
    {
        var ex = Assert.Throws<ArgumentNullException>(() => new MySequential(nn.ReLU(), null!));
        Assert.Contains("module 1", ex.Message);
    }

    [Fact]
    public void FixedHiddenMlpConstantIsNotAParameterNorInStateDict()
    {
        manual_seed(0);
        using var net = new FixedHiddenMLP();
        using var x = rand(2, 20);
        using var y = net.call(x);
        Assert.Equal(0, y.dim()); // a scalar
        // One Linear used twice: only its weight and bias are parameters.
        Assert.Equal(new[] { "linear.weight", "linear.bias" }, net.named_parameters().Select(p => p.name));
        Assert.Equal(new[] { "linear.weight", "linear.bias" }, net.state_dict().Keys);
        Assert.Equal(new[] { "linear.weight", "linear.bias" }, StateDict.Get(net, includeAliases: true).Keys);
        Assert.Empty(net.buffers());
        Assert.False(net.RandWeight.requires_grad);
        // The loop halves until |X|.sum() <= 1, so the scalar is at most 1 in magnitude.
        Assert.True(Math.Abs(y.item<float>()) <= 1f);
    }

    [Fact]
    public void FixedHiddenMlpConstantMovesWithDtypeAndDevice()
    {
        using var net = new FixedHiddenMLP(new Generator(3));
        using (var x = rand(2, 20)) net.call(x).Dispose();
        var before = TensorAssert.Values(net.RandWeight);
        net.to(ScalarType.Float64);
        Assert.Equal(ScalarType.Float64, net.RandWeight.dtype);
        Assert.Equal(ScalarType.Float64, net.parameters().First().dtype);
        Assert.Equal(before, TensorAssert.Values(net.RandWeight));
        net.to(new Device(DeviceType.META));
        Assert.Equal(DeviceType.META, net.RandWeight.device_type);
        Assert.All(net.parameters(), p => Assert.Equal(DeviceType.META, p.device_type));
    }

    [Fact]
    public void FixedHiddenMlpReusesOneLayerSoGradientsAccumulateTwice()
    {
        manual_seed(1);
        using var net = new FixedHiddenMLP();
        using var x = rand(2, 20);
        using var y = net.call(x);
        y.backward();
        var w = net.parameters().First();
        Assert.NotNull(w.grad);
        Assert.True(w.grad!.abs().sum().item<float>() > 0);
    }

    [Fact]
    public void NestMlpAndChimeraRunEndToEnd()
    {
        manual_seed(2);
        using var chimera = nn.Sequential(new NestMLP(), new LazyLinear(20), new FixedHiddenMLP());
        using var x = rand(2, 20);
        using var y = chimera.call(x);
        Assert.Equal(0, y.dim());
        Assert.True(chimera.IsFullyInitialized());
        var names = chimera.named_parameters().Select(p => p.name).ToList();
        Assert.Contains("0.net.0.weight", names);
        Assert.Contains("0.linear.weight", names);
        Assert.Contains("2.linear.bias", names);
        Assert.Equal(new long[] { 64, 20 }, chimera.named_parameters().First(p => p.name == "0.net.0.weight").parameter.shape);
        Assert.Equal(new long[] { 20, 16 }, chimera.named_parameters().First(p => p.name == "1.weight").parameter.shape);
    }
}
