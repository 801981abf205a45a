using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Training.Tests;

/// <summary>
/// Row-sparse gradients (an EmbeddingBag's, <see cref="MlNetGuide.Modules.FeatureBag"/>'s): Adam moves only the rows
/// they touch, summing repeated rows; on the rows it moves, the update is dense Adam's; clipping and zeroing take them.
/// </summary>
public class SparseGradientTests
{
    /// <summary>A row-sparse gradient for a [4, 2] weight, times <paramref name="scale"/>: row 1 twice ((2, 2) and (−3, −1), summed (−1, 1): either entry alone has another sign), row 3 once ((−1, 4)).</summary>
    private static Tensor Gradient(float scale = 1)
    {
        using var indices = tensor(new long[] { 1, 3, 1 }, [1, 3]);
        using var values = tensor(new[] { 2f * scale, 2 * scale, -1 * scale, 4 * scale, -3 * scale, -1 * scale }, [3, 2]);
        return sparse_coo_tensor(indices, values, [4, 2]);
    }

    private static Parameter Weight() => new(arange(8, dtype: ScalarType.Float32).reshape(4, 2));

    private static Adam NewAdam(Parameter p, bool decoupled, double weightDecay, bool fused) => decoupled
        ? new AdamW([p], lr: 0.1, weightDecay: weightDecay) { FuseSparseOnCpu = fused }
        : new Adam([p], lr: 0.1, weightDecay: weightDecay) { FuseSparseOnCpu = fused };

    /// <summary>Both ways of the lazy step: the fused CPU loop (FusedSparseAdam) and the tensor ops other devices run.</summary>
    [Theory]
    [InlineData(false, 0.0, true)]
    [InlineData(false, 0.0, false)]
    [InlineData(false, 0.05, true)]
    [InlineData(false, 0.05, false)]
    [InlineData(true, 0.01, true)]
    [InlineData(true, 0.01, false)]
    public void AdamMovesOnlyTheTouchedRowsAsDenseAdamDoes(bool decoupled, double weightDecay, bool fused)
    {
        using var lazy = Weight();
        using var dense = Weight();
        using var lazyAdam = NewAdam(lazy, decoupled, weightDecay, fused);
        using var denseAdam = NewAdam(dense, decoupled, weightDecay, fused);
        for (int step = 1; step <= 3; step++) // the same rows each step: dense Adam's zero-gradient rows would move only by decay
        {
            lazy.grad = Gradient(decoupled ? step : 1);
            using var g = Gradient(decoupled ? step : 1);
            dense.grad = g.to_dense();
            lazyAdam.step();
            denseAdam.step();
            lazyAdam.zero_grad();
            Assert.Null(lazy.grad); // a sparse gradient is dropped, not zeroed: the next backward starts afresh
        }
        var expected = dense.data<float>().ToArray();
        var actual = lazy.data<float>().ToArray();
        // Rows 0 and 2 are never touched: unchanged (dense Adam(W) would decay them; lazy Adam leaves them, as SparseAdam does).
        Assert.Equal(new[] { 0f, 1, 4, 5 }, new[] { actual[0], actual[1], actual[4], actual[5] });
        foreach (int i in new[] { 2, 3, 6, 7 })
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-6 * Math.Max(1, Math.Abs(expected[i])), $"element {i}: dense {expected[i]}, lazy {actual[i]}");
        // By hand: with the same gradient every step, m̂ = g and v̂ = g², so each step is −lr · sign(g): three steps move
        // row 1 (summed gradient (−1, 1)) and row 3 ((−1, 4)) by (+0.3, −0.3).
        if (!decoupled && weightDecay == 0)
            Assert.Equal(new[] { 2 + 0.3f, 3 - 0.3f, 6 + 0.3f, 7 - 0.3f }, new[] { actual[2], actual[3], actual[6], actual[7] }.Select(v => MathF.Round(v, 4)));
    }

    /// <summary>
    /// An embedding's worth: 5 steps of 3,000 entries over 1,000 rows of 16 (rows repeat within a step, a width the
    /// fused loop takes in vectors and a remainder of 3 it takes one by one): the fused loop and the tensor ops agree.
    /// </summary>
    [Theory]
    [InlineData(16, false)]
    [InlineData(19, true)]
    public void TheFusedStepMatchesTheTensorStep(int width, bool decoupled)
    {
        using var fusedWeight = new Parameter(randn(1000, width, generator: new Generator(3)));
        using var tensorWeight = new Parameter(fusedWeight.detach().clone());
        using var fusedAdam = NewAdam(fusedWeight, decoupled, weightDecay: 0.02, fused: true);
        using var tensorAdam = NewAdam(tensorWeight, decoupled, weightDecay: 0.02, fused: false);
        var generator = new Generator(5);
        for (int step = 0; step < 5; step++)
        {
            using var rows = randint(0, 1000, [1, 3000], dtype: ScalarType.Int64, generator: generator);
            using var values = randn(3000, width, generator: generator);
            fusedWeight.grad = sparse_coo_tensor(rows, values, [1000, width]);
            tensorWeight.grad = sparse_coo_tensor(rows, values, [1000, width]);
            fusedAdam.step();
            tensorAdam.step();
            fusedAdam.zero_grad();
            tensorAdam.zero_grad();
        }
        using var difference = (fusedWeight - tensorWeight).abs().max();
        using var size = tensorWeight.abs().max();
        Assert.True(difference.item<float>() <= 1e-5 * size.item<float>(), $"largest difference {difference.item<float>()} of weights up to {size.item<float>()}");
        using var moved = (fusedWeight - randn(1000, width, generator: new Generator(3))).abs().sum();
        Assert.True(moved.item<float>() > 1, "the weights did not move");
    }

    /// <summary>A gradient naming a row the parameter lacks is refused before anything moves, and the next step works.</summary>
    [Fact]
    public void TheFusedStepRefusesARowOutsideTheParameter()
    {
        using var weight = Weight();
        using var adam = new Adam([weight], lr: 0.1);
        using var indices = tensor(new long[] { 1, 6 }, [1, 2]);
        using var values = ones(2, 2);
        weight.grad = sparse_coo_tensor(indices, values, [8, 2]); // shaped for 8 rows; the weight has 4
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => adam.step());
        Assert.Contains("row 6 of a parameter with 4", error.Message);
        Assert.Equal(Enumerable.Range(0, 8).Select(i => (float)i), weight.data<float>().ToArray());
        weight.grad = Gradient();
        adam.step(); // the scratch map was left clean: row 1 (marked before the refusal) moves by its own gradient only
        var after = weight.data<float>().ToArray();
        Assert.Equal(new[] { 2 + 0.1f, 3 - 0.1f, 6 + 0.1f, 7 - 0.1f }, new[] { after[2], after[3], after[6], after[7] }.Select(v => MathF.Round(v, 4)));
        Assert.Equal(new[] { 0f, 1, 4, 5 }, new[] { after[0], after[1], after[4], after[5] });
    }

    [Fact]
    public void ClippingScalesASparseGradientByTheGlobalNorm()
    {
        using var bag = new MlNetGuide.Modules.FeatureBag(4, 1, 2);
        var weight = bag.named_parameters().Single(q => q.name == "bag.weight").parameter;
        weight.grad = Gradient();
        // Summed rows (−1, 1) and (−1, 4): ‖g‖² = 1 + 1 + 1 + 16 = 19; clip to 1 scales by 1/√19.
        MlNetGuide.Training.Trainer.ClipGradients(1, bag);
        using var grad = weight.grad!;
        Assert.True(grad.is_sparse);
        using var clipped = grad.to_dense();
        var s = 1 / (Math.Sqrt(19) + 1e-6);
        var expected = new[] { 0, 0, -1 * s, 1 * s, 0, 0, -1 * s, 4 * s };
        var actual = clipped.data<float>().ToArray();
        for (int i = 0; i < 8; i++) Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5, $"element {i}: {expected[i]} vs {actual[i]}");
    }
}
