using MlNetGuide.Modules;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules.Tests;

/// <summary>The factories and typed accessors that let notebooks read like the book.</summary>
public class LayersTests
{
    [Fact]
    public void LazyLinearFactoryBuildsTheBooksLazyMlp()
    {
        using var net = nn.Sequential(Layers.LazyLinear(256), nn.ReLU(), Layers.LazyLinear(10, hasBias: false));
        using var x = rand(2, 20);
        using var y = net.call(x);
        Assert.Equal(new long[] { 2, 10 }, y.shape);
        Assert.Equal(new long[] { 256, 20 }, net.Layer<LazyLinear>(0).weight.shape);
        Assert.Null(net.Layer<LazyLinear>(2).bias);
    }

    [Fact]
    public void LayerGivesTheTypedLayerAndNamesTheWrongType()
    {
        using var net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1));
        Assert.Equal(new long[] { 1 }, net.Layer<Linear>(2).bias!.shape);
        Assert.Equal(new[] { "weight", "bias" }, net.Layer<Linear>(2).state_dict().Keys);
        var wrong = Assert.Throws<InvalidCastException>(() => net.Layer<Linear>(1));
        Assert.Contains("Layer 1 of the Sequential is a ReLU, not a Linear", wrong.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => net.Layer<Linear>(3));
        Assert.Throws<ArgumentOutOfRangeException>(() => net.Layer<Linear>(-1));
    }

    [Fact]
    public void MyLinearNamesItsParametersLikeLinear()
    {
        using var layer = new MyLinear(5, 3);
        Assert.Equal(new long[] { 5, 3 }, layer.weight.shape);
        Assert.Equal(new long[] { 3 }, layer.bias.shape);
        Assert.Same(layer.named_parameters().First().parameter, layer.weight);
    }
}
