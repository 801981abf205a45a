namespace MlNetGuide.Training;

/// <summary>Training produced a NaN or infinite loss.</summary>
public sealed class NonFiniteLossException(int epoch, int batch, int batchesPerEpoch)
    : ArithmeticException($"The training loss became non-finite (NaN or infinity) at epoch {epoch}, batch {batch} of {batchesPerEpoch}. " +
                          "Lower the learning rate, clip gradients (gradientClipVal) or check the data for NaN/infinite values.")
{
    /// <summary>The epoch (1-based).</summary>
    public int Epoch { get; } = epoch;

    /// <summary>The batch within the epoch (1-based).</summary>
    public int Batch { get; } = batch;
}
