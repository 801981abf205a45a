using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>
/// This epoch's training losses, one per batch, kept on the device so that a step never syncs with the host: read only
/// at the board's cadence, to find a non-finite loss (<see cref="ThrowIfNonFinite"/>), and once per epoch for the mean
/// when the module plotted none (<see cref="EpochMean"/>). Owns the buffer and its views; <see cref="Dispose"/> releases
/// them and <see cref="Allocate"/> makes them again (the trainer keeps one of these across Fits).
/// </summary>
internal sealed class StepLosses : IDisposable
{
    /// <summary>Batches per epoch whose loss slots are made once per Fit (each is a native tensor handle).</summary>
    private const int MaxLossSlots = 1 << 16;

    private Tensor? _stepLosses; // on the device: this epoch's training losses, read only at the board's cadence
    private Tensor[] _stepLossSlots = []; // views of _stepLosses, one per batch up to MaxLossSlots, made once per Fit
    private int _checkedUpTo;     // batches of this epoch already checked for non-finite losses
    private int _checkEvery = 1;  // batches between checks: the board's cadence

    /// <summary>Releases any previous buffer, then makes a float64 one of <paramref name="batchesPerEpoch"/> losses on <paramref name="device"/>.</summary>
    public void Allocate(int batchesPerEpoch, Device device)
    {
        Dispose();
        _stepLosses = zeros(new long[] { batchesPerEpoch }, dtype: ScalarType.Float64, device: device).DetachFromDisposeScope();
        // One view per batch, made once, up to MaxLossSlots batches per epoch (more would hold that many native handles).
        _stepLossSlots = new Tensor[Math.Min(batchesPerEpoch, MaxLossSlots)];
        for (int i = 0; i < _stepLossSlots.Length; i++) _stepLossSlots[i] = _stepLosses.select(0, i).DetachFromDisposeScope();
    }

    /// <summary>A new epoch, read every <paramref name="checkEvery"/> batches: nothing of it has been checked yet.</summary>
    public void BeginEpoch(int checkEvery) => (_checkEvery, _checkedUpTo) = (checkEvery, 0);

    /// <summary>Whether the losses are due to be read after batch <paramref name="trainBatchIdx"/> (counted since Fit began).</summary>
    public bool CheckDue(int trainBatchIdx) => trainBatchIdx % _checkEvery == 0;

    /// <summary>Records the loss of batch <paramref name="trainBatchIdx"/> (since Fit began) on the device; reads nothing.</summary>
    public void Track(Tensor loss, int trainBatchIdx, int batchesPerEpoch)
    {
        if (_stepLosses is null) return;
        int i = trainBatchIdx % batchesPerEpoch;
        using var noGrad = no_grad();
        if (i < _stepLossSlots.Length)
        {
            _stepLossSlots[i].copy_(loss); // one device op per step into a view made once; nothing is read here
            return;
        }
        using var slot = _stepLosses.select(0, i); // past MaxLossSlots: a view for this step only
        slot.copy_(loss);
    }

    /// <summary>The mean of this epoch's training losses as recorded for the non-finite check (one host sync).</summary>
    public double EpochMean(int epoch, int trainBatchIdx, int batchesPerEpoch)
    {
        int n = Math.Min((int)(_stepLosses?.shape[0] ?? 0), trainBatchIdx - epoch * batchesPerEpoch);
        if (n <= 0) return double.NaN;
        using var window = _stepLosses!.narrow(0, 0, n);
        using var mean = window.mean();
        return mean.item<double>();
    }

    /// <summary>Reads the losses logged since the last check (one host sync) and names the first non-finite one.</summary>
    /// <exception cref="NonFiniteLossException">One of them is NaN or infinite.</exception>
    public void ThrowIfNonFinite(int epoch, int trainBatchIdx, int batchesPerEpoch)
    {
        if (_stepLosses is null) return;
        int upTo = Math.Min((int)_stepLosses.shape[0], trainBatchIdx - epoch * batchesPerEpoch);
        if (upTo <= _checkedUpTo) return;
        using var scope = NewDisposeScope();
        var window = _stepLosses.narrow(0, _checkedUpTo, upTo - _checkedUpTo);
        var bad = window.isfinite().logical_not();
        if (bad.any().item<bool>())
        {
            int first = _checkedUpTo + (int)bad.to_type(ScalarType.Int64).argmax().item<long>();
            throw new NonFiniteLossException(epoch + 1, first + 1, batchesPerEpoch);
        }
        _checkedUpTo = upTo;
    }

    /// <summary>Releases the views and the buffer.</summary>
    public void Dispose()
    {
        foreach (var slot in _stepLossSlots) slot.Dispose();
        _stepLossSlots = [];
        _stepLosses?.Dispose();
        _stepLosses = null;
    }
}
