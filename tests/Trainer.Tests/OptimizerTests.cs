using MlNetGuide.Tests.Shared;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Training.Tests;

public class OptimizerTests
{
    [Fact]
    public void SgdStepIsParameterMinusLearningRateTimesGradient()
    {
        using var lin = nn.Linear(2, 1, hasBias: false);
        using (no_grad()) lin.weight.copy_(tensor(new float[,] { { 1, 2 } }));
        lin.weight.grad = tensor(new float[,] { { 2, -4 } });
        using var sgd = new Sgd(lin.parameters(), lr: 0.5);   // values exact in binary floating point
        sgd.step();
        Assert.Equal(new float[] { 0f, 4f }, lin.weight.data<float>().ToArray());
        sgd.LearningRate = 0.25;
        sgd.step();
        Assert.Equal(new float[] { -0.5f, 5f }, lin.weight.data<float>().ToArray());
        sgd.zero_grad();
        Assert.Equal(new float[] { 0, 0 }, lin.weight.grad!.data<float>().ToArray());
    }

    [Fact]
    public void AdamFirstStepMovesEachWeightByTheLearningRateAgainstItsGradientSign()
    {
        // After one step m̂ = g and v̂ = g², so the update is -lr · g / (|g| + ε) ≈ -lr · sign(g).
        using var lin = nn.Linear(3, 1, hasBias: false);
        using (no_grad()) lin.weight.zero_();
        lin.weight.grad = tensor(new float[,] { { 5, -0.5f, 100 } });
        using var adam = new Adam(lin.parameters(), lr: 0.01);
        adam.step();
        var w = lin.weight.data<float>().ToArray();
        Assert.Equal(-0.01f, w[0], 5);
        Assert.Equal(0.01f, w[1], 5);
        Assert.Equal(-0.01f, w[2], 5);
    }

    [Fact]
    public void BadHyperparametersAreRejected()
    {
        using var lin = nn.Linear(1, 1);
        Assert.Throws<ArgumentOutOfRangeException>(() => new Sgd(lin.parameters(), 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Adam(lin.parameters(), 0.1, beta1: 1));
    }

    [Theory]
    [InlineData("sgd")]
    [InlineData("adam")]
    public void TrainingSurvivesAGarbageCollectorThatNeverRests(string optimizer)
    {
        // TorchSharp's own optim.SGD crashed under this load after ~3,000 steps (implicit Scalars finalized mid-call).
        var output = ChildProcess.RunProbe("gc-stress", "6000", optimizer);
        Assert.Matches(@"survived \d+ steps", output);
    }
}
