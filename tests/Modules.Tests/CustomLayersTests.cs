using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Modules.Tests;

/// <summary>6.5 Custom layers.</summary>
public class CustomLayersTests
{
    [Fact]
    public void CenteredLayerSubtractsTheMean()
    {
        using var layer = new CenteredLayer();
        using var x = tensor(new float[] { 1, 2, 3, 4, 5 });
        using var y = layer.call(x);
        Assert.Equal(new float[] { -2, -1, 0, 1, 2 }, TensorAssert.Values(y));
    }

    [Fact]
    public void CenteredLayerInsideANetGivesMeanZero()
    {
        manual_seed(0);
        using var net = nn.Sequential(new LazyLinear(128), new CenteredLayer());
        using var x = rand(4, 8);
        using var y = net.call(x);
        Assert.True(Math.Abs(y.mean().item<float>()) < 1e-5);
    }

    [Fact]
    public void MyLinearHasItsOwnParametersAndShapes()
    {
        using var linear = new MyLinear(5, 3);
        Assert.Equal(new long[] { 5, 3 }, linear.weight.shape);
        Assert.Equal(new[] { "weight", "bias" }, linear.named_parameters().Select(p => p.name));
        using var x = rand(2, 5);
        using var y = linear.call(x);
        using var expected = nn.functional.relu(x.matmul(linear.weight) + linear.bias);
        TensorAssert.Close(expected, y);
        Assert.True(TensorAssert.Values(y).All(v => v >= 0));
    }

    [Fact]
    public void NetOfMyLinearsMapsSixtyFourToOne()
    {
        // 6.5: net = nn.Sequential(MyLinear(64, 8), MyLinear(8, 1)); each layer is relu(X W + b), so the net is their composition.
        var (first, second) = (new MyLinear(64, 8), new MyLinear(8, 1));
        using var net = nn.Sequential(first, second);
        using var x = rand(2, 64);
        using var y = net.call(x);
        Assert.Equal(new long[] { 2, 1 }, y.shape);
        using var hidden = nn.functional.relu(x.matmul(first.weight) + first.bias);
        using var expected = nn.functional.relu(hidden.matmul(second.weight) + second.bias);
        TensorAssert.Close(expected, y);
        Assert.Contains(TensorAssert.Values(hidden), v => v > 0); // not a net that maps everything to 0
    }

    [Fact]
    public void MyLinearTrains()
    {
        using var gen = new Generator(3);
        using var net = nn.Sequential(new MyLinear(4, 8, gen), new MyLinear(8, 1, gen));
        using var x = rand(new long[] { 16, 4 }, generator: gen);
        using var target = x.sum(1, keepdim: true);
        using var opt = optim.SGD(net.parameters(), 0.001);
        float Loss()
        {
            using var y = net.call(x);
            using var l = nn.functional.mse_loss(y, target);
            return l.item<float>();
        }
        float before = Loss();
        using (var y = net.call(x))
        using (var l = nn.functional.mse_loss(y, target))
            l.backward();
        Assert.All(net.parameters(), p => Assert.NotNull(p.grad));
        opt.step();
        Assert.True(Loss() < before, $"one step should lower the loss from {before}");
    }
}
