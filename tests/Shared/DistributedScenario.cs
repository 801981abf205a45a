using System.Globalization;
using MlNetGuide.Modules;
using MlNetGuide.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Tests.Shared;

/// <summary>
/// One training run that a 2-rank MPI job and a single process can both do on the same global batches: 12 steps of
/// 20 rows, rank 0 taking 12 of each step's rows and rank 1 the other 8, except the last step, whose 12 rows are rank
/// 0's alone (rank 1 takes an empty step). Momentum SGD with clipping at 1, 3 epochs, validation on each rank's own rows.
/// Each rank initializes from its own seed, so the result also shows that rank 0's weights were broadcast.
/// </summary>
internal static class DistributedScenario
{
    public const int Features = 8, Classes = 3, Steps = 12, GlobalBatch = 20, Rank0Rows = 12, Epochs = 3;

    /// <summary>Trains with <paramref name="ranks"/> (its rank and size, 1 or 2, pick the rows) and returns the weights, as float32 arrays by name, and the history.</summary>
    /// <remarks>
    /// With <paramref name="accumulate"/> &gt; 1, ranks accumulate that many steps per optimizer step; one process instead
    /// takes each window's rows as one batch — the same gradient (the mean over the window's rows), the same steps.
    /// </remarks>
    public static (Dictionary<string, float[]> Weights, History History) Train(ICollectives ranks, string? checkpointPath = null,
        Action<Trainer>? everyBatch = null, string? resumeFrom = null, int accumulate = 1)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(11);
        var x = randn(new long[] { Steps * GlobalBatch, Features }, generator: g);
        var w = randn(new long[] { Features, Classes }, generator: g);
        var y = x.matmul(w).argmax(1);
        var valX = randn(new long[] { 40, Features }, generator: g);
        var valY = valX.matmul(w).argmax(1);
        var batches = new List<(long Start, long Count)>();
        for (int s = 0; s < Steps; s++)
        {
            long start = s * GlobalBatch;
            bool last = s == Steps - 1;
            if (ranks.Size == 1 && accumulate > 1)
            {
                if (s % accumulate == 0) batches.Add((start, Math.Min(accumulate, Steps - s) * GlobalBatch - (s + accumulate >= Steps ? GlobalBatch - Rank0Rows : 0)));
            }
            else if (ranks.Size == 1) batches.Add((start, last ? Rank0Rows : GlobalBatch));
            else if (ranks.Rank == 0) batches.Add((start, Rank0Rows));
            else if (!last) batches.Add((start + Rank0Rows, GlobalBatch - Rank0Rows));
        }
        var (valStart, valCount) = ranks.Size == 1 ? (0L, 40L) : ranks.Rank == 0 ? (0L, 24L) : (24L, 16L);
        IEnumerable<Batch> Slices(Tensor xs, Tensor ys, IEnumerable<(long Start, long Count)> rows)
        {
            foreach (var (start, count) in rows)
                yield return new Batch(xs.narrow(0, start, count).DetachFromDisposeScope(), ys.narrow(0, start, count).DetachFromDisposeScope());
        }
        var data = new EnumerableDataModule(() => Slices(x, y, batches), batches.Count, () => Slices(valX, valY, [(valStart, valCount)]), 1);

        using var model = new Classifier(nn.Sequential(nn.Linear(Features, 16), nn.ReLU(), nn.Linear(16, Classes)), lr: 0.3)
        {
            OptimizerFactory = (ps, lr) => new Sgd(ps, lr, momentum: 0.9),
            DrawsBoard = false,
        };
        // Every weight drawn from a generator of its own (ranks may be threads of one process sharing the global one).
        model.Net.ApplyInit(new InitScheme(Initializer.XavierUniform(), Initializer.Normal(0, 0.1), Seed: 100 + ranks.Rank));
        using var trainer = new Trainer(Epochs, gradientClipVal: 1.0)
        {
            Ranks = ranks, CheckpointPath = checkpointPath, AccumulateGradBatches = ranks.Size > 1 ? accumulate : 1,
        };
        if (everyBatch is not null) trainer.CheckAlive = () => everyBatch(trainer);
        var history = trainer.Fit(model, data, resumeFrom);
        var weights = StateDict.Get(model.Net).ToDictionary(kv => kv.Key, kv => kv.Value.data<float>().ToArray());
        return (weights, history);
    }

    /// <summary>Weights and history as text lines, floats as their exact bits (what a rank writes for the test to read).</summary>
    public static IEnumerable<string> Lines(Dictionary<string, float[]> weights, History history)
    {
        foreach (var (name, values) in weights.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            yield return $"weight {name} {string.Join(",", values.Select(v => BitConverter.SingleToInt32Bits(v).ToString("x8", CultureInfo.InvariantCulture)))}";
        foreach (var e in history.Epochs)
            yield return $"epoch {e.Epoch} " + string.Join(" ", e.Values.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={BitConverter.DoubleToInt64Bits(kv.Value):x16}"));
    }

    /// <summary>The weights in <see cref="Lines"/>' text.</summary>
    public static Dictionary<string, float[]> ReadWeights(IEnumerable<string> lines) =>
        lines.Where(l => l.StartsWith("weight ", StringComparison.Ordinal)).Select(l => l.Split(' ')).ToDictionary(
            p => p[1], p => p[2].Split(',').Select(h => BitConverter.Int32BitsToSingle(int.Parse(h, NumberStyles.HexNumber, CultureInfo.InvariantCulture))).ToArray());
}
