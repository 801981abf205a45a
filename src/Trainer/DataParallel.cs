using MlNetGuide.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>
/// Chapter 13's data parallelism, in process: one replica of the net per extra training device. Each batch is split
/// across the primary net and the replicas, their gradients are summed into the primary, which steps; then
/// <see cref="Broadcast"/> copies its parameters back to the replicas. Owns the replicas.
/// </summary>
internal sealed class DataParallel(IReadOnlyList<Device> devices) : IDisposable
{
    private readonly List<nn.Module<Tensor, Tensor>> _replicas = [];

    /// <summary>Whether there are replicas (training runs on more than one device).</summary>
    public bool IsActive => _replicas.Count > 0;

    /// <summary>
    /// Replaces the replicas with fresh ones of <paramref name="model"/>'s net (built by its
    /// <see cref="TrainableModule.NetFactory"/>), one per device after the first, and copies the primary's weights into them.
    /// With one device or none, only releases the old ones.
    /// </summary>
    public void Replicate(TrainableModule model)
    {
        Dispose();
        if (devices.Count <= 1) return;
        if (model.NetFactory is null)
            throw new InvalidOperationException(
                $"Training on {devices.Count} devices needs replicas of the net: build the {model.GetType().Name} with a net factory (e.g. new Classifier(() => new MLP(...))).");
        model.Net.EnsureInitialized();
        for (int i = 1; i < devices.Count; i++)
        {
            var replica = model.NetFactory();
            replica.to(devices[i]);
            _replicas.Add(replica);
        }
        Broadcast(model.Net);
    }

    /// <summary>The batch's loss (on the first device), each share's backward already run and its gradients summed into the primary net.</summary>
    public Tensor Loss(TrainableModule model, Batch batch)
    {
        // Chapter 13's data parallelism: split the batch, each replica computes its share of the (batch-mean) loss and its
        // gradients, the gradients are summed into the primary model, which steps; Broadcast then copies its parameters back.
        var device = devices[0];
        var modules = new List<nn.Module<Tensor, Tensor>> { model.Net };
        modules.AddRange(_replicas);
        int k = Math.Min(modules.Count, (int)batch.Size);
        var xs = batch.X.tensor_split(k);
        var ys = batch.Y.tensor_split(k);
        foreach (var m in modules) m.zero_grad();
        Tensor total = zeros(1, device: device).squeeze();
        for (int i = 0; i < k; i++)
        {
            var dev = devices[i];
            var x = xs[i].to(dev);
            var y = ys[i].to(dev);
            using var weight = ((double)x.shape[0] / batch.Size).ToScalar();
            var share = model.Loss(modules[i].call(x), y).mul(weight);
            share.backward();
            total = total.add(share.detach().to(device), Scalars.One);
        }
        using (no_grad())
        {
            var primary = model.Net.parameters().ToList();
            for (int i = 1; i < k; i++)
                foreach (var (p, r) in primary.Zip(modules[i].parameters()))
                    if (r.grad is { } g)
                    {
                        if (p.grad is null) p.grad = g.to(p.device);
                        else p.grad.add_(g.to(p.device));
                    }
        }
        model.Plot("loss", total, train: true);
        return total;
    }

    /// <summary>Copies <paramref name="source"/>'s state dict into every replica (nothing without replicas).</summary>
    public void Broadcast(nn.Module source)
    {
        if (_replicas.Count == 0) return;
        using var noGrad = no_grad();
        var sourceState = StateDict.Get(source);
        foreach (var replica in _replicas)
        {
            var target = StateDict.Get(replica);
            foreach (var (key, t) in sourceState) target[key].copy_(t);
        }
    }

    /// <summary>Releases the replicas.</summary>
    public void Dispose()
    {
        foreach (var r in _replicas) r.Dispose();
        _replicas.Clear();
    }
}
