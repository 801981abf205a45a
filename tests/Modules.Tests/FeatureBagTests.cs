using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Modules.Tests;

/// <summary>
/// <see cref="FeatureBag"/>: x · bag.weight, then the decoder, from a sparse batch's non-zeros or a dense batch alike;
/// its weight's gradient is sparse and holds only the features a batch has.
/// </summary>
public class FeatureBagTests
{
    /// <summary>5 features of d = 2: feature j's vector is (j, 10 j); the decoder sums the two and adds 1.</summary>
    private static FeatureBag Net()
    {
        var net = new FeatureBag(inputs: 5, outputs: 1, size: 2);
        using var noGrad = no_grad();
        var p = net.named_parameters().ToDictionary(q => q.name, q => q.parameter);
        p["bag.weight"].copy_(tensor(new float[] { 0, 0, 1, 10, 2, 20, 3, 30, 4, 40 }, [5, 2]));
        p["decoder.weight"].copy_(tensor(new float[] { 1, 1 }, [1, 2]));
        p["decoder.bias"].copy_(tensor(new float[] { 1 }, [1]));
        return net;
    }

    [Fact]
    public void ASparseBatchGivesTheDenseBatchsLogitsCheckedByHand()
    {
        using var net = Net();
        // Row 0: 2·x1 + 1·x4 → (2 + 4, 20 + 40) → 66 + 1 = 67. Row 1: 0.5·x3 → (1.5, 15) → 17.5. Row 2: empty → the bias, 1.
        using var dense = tensor(new float[] { 0, 2, 0, 0, 1, 0, 0, 0, 0.5f, 0, 0, 0, 0, 0, 0 }, [3, 5]);
        // The entries out of row order, as an uncoalesced COO tensor may hold them.
        using var indices = tensor(new long[] { 1, 0, 0, 3, 1, 4 }, [2, 3]);
        using var values = tensor(new float[] { 0.5f, 2, 1 });
        using var sparse = sparse_coo_tensor(indices, values, [3, 5]);
        using var fromDense = net.call(dense);
        using var fromSparse = net.call(sparse);
        Assert.Equal(new[] { 67f, 17.5f, 1f }, fromDense.data<float>().ToArray());
        Assert.Equal(new[] { 67f, 17.5f, 1f }, fromSparse.data<float>().ToArray());
    }

    [Fact]
    public void ItsWeightsGradientIsSparseAndHoldsOnlyTheBatchsFeatures()
    {
        using var net = Net();
        using var indices = tensor(new long[] { 0, 0, 1, 1, 4, 1 }, [2, 3]); // row 0: features 1 and 4; row 1: feature 1 again
        using var values = tensor(new float[] { 2, 1, 3 });
        using var sparse = sparse_coo_tensor(indices, values, [2, 5]);
        using var logits = net.call(sparse);
        using var loss = logits.sum();
        loss.backward();
        var weight = net.named_parameters().Single(q => q.name == "bag.weight").parameter;
        using var grad = weight.grad!;
        Assert.True(grad.is_sparse);
        using var denseGrad = grad.to_dense();
        // d(sum of logits)/d(row j of the bag) = (Σ of feature j's values) × decoder (1, 1): feature 1 gets 2 + 3, feature 4 gets 1.
        Assert.Equal(new[] { 0f, 0, 5, 5, 0, 0, 0, 0, 1, 1 }, denseGrad.data<float>().ToArray());
    }

    [Fact]
    public void AWrongWidthIsRefusedWithBothShapes()
    {
        using var net = Net();
        using var x = zeros(2, 4);
        var e = Assert.Throws<ArgumentException>(() => net.call(x));
        Assert.Contains("[batch, 5]", e.Message);
        Assert.Contains("[2, 4]", e.Message);
    }
}
