using MlNetGuide.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>
/// A copy of what resuming from a checkpoint changes — the model's weights and buffers, the data module's shuffle
/// state — so a refused checkpoint can put them back as they were. A model with lazy layers still uninitialized has no
/// weights to copy; a refusal leaves it materialized from the checkpoint's shapes.
/// </summary>
internal sealed class Snapshot : IDisposable
{
    private readonly Dictionary<string, Tensor>? _weights;
    private readonly byte[] _dataState;

    private Snapshot(Dictionary<string, Tensor>? weights, byte[] dataState) => (_weights, _dataState) = (weights, dataState);

    public static Snapshot Take(TrainableModule model, DataModule data)
    {
        Dictionary<string, Tensor>? weights = null;
        if (model.IsFullyInitialized())
            using (no_grad())
                weights = StateDict.Get(model).ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone().DetachFromDisposeScope());
        return new Snapshot(weights, data.SaveRandomState());
    }

    public void Restore(TrainableModule model, DataModule data)
    {
        if (_weights is not null) StateDict.Load(model, _weights);
        if (_dataState.Length > 0) data.LoadRandomState(_dataState);
    }

    public void Dispose()
    {
        if (_weights is null) return;
        foreach (var t in _weights.Values) t.Dispose();
    }
}
