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

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AdamMovesOnlyTheTouchedRowsAsDenseAdamDoes(bool decoupled)
    {
        using var lazy = Weight();
        using var dense = Weight();
        using var lazyAdam = decoupled ? new AdamW([lazy], lr: 0.1, weightDecay: 0.01) : new Adam([lazy], lr: 0.1, weightDecay: 0);
        using var denseAdam = decoupled ? new AdamW([dense], lr: 0.1, weightDecay: 0.01) : new Adam([dense], lr: 0.1, weightDecay: 0);
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
        // Rows 0 and 2 are never touched: unchanged (dense AdamW would decay them; lazy Adam leaves them, as SparseAdam does).
        Assert.Equal(new[] { 0f, 1, 4, 5 }, new[] { actual[0], actual[1], actual[4], actual[5] });
        foreach (int i in new[] { 2, 3, 6, 7 })
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-6 * Math.Max(1, Math.Abs(expected[i])), $"element {i}: dense {expected[i]}, lazy {actual[i]}");
        // By hand: with the same gradient every step, m̂ = g and v̂ = g², so each step is −lr · sign(g): three steps move
        // row 1 (summed gradient (−1, 1)) and row 3 ((−1, 4)) by (+0.3, −0.3).
        if (!decoupled) Assert.Equal(new[] { 2 + 0.3f, 3 - 0.3f, 6 + 0.3f, 7 - 0.3f }, new[] { actual[2], actual[3], actual[6], actual[7] }.Select(v => MathF.Round(v, 4)));
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
