using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>
/// One epoch of gradient accumulation (Lightning's <c>accumulate_grad_batches</c>): batches are counted in windows of
/// <c>k</c>, the optimizer steps at the end of each window (the epoch's last window possibly shorter), and each batch's
/// loss is scaled by 1/k before its backward. Owns the 1/k Scalar; made and disposed once per <see cref="Trainer.FitEpoch"/>.
/// </summary>
internal sealed class GradientAccumulation : IDisposable
{
    private readonly int _k, _batchesPerEpoch;
    private readonly Scalar _scale;
    private int _inWindow, _batchInEpoch;

    /// <summary>Windows of <paramref name="k"/> batches over an epoch of <paramref name="batchesPerEpoch"/>.</summary>
    public GradientAccumulation(int k, int batchesPerEpoch)
    {
        (_k, _batchesPerEpoch) = (k, batchesPerEpoch);
        _scale = (1.0 / k).ToScalar();
    }

    /// <summary>Optimizer steps per epoch: one per <paramref name="k"/> batches, the last window possibly shorter.</summary>
    public static int StepsPerEpoch(int batchesPerEpoch, int k) => (batchesPerEpoch + k - 1) / k;

    /// <summary>True before the window's first batch: the gradients are zeroed then, and accumulate until the step.</summary>
    public bool StartsWindow => _inWindow == 0;

    /// <summary>
    /// The loss whose backward adds this batch's share: itself when k = 1, else loss·(1/k) (k batches of mean losses,
    /// each scaled by 1/k, add up to the gradient of their mean).
    /// </summary>
    public Tensor Scale(Tensor loss) => _k == 1 ? loss : loss.mul(_scale);

    /// <summary>Counts a batch; true when it ends a window (k batches, or the epoch's last): the optimizer steps now.</summary>
    public bool EndsWindow()
    {
        _batchInEpoch++;
        if (++_inWindow != _k && _batchInEpoch != _batchesPerEpoch) return false;
        _inWindow = 0;
        return true;
    }

    /// <summary>Releases the 1/k Scalar.</summary>
    public void Dispose() => _scale.Dispose();
}
