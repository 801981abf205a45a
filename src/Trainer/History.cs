namespace MlNetGuide.Training;

/// <summary>Metrics of one epoch: means over its batches of every value the module plotted.</summary>
public sealed record EpochMetrics(int Epoch, IReadOnlyDictionary<string, double> Values, TimeSpan Elapsed)
{
    /// <summary>Mean training loss over the epoch's batches.</summary>
    public double TrainLoss => Values.GetValueOrDefault("train_loss", double.NaN);

    /// <summary>Mean validation loss, or null without validation data.</summary>
    public double? ValLoss => Values.TryGetValue("val_loss", out var v) ? v : null;

    /// <summary>Mean validation accuracy, or null without validation data or for a regressor.</summary>
    public double? ValAccuracy => Values.TryGetValue("val_acc", out var v) ? v : null;

    /// <summary>The learning rate at the epoch's first step, or null when the optimizer has no parameter groups.</summary>
    public double? LearningRate => Values.TryGetValue("lr", out var v) && !double.IsNaN(v) ? v : null;
}

/// <summary>What <see cref="Trainer.Fit(TrainableModule, DataModule, CancellationToken)"/> returns: one <see cref="EpochMetrics"/> per completed epoch.</summary>
public sealed class History
{
    private readonly List<EpochMetrics> _epochs = [];

    /// <summary>Completed epochs in order.</summary>
    public IReadOnlyList<EpochMetrics> Epochs => _epochs;

    /// <summary>The last completed epoch, or null.</summary>
    public EpochMetrics? Last => _epochs.Count == 0 ? null : _epochs[^1];

    /// <summary>With early stopping: the epoch whose weights the model holds at the end (1-based); otherwise null.</summary>
    public int? BestEpoch { get; internal set; }

    /// <summary>True when early stopping ended training before the last epoch.</summary>
    public bool StoppedEarly(int maxEpochs) => _epochs.Count < maxEpochs;

    internal void Add(EpochMetrics m) => _epochs.Add(m);
}
