using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules.Tests;

/// <summary>6.2 Parameter management.</summary>
public class ParameterManagementTests
{
    private static Sequential ChapterNet() => nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1));

    [Fact]
    public void IndexIntoSequentialAndReadALayersStateDict()
    {
        using var net = ChapterNet();
        var last = (Linear)net[2];
        Assert.Equal(new[] { "weight", "bias" }, last.state_dict().Keys);
        Assert.Equal(new long[] { 1, 8 }, last.weight.shape);
        Assert.Equal(new long[] { 1 }, last.bias!.shape);
        Assert.IsType<Parameter>(last.bias);
        // Reading values needs no autograd: .data<float>() copies nothing into the graph.
        float b = last.bias!.data<float>()[0];
        Assert.InRange(b, -1 / MathF.Sqrt(8), 1 / MathF.Sqrt(8)); // nn.Linear's default bias bound
    }

    [Fact]
    public void GradIsNullBeforeBackwardAndSetAfter()
    {
        using var net = ChapterNet();
        var last = (Linear)net[2];
        Assert.Null(last.weight.grad);
        using var x = rand(2, 4);
        using var loss = net.call(x).sum();
        loss.backward();
        Assert.NotNull(last.weight.grad);
        Assert.Equal(last.weight.shape, last.weight.grad!.shape);
    }

    [Fact]
    public void AllParametersAtOnceHaveDottedNamesAndShapes()
    {
        using var net = ChapterNet();
        var all = net.named_parameters().Select(p => (p.name, shape: string.Join("x", p.parameter.shape))).ToList();
        Assert.Equal(new[] { ("0.weight", "8x4"), ("0.bias", "8"), ("2.weight", "1x8"), ("2.bias", "1") }, all);
    }

    private static (Sequential net, Linear shared) TiedNet()
    {
        var shared = nn.Linear(8, 8);
        var net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU(), nn.Linear(8, 1));
        return (net, shared);
    }

    [Fact]
    public void TiedLayersHoldOneParameterObject()
    {
        var (net, _) = TiedNet();
        using var _net = net;
        var w2 = ((Linear)net[2]).weight;
        var w4 = ((Linear)net[4]).weight;
        Assert.Same(w2, w4);
        using (no_grad()) w2[0, 0] = 100;
        Assert.Equal(100f, ((Linear)net[4]).weight[0, 0].item<float>());
        Assert.True(((Linear)net[2]).weight.equal(((Linear)net[4]).weight).all().item<bool>());
    }

    [Fact]
    public void SharedGradientIsTheSumOfBothUses()
    {
        manual_seed(7);
        var (net, shared) = TiedNet();
        using var _net = net;
        // An untied twin with copied weights: positions 2 and 4 are distinct layers holding equal values.
        var twin2 = nn.Linear(8, 8);
        var twin4 = nn.Linear(8, 8);
        var twin = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), twin2, nn.ReLU(), twin4, nn.ReLU(), nn.Linear(8, 1));
        using var _twin = twin;
        using (no_grad())
        {
            ((Linear)twin[0]).weight.copy_(((Linear)net[0]).weight); ((Linear)twin[0]).bias!.copy_(((Linear)net[0]).bias!);
            twin2.weight.copy_(shared.weight); twin2.bias!.copy_(shared.bias!);
            twin4.weight.copy_(shared.weight); twin4.bias!.copy_(shared.bias!);
            ((Linear)twin[6]).weight.copy_(((Linear)net[6]).weight); ((Linear)twin[6]).bias!.copy_(((Linear)net[6]).bias!);
        }
        using var x = rand(5, 4);
        using (var l = net.call(x).pow(2).sum()) l.backward();
        using (var l = twin.call(x).pow(2).sum()) l.backward();
        using var expected = twin2.weight.grad! + twin4.weight.grad!;
        TensorAssert.Close(expected, shared.weight.grad!, atol: 1e-6);
        Assert.False(twin2.weight.grad!.allclose(twin4.weight.grad!)); // the two uses really contribute differently
    }

    [Fact]
    public void StateDictListsTiedTensorsOnceInTorchSharpAndUnderEveryNamePyTorchStyle()
    {
        var (net, _) = TiedNet();
        using var _net = net;
        Assert.Equal(new[] { "0.weight", "0.bias", "2.weight", "2.bias", "6.weight", "6.bias" }, net.state_dict().Keys);
        Assert.Equal(new[] { "0.weight", "0.bias", "2.weight", "2.bias", "6.weight", "6.bias" }, StateDict.Get(net).Keys);
        Assert.Equal(new[] { "0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias", "6.weight", "6.bias" },
            StateDict.Get(net, includeAliases: true).Keys);
    }

    [Fact]
    public void LoadingAPyTorchStyleStateDictWithBothTiedKeysWorks()
    {
        manual_seed(11);
        var (source, _) = TiedNet();
        var (target, targetShared) = TiedNet();
        using var _s = source;
        using var _t = target;
        var pytorchStyle = StateDict.Get(source, includeAliases: true);
        StateDict.Load(target, pytorchStyle);
        TensorAssert.Equal(((Linear)source[4]).weight, targetShared.weight);
        // Any one alias suffices.
        var onlyAlias4 = StateDict.Get(source, includeAliases: true).Where(kv => !kv.Key.StartsWith("2.")).ToDictionary();
        StateDict.Load(target, onlyAlias4);
        // Aliases that disagree are rejected.
        using var other = randn(8, 8);
        pytorchStyle["4.weight"] = other;
        var ex = Assert.Throws<StateDictMismatchException>(() => StateDict.Load(target, pytorchStyle));
        Assert.Contains("'2.weight' and '4.weight'", ex.Message);
    }
}
