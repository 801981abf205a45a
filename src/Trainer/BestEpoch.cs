using MlNetGuide.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>
/// The early-stopping bookkeeping of <see cref="Trainer.Fit(TrainableModule, DataModule, string, CancellationToken)"/>
/// (Lightning's <c>EarlyStopping</c> callback): the best value so far, its epoch, and a copy of its weights. Owns that
/// copy; the trainer disposes it when Fit ends.
/// </summary>
internal sealed class BestEpoch(EarlyStopping? rule) : IDisposable
{
    private Dictionary<string, Tensor>? _weights;
    private int _since;

    public int? Epoch { get; private set; }
    public double? Value { get; private set; }

    /// <summary>Records the epoch; true when training should stop.</summary>
    public bool Observe(EpochMetrics metrics, TrainableModule model)
    {
        if (rule is null) return false;
        if (!metrics.Values.TryGetValue(rule.Monitor, out var value))
            throw new InvalidOperationException(
                $"EarlyStopping monitors '{rule.Monitor}', but the epoch reported {string.Join(", ", metrics.Values.Keys.Select(k => $"'{k}'"))}" +
                (rule.Monitor.StartsWith("val_", StringComparison.Ordinal) ? ": give the Trainer validation data." : "."));
        if (rule.Improves(value, Value))
        {
            (Epoch, Value, _since) = (metrics.Epoch, value, 0);
            if (rule.RestoreBestWeights) Snapshot(model);
            return false;
        }
        return ++_since >= rule.Patience;
    }

    /// <summary>Puts the best epoch's weights back into <paramref name="model"/>; false when there are none to restore.</summary>
    public bool Restore(TrainableModule model)
    {
        if (_weights is null || rule is null || !rule.RestoreBestWeights) return false;
        StateDict.Load(model, _weights);
        return true;
    }

    private void Snapshot(TrainableModule model)
    {
        Dispose();
        using var noGrad = no_grad();
        _weights = StateDict.Get(model).ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone().DetachFromDisposeScope());
    }

    /// <summary>Releases the copy of the best weights.</summary>
    public void Dispose()
    {
        foreach (var t in _weights?.Values ?? Enumerable.Empty<Tensor>()) t.Dispose();
        _weights = null;
    }
}
