using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules.Tests;

public class SummaryTests
{
    [Fact]
    public void SummaryShowsTreeParametersAndUniqueCountWhenTied()
    {
        var shared = nn.Linear(8, 8);
        using var net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU(), nn.Linear(8, 1));
        var text = ModuleSummary.Describe(net);
        Assert.Contains("(0): Linear(in_features=4, out_features=8, bias=True)", text);
        Assert.Contains("(4): Linear(in_features=8, out_features=8, bias=True)  [same module as (2)]", text);
        Assert.Contains("4.weight", text);
        Assert.Contains("(tied to 2.weight)", text);
        // 40 + 72 + 72 + 9 = 193 listed; the tied 72 count once: 121 unique.
        Assert.Contains("Total parameters: 193 (121 unique; tied parameters counted once)", text);
        Assert.Equal(121, ModuleSummary.CountParameters(net));
    }

    [Fact]
    public void SummaryOfAnUninitializedLazyNetSaysSo()
    {
        using var net = new MLP();
        var text = ModuleSummary.Describe(net);
        Assert.Contains("LazyLinear(in_features=?, out_features=256, bias=True) [uninitialized]", text);
        Assert.Contains("No parameters yet", text);
    }
}

public class MemoryTests
{
    [Fact]
    public void BuildingAndRunningNetsInAScopeLeavesNoLiveTensors()
    {
        long before = TensorAssert.LiveTensors;
        for (int i = 0; i < 5; i++)
        {
            using var scope = NewDisposeScope();
            var net = nn.Sequential(new NestMLP(), new LazyLinear(20), new FixedHiddenMLP(), nn.Identity());
            using var x = rand(2, 20);
            var y = net.call(x);
            y.backward();
            net.Dispose();
        }
        Assert.Equal(before, TensorAssert.LiveTensors);
    }

    [Fact]
    public void LazilyMaterializedParametersSurviveTheScopeOfTheDryRun()
    {
        using var net = nn.Sequential(new LazyLinear(4), nn.ReLU(), new LazyLinear(2));
        long before = TensorAssert.LiveTensors;
        using (var scope = NewDisposeScope())
            net.call(rand(3, 5));
        // The four parameters (two weights, two biases) are alive and owned by the net.
        Assert.Equal(before + 4, TensorAssert.LiveTensors);
        Assert.All(net.parameters(), p => Assert.False(p.IsInvalid));
        using var x = rand(3, 5);
        using var y = net.call(x);
        Assert.Equal(new long[] { 3, 2 }, y.shape);
    }
}
