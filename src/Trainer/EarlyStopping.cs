namespace MlNetGuide.Training;

/// <summary>
/// Stops training when a monitored epoch metric has not improved for <see cref="Patience"/> epochs, and (by default)
/// puts back the weights of the best epoch — PyTorch Lightning's <c>EarlyStopping</c> with
/// <c>ModelCheckpoint(save_top_k=1)</c>, Keras's <c>restore_best_weights</c>.
/// </summary>
/// <param name="Monitor">The <see cref="EpochMetrics"/> value watched: "val_loss" (default), "val_acc", "train_loss", ….</param>
/// <param name="Patience">Epochs without improvement before stopping (≥ 1).</param>
/// <param name="MinDelta">The smallest change that counts as an improvement (≥ 0).</param>
/// <param name="RestoreBestWeights">Put back the best epoch's parameters and buffers when training ends.</param>
public sealed record EarlyStopping(string Monitor = "val_loss", int Patience = 3, double MinDelta = 0, bool RestoreBestWeights = true)
{
    /// <summary>Whether larger values are better: metrics named like accuracies ("…acc…"); losses are minimized.</summary>
    public bool Maximize => Monitor.Contains("acc", StringComparison.OrdinalIgnoreCase);

    /// <summary>Throws when a field is out of range.</summary>
    public void Validate()
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(Monitor);
        if (Patience < 1) throw new ArgumentOutOfRangeException(nameof(Patience), Patience, "Patience must be at least 1 epoch.");
        if (!(MinDelta >= 0) || double.IsInfinity(MinDelta)) throw new ArgumentOutOfRangeException(nameof(MinDelta), MinDelta, "MinDelta must be a finite number ≥ 0.");
    }

    /// <summary>True when <paramref name="value"/> beats <paramref name="best"/> by more than <see cref="MinDelta"/>.</summary>
    internal bool Improves(double value, double? best) =>
        best is not double b || (Maximize ? value > b + MinDelta : value < b - MinDelta);
}
