using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using MlNetGuide.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>
/// What the Trainer does across ranks (data parallelism across processes, as chapter 13's is across devices): agree
/// on settings and step counts, broadcast rank 0's parameters and buffers, average gradients in flat buckets weighted
/// by each rank's rows, and reduce losses and epoch metrics, so that every rank steps identically and decides
/// (early stopping, checkpoints, schedules) the same. With one rank every call returns at once.
/// </summary>
internal sealed class RankSync(ICollectives ranks)
{
    /// <summary>Elements per gradient bucket (16 MB of float32): one copy to the host and one allreduce each.</summary>
    private const int BucketElements = 1 << 22;

    public ICollectives Ranks => ranks;

    /// <summary>Whether there is more than one rank.</summary>
    public bool IsActive => ranks.Size > 1;

    /// <summary>The most batches any rank has: every rank takes that many steps, a rank out of batches an empty one.</summary>
    public int AgreeBatches(int local) => IsActive ? (int)ranks.Gather(local).Max() : local;

    /// <summary>
    /// Refuses to train (on every rank) when the ranks' modules, trainer settings or resumed checkpoints differ: a
    /// checkpoint that differs (a stale copy on one machine) would run other epochs or other optimizer state there.
    /// </summary>
    public void Agree(Trainer trainer, TrainableModule model, Resume? resume)
    {
        if (!IsActive) return;
        var inv = CultureInfo.InvariantCulture;
        var settings = new List<(string, string)>
        {
            ("module", model.GetType().FullName ?? model.GetType().Name),
            ("MaxEpochs", trainer.MaxEpochs.ToString(inv)),
            ("AccumulateGradBatches", trainer.AccumulateGradBatches.ToString(inv)),
            ("GradientClipVal", trainer.GradientClipVal.ToString("R", inv)),
            ("EarlyStopping", trainer.EarlyStopping?.ToString() ?? "none"),
            ("checkpoints", trainer.CheckpointPath is null ? "none" : $"every {trainer.CheckpointEvery} epoch(s)"),
            ("resumed from", resume is null ? "nothing" : $"a checkpoint after epoch {resume.Epoch} (SHA-256 {resume.Digest}…)"),
        };
        foreach (var (name, t) in StateDict.Get(model.Net))
            settings.Add(($"tensor '{name}'", $"{t.dtype} [{string.Join(", ", t.shape)}]{(t.requires_grad ? " trainable" : "")}"));
        ranks.Agree("the model and the trainer's settings", settings);
    }

    private static readonly HashSet<ICollectives> Training = new(ReferenceEqualityComparer.Instance);

    /// <summary>
    /// Marks a distributed Fit as running on these collectives; a second one at the same time on the same collectives
    /// (MPI's one communicator) is refused: both would call collectives, interleaved.
    /// </summary>
    public IDisposable EnterFit()
    {
        lock (Training)
            if (!Training.Add(ranks))
                throw new InvalidOperationException("Another distributed Fit is running in this process: ranks train one model at a time (their collectives would interleave).");
        return new FitGate(ranks);
    }

    private sealed class FitGate(ICollectives ranks) : IDisposable
    {
        public void Dispose()
        {
            lock (Training) Training.Remove(ranks);
        }
    }

    /// <summary>Copies rank 0's parameters and buffers into every rank's <paramref name="module"/>.</summary>
    public void Broadcast(nn.Module module)
    {
        if (!IsActive) return;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (var (_, t) in StateDict.Get(module))
        {
            if (t.device_type == DeviceType.CPU && t.is_contiguous())
            {
                ranks.Broadcast(t.bytes, 0); // the tensor's own memory: no copy
                continue;
            }
            using var host = t.cpu().contiguous(); // CUDA-aware MPI could take the device address; staging works with any MPI
            ranks.Broadcast(host.bytes, 0);
            t.copy_(host);
        }
    }

    /// <summary>
    /// The step's loss over every rank's rows, Σ rows·loss / Σ rows, as a host float64 tensor; <paramref name="globalRows"/>
    /// is Σ rows. A rank without a batch passes null and 0 rows. <paramref name="stopping"/>: this rank was asked to stop
    /// (cancelled); <paramref name="stoppedRank"/> is the first rank that was, or −1. One small allreduce (and this rank's
    /// loss read once).
    /// </summary>
    public Tensor ReduceLoss(Tensor? loss, long rows, bool stopping, out double globalRows, out int stoppedRank)
    {
        var sums = new double[2 + ranks.Size];
        (sums[0], sums[1]) = (rows, rows > 0 ? rows * loss!.ToDouble() : 0);
        if (stopping) sums[2 + ranks.Rank] = 1;
        ranks.AllReduceSum(sums);
        globalRows = sums[0];
        stoppedRank = Array.FindIndex(sums, 2, s => s != 0) is var i and >= 0 ? i - 2 : -1;
        return tensor(sums[1] / Math.Max(1, sums[0]), dtype: ScalarType.Float64);
    }

    /// <summary>
    /// What every rank throws at the step where <paramref name="rank"/> was asked to stop: that rank its own error, the
    /// others an <see cref="OperationCanceledException"/> naming it; marked as raised on every rank, so no rank ends the job.
    /// </summary>
    public static Exception StoppedOnEveryRank(Exception? mine, int rank)
    {
        var error = mine ?? new OperationCanceledException($"Training stopped on every rank: rank {rank} was cancelled.");
        error.Data[Collectives.RaisedOnEveryRank] = true;
        return error;
    }

    /// <summary>
    /// Replaces every trainable gradient with the mean over all ranks of the gradients of their rows: each rank's
    /// gradient (of its mean loss over <paramref name="localRows"/> rows) weighted by localRows / <paramref name="globalRows"/>,
    /// then summed. In buckets of consecutive parameters of one dtype, each gathered into one host tensor and reduced in
    /// place. A parameter without a gradient (a rank without rows) takes part with zeros and gets the mean.
    /// </summary>
    public void AverageGradients(nn.Module module, double localRows, double globalRows)
    {
        if (!IsActive) return;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var parameters = module.parameters().Where(p => p.requires_grad).ToList();
        using var weight = (localRows / globalRows).ToScalar();
        for (int start = 0; start < parameters.Count;)
        {
            var dtype = parameters[start].dtype;
            int end = start;
            long elements = 0;
            while (end < parameters.Count && parameters[end].dtype == dtype && (end == start || elements + parameters[end].numel() <= BucketElements))
                elements += parameters[end++].numel();
            var bucket = parameters.GetRange(start, end - start);
            var flat = cat(bucket.Select(p => (p.grad is { is_sparse: true } sparse ? sparse.to_dense() : p.grad ?? zeros_like(p)).flatten()).ToArray()).cpu().mul_(weight).contiguous();
            if (dtype == ScalarType.Float32) ranks.AllReduceSum(MemoryMarshal.Cast<byte, float>(flat.bytes));
            else if (dtype == ScalarType.Float64) ranks.AllReduceSum(MemoryMarshal.Cast<byte, double>(flat.bytes));
            else throw new NotSupportedException($"Distributed training averages float32 and float64 gradients; a parameter is {dtype}.");
            long offset = 0;
            foreach (var p in bucket)
            {
                var mean = flat.narrow(0, offset, p.numel()).view(p.shape);
                offset += p.numel();
                if (p.grad is { is_sparse: false } g) g.copy_(mean);
                else p.grad = mean.to(p.device).clone(); // the parameter holds the gradient; this scope only releases our handle
            }
            start = end;
        }
    }

    /// <summary>
    /// Sums and counts of what every rank plotted this epoch, added up across ranks, under every name any rank plotted
    /// (rank 0's first, in its order; a rank whose share of the validation rows is empty plots no val_*).
    /// </summary>
    public Dictionary<string, (double Sum, int Count)> Reduce(Dictionary<string, (double Sum, int Count)> local)
    {
        if (!IsActive) return local;
        var names = new List<string>();
        for (int r = 0; r < ranks.Size; r++)
            foreach (var name in JsonSerializer.Deserialize<string[]>(ranks.BroadcastString(JsonSerializer.Serialize(local.Keys.ToArray()), r))!)
                if (!names.Contains(name)) names.Add(name);
        var sums = new double[2 * names.Count];
        for (int i = 0; i < names.Count; i++)
            if (local.TryGetValue(names[i], out var mine)) (sums[2 * i], sums[2 * i + 1]) = (mine.Sum, mine.Count);
        ranks.AllReduceSum(sums);
        var result = new Dictionary<string, (double Sum, int Count)>();
        for (int i = 0; i < names.Count; i++) result[names[i]] = (sums[2 * i], (int)sums[2 * i + 1]);
        return result;
    }

    /// <summary>Runs <paramref name="write"/> on rank 0 only, then waits until it has (the other ranks write nothing).</summary>
    public void OnRankZero(Action write)
    {
        if (ranks.Rank == 0) write();
        if (IsActive) ranks.Barrier();
    }

    /// <summary>
    /// Ends the whole job when <paramref name="error"/> is this rank's alone: the others would wait for it forever.
    /// Errors every rank raises at the same point (a mismatch found by agreement, a non-finite loss, which every rank
    /// sees in the reduced loss) propagate as usual.
    /// </summary>
    public void EndJobUnlessShared(Exception error) => Collectives.EndJobOnFailure(ranks, error);
}
