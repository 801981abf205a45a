using MlNetGuide.Tests.Shared;
using MlNetGuide.Training;

namespace MlNetGuide.Training.Tests;

/// <summary>
/// The collectives seam without MPI: the single-process default, and ranks simulated by threads of one process
/// (<see cref="ThreadRanks"/>) for the agreement rules and the Trainer's data parallelism. Real MPI jobs are in
/// EndToEnd.Tests/Distributed.
/// </summary>
public sealed class CollectivesTests
{
    [Fact]
    public void OutsideAnMpiLauncherTheTrainerTrainsAsOneProcess()
    {
        Assert.Null(Collectives.LaunchedRanks()); // the test host was not started by mpirun
        using var trainer = new Trainer(1);
        Assert.Same(Collectives.SingleProcess, trainer.Ranks);
        Assert.Equal((0, 1), (trainer.Ranks.Rank, trainer.Ranks.Size));
        Assert.Same(Collectives.SingleProcess, Collectives.For(Distribution.Auto));
        Assert.Equal([7.0], Collectives.SingleProcess.Gather(7));
        Assert.Equal("x", Collectives.SingleProcess.BroadcastString("x", 0));
    }

    [Fact]
    public void RanksThatDisagreeAreRefusedOnEveryRankNamingTheSettingAndBothValues()
    {
        var errors = ThreadRanks.Run(2, ranks =>
        {
            ranks.Agree("the options", [("Epochs", "10"), ("BatchSize", ranks.Rank == 1 ? "64" : "128")]);
            return "";
        });
        const string expected = "The ranks of this job disagree on the options: rank 1 has BatchSize = 64 where rank 0 has BatchSize = 128.";
        foreach (var e in errors) Assert.StartsWith(expected, Assert.IsType<RankMismatchException>(e.Error).Message);
    }

    [Fact]
    public void ARankWithASettingTheOthersLackIsRefusedToo()
    {
        var errors = ThreadRanks.Run(3, ranks =>
        {
            var settings = new List<(string, string)> { ("width", "784") };
            if (ranks.Rank == 2) settings.Add(("tensor 'extra.weight'", "Float32 [3]"));
            ranks.Agree("the model", settings);
            return "";
        });
        foreach (var e in errors)
            Assert.StartsWith("The ranks of this job disagree on the model: rank 2 has tensor 'extra.weight' = Float32 [3] where rank 0 has (nothing).",
                Assert.IsType<RankMismatchException>(e.Error).Message);
    }

    [Fact]
    public void RanksThatAgreeGoOn()
    {
        var results = ThreadRanks.Run(2, ranks =>
        {
            ranks.Agree("the options", [("Epochs", "10")]);
            return string.Join(",", ranks.Gather(ranks.Rank + 1));
        });
        Assert.All(results, r => Assert.Equal("1,2", r.Result));
    }

    [Fact]
    public void TwoRanksEndWithTheSameWeightsAsOneProcessOnTheSameGlobalBatches()
    {
        // Rank 0 takes 12 of each step's 20 rows, rank 1 the other 8, and an empty step at the end: only weighting each
        // rank's gradient by its rows gives the gradient of the global batch; only rank 0's broadcast gives one start.
        var runs = ThreadRanks.Run(2, ranks => DistributedScenario.Train(ranks).Weights);
        var (single, _) = DistributedScenario.Train(Collectives.SingleProcess);
        foreach (var (name, expected) in single)
        {
            Assert.Equal(runs[0].Result![name], runs[1].Result![name]); // bit for bit
            double scale = expected.Max(v => Math.Abs(v));
            double worst = expected.Zip(runs[0].Result![name], (a, b) => Math.Abs(a - b)).Max();
            Assert.True(worst <= 1e-5 * scale, $"{name}: 2 ranks differ from one process by {worst:G3} (largest weight {scale:G3})");
        }
    }

    [Fact]
    public void WithGradientAccumulationTwoRanksEqualOneProcessTakingEachWindowAsOneBatch()
    {
        // Windows of 2 steps: 40 rows each (12 + 8 per rank per step), the last 32 (rank 1 has an empty step there). Only
        // summing rows' gradients over the window on every rank, then dividing by the window's rows, gives the window's mean.
        var runs = ThreadRanks.Run(2, ranks => DistributedScenario.Train(ranks, accumulate: 2).Weights);
        var (single, _) = DistributedScenario.Train(Collectives.SingleProcess, accumulate: 2);
        foreach (var (name, expected) in single)
        {
            Assert.Equal(runs[0].Result![name], runs[1].Result![name]);
            double worst = expected.Zip(runs[0].Result![name], (a, b) => Math.Abs(a - b)).Max();
            Assert.True(worst <= 1e-5 * expected.Max(v => Math.Abs(v)), $"{name}: accumulating ranks differ from one process by {worst:G3}");
        }
    }

    [Fact]
    public void ACancelledRankStopsEveryRankAtTheSameStepWithoutEndingTheJob()
    {
        var seen = new int[2];
        var runs = ThreadRanks.Run(2, ranks => DistributedScenario.Train(ranks, everyBatch: trainer =>
        {
            seen[ranks.Rank] = trainer.TrainBatchIdx;
            if (ranks.Rank == 1 && trainer.TrainBatchIdx == 17) throw new OperationCanceledException("rank 1's own stop");
        }).Weights);
        Assert.Equal([17, 17], seen); // both stopped before step 18: neither took another step, neither waits
        Assert.Equal("rank 1's own stop", Assert.IsType<OperationCanceledException>(runs[1].Error).Message);
        Assert.Contains("rank 1 was cancelled", Assert.IsType<OperationCanceledException>(runs[0].Error).Message);
        // ThreadRanks.Abort throws "abort …": had either rank tried to end the job, its error would say so.
        Assert.All(runs, r => Assert.DoesNotContain("abort", r.Error!.Message));
    }
}

/// <summary>
/// <see cref="ICollectives"/> for ranks that are threads of this process: what MPI does between processes, through
/// shared arrays and a barrier. <see cref="Abort"/> throws instead of ending the process.
/// </summary>
internal sealed class ThreadRanks(int rank, ThreadRanks.Shared shared) : ICollectives
{
    internal sealed class Shared(int size)
    {
        public readonly Barrier Barrier = new(size);
        public readonly double[][] Slots = new double[size][];
        public byte[] Bytes = [];
    }

    public int Rank => rank;
    public int Size => shared.Slots.Length;

    /// <summary>Runs <paramref name="body"/> on <paramref name="size"/> threads, one rank each; returns each rank's result or error.</summary>
    public static (T? Result, Exception? Error)[] Run<T>(int size, Func<ICollectives, T> body)
    {
        var shared = new Shared(size);
        var results = new (T?, Exception?)[size];
        var threads = Enumerable.Range(0, size).Select(r => new Thread(() =>
        {
            try { results[r] = (body(new ThreadRanks(r, shared)), null); }
            catch (Exception e) { results[r] = (default, e); shared.Barrier.RemoveParticipant(); }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        return results;
    }

    public void AllReduceSum(Span<float> values)
    {
        var mine = new double[values.Length];
        for (int i = 0; i < values.Length; i++) mine[i] = values[i];
        var sum = Sum(mine);
        for (int i = 0; i < values.Length; i++) values[i] = (float)sum[i]; // exact for the sums of two floats these tests make
    }

    public void AllReduceSum(Span<double> values) => Sum(values.ToArray()).CopyTo(values);

    private double[] Sum(double[] mine)
    {
        shared.Slots[rank] = mine;
        shared.Barrier.SignalAndWait();
        var sum = new double[mine.Length];
        foreach (var slot in shared.Slots) // in rank order on every rank: the same bits everywhere
            for (int i = 0; i < sum.Length; i++) sum[i] += slot[i];
        shared.Barrier.SignalAndWait();
        return sum;
    }

    public void Broadcast(Span<byte> bytes, int root)
    {
        if (rank == root) shared.Bytes = bytes.ToArray();
        shared.Barrier.SignalAndWait();
        if (rank != root) shared.Bytes.CopyTo(bytes);
        shared.Barrier.SignalAndWait();
    }

    public void Barrier() => shared.Barrier.SignalAndWait();

    public void Abort(string message, int exitCode) => throw new InvalidOperationException($"abort {exitCode}: {message}");
}
