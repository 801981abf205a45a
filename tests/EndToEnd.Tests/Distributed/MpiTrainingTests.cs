using Microsoft.ML;
using MlNetGuide.Estimators;
using MlNetGuide.Tests.Shared;
using MlNetGuide.Training;

namespace MlNetGuide.EndToEnd.Tests.Distributed;

/// <summary>
/// Data-parallel training across processes, as real 2-rank Open MPI jobs on loopback (over shared memory and over
/// TCP, the path between machines): the Trainer and the estimator end with bit-identical weights on every rank, equal
/// to one process on the same global batches; rank 0's zip scores identically after a plain Model.Load; a rank that
/// dies or throws ends the job on every rank without a partial file; ranks started differently are refused.
/// </summary>
public sealed class MpiTrainingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-mpi-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string> Transports => new() { "shared memory", "tcp" };

    private static string[] Transport(string name) => name == "tcp" ? MpiRun.Transports[1] : MpiRun.Transports[0];

    [MpiTheory]
    [MemberData(nameof(Transports))]
    public void TrainerRanksEndBitIdenticalAndEqualToOneProcessOnTheSameGlobalBatches(string transport)
    {
        var (code, output) = MpiRun.Probe(2, Transport(transport), "mpi-trainer", _dir);
        Assert.True(code == 0, $"mpirun exited {code}:\n{output}");
        var rank0 = File.ReadAllLines(Path.Combine(_dir, "rank0.txt"));
        var rank1 = File.ReadAllLines(Path.Combine(_dir, "rank1.txt"));
        Assert.Equal(rank0, rank1); // every weight's bits, and every epoch's reduced metrics

        // One process on the same global batches (20 rows a step, the last 12): the same weights up to float rounding.
        var (single, _) = DistributedScenario.Train(Collectives.SingleProcess);
        var ranks = DistributedScenario.ReadWeights(rank0);
        Assert.Equal(single.Keys.Order(), ranks.Keys.Order());
        foreach (var (name, expected) in single)
        {
            double scale = expected.Max(v => Math.Abs(v));
            double worst = expected.Zip(ranks[name], (a, b) => Math.Abs(a - b)).Max();
            Assert.True(worst <= 1e-5 * scale, $"{name}: ranks differ from one process by {worst:G3} (largest weight {scale:G3})");
        }
        // Rank 1 initialized from another seed: only rank 0's broadcast makes them start alike. Check the run trained at all.
        Assert.NotEqual(0, single["2.weight"].Sum(Math.Abs));
    }

    [MpichFact]
    public void OnMpichTooTheRanksEndBitIdenticalAndEqualToOneProcess()
    {
        // MPICH's ABI (integer handles; also Intel MPI's and MS-MPI's), found through PMI_SIZE and libmpich.so.12.
        var (code, output) = MpiRun.MpichProbe(2, "mpi-trainer", _dir);
        Assert.True(code == 0, $"mpirun.mpich exited {code}:\n{output}");
        Assert.Contains("MPICH ABI rank 1 of 2", output);
        var rank0 = File.ReadAllLines(Path.Combine(_dir, "rank0.txt"));
        Assert.Equal(rank0, File.ReadAllLines(Path.Combine(_dir, "rank1.txt")));
        var (single, _) = DistributedScenario.Train(Collectives.SingleProcess);
        var ranks = DistributedScenario.ReadWeights(rank0);
        foreach (var (name, expected) in single)
            Assert.True(expected.Zip(ranks[name], (a, b) => Math.Abs(a - b)).Max() <= 1e-5 * expected.Max(v => Math.Abs(v)), $"{name} differs from one process");
    }

    [MpichFact]
    public void AnMpiLibraryThatIsNotTheLaunchersIsRefusedNamingBoth()
    {
        // Under MPICH's launcher, Open MPI's library would start each rank as a job of one: refused instead.
        var (code, output) = MpiRun.MpichProbe(2, "mpi-trainer-with-library", _dir, "libmpi.so.40");
        Assert.NotEqual(0, code);
        Assert.Contains("The launcher started 2 ranks (PMI_SIZE=2) but libmpi.so.40 (Open MPI) sees 1", output);
        Assert.Empty(Directory.GetFiles(_dir, "rank*.txt"));
    }

    [MpiTheory]
    [MemberData(nameof(Transports))]
    public void EstimatorRanksEndWithOneModelAndRankZerosZipScoresIdenticallyAfterAPlainLoad(string transport)
    {
        var (code, output) = MpiRun.Probe(2, Transport(transport), "mpi-estimator", _dir, "plain");
        Assert.True(code == 0, $"mpirun exited {code}:\n{output}");
        var rank0 = File.ReadAllLines(Path.Combine(_dir, "rank0.txt"));
        var rank1 = File.ReadAllLines(Path.Combine(_dir, "rank1.txt"));
        Assert.Equal(rank0, rank1); // weights digest, every test score's bits, every epoch's metrics

        // Rank 0's zip, loaded plainly (ML.NET and ONNX Runtime, no MlNetGuide types), scores the 300 test rows alike.
        var ml = new MLContext(seed: 1);
        var model = ml.Model.Load(Path.Combine(_dir, "model.zip"), out _);
        var (pixels, labels) = RepoData.Digits(1500);
        var test = ml.Data.LoadFromEnumerable(Enumerable.Range(1200, 300).Select(i => new Digit { Label = labels[i], Pixels = pixels.AsSpan(i * 784, 784).ToArray() }));
        var plain = ml.Data.CreateEnumerable<Scored>(model.Transform(test), reuseRowObject: false).Select(s => s.Score).ToList();
        var ranked = Scores(rank0);
        Assert.Equal(300, ranked.Count);
        for (int i = 0; i < 300; i++)
        {
            Assert.Equal(Array.IndexOf(ranked[i], ranked[i].Max()), Array.IndexOf(plain[i], plain[i].Max()));
            for (int k = 0; k < 10; k++) Assert.True(Math.Abs(ranked[i][k] - plain[i][k]) <= 1e-5 + 1e-4 * Math.Abs(ranked[i][k]), $"row {i} class {k}: {ranked[i][k]} vs {plain[i][k]}");
        }
        // The accuracy band of one process trained on all 1,200 rows with the same options (the probe without mpirun).
        var alone = Path.Combine(_dir, "alone");
        Directory.CreateDirectory(alone);
        ChildProcess.RunProbe("mpi-estimator", alone, "plain");
        var single = Scores(File.ReadAllLines(Path.Combine(alone, "rank0.txt")));
        double Accuracy(List<float[]> scores) => Enumerable.Range(0, 300).Count(i => Array.IndexOf(scores[i], scores[i].Max()) == labels[1200 + i]) / 300.0;
        var (two, one) = (Accuracy(ranked), Accuracy(single));
        Assert.True(one >= 0.8, $"one process reached only {one:P1}: the scenario does not train");
        Assert.True(two >= one - 0.03, $"2 ranks reached {two:P1} on the test rows, one process {one:P1}");
        (model as IDisposable)?.Dispose();
    }

    [MpiFact]
    public void ARankKilledMidEpochEndsTheJobOnEveryRankWithoutAPartialCheckpoint()
    {
        // Rank 1 SIGKILLs itself before batch 17 (epoch 2, step 6), after epoch 1's checkpoint was written.
        var (code, output) = MpiRun.Probe(2, MpiRun.Transports[0], "mpi-trainer", _dir, "17");
        Assert.NotEqual(0, code);
        Assert.False(File.Exists(Path.Combine(_dir, "rank0.txt")), $"rank 0 finished training without rank 1:\n{output}");
        Assert.False(File.Exists(Path.Combine(_dir, "rank1.txt")));
        var files = Directory.GetFiles(_dir).Select(Path.GetFileName).ToList();
        Assert.Equal(["checkpoint.bin"], files); // epoch 1's; no temporary file beside it
        // Complete: one process resumes from it (12 steps an epoch there too) and trains epochs 2 and 3.
        var (_, resumed) = DistributedScenario.Train(Collectives.SingleProcess, resumeFrom: Path.Combine(_dir, "checkpoint.bin"));
        Assert.Equal([1, 2, 3], resumed.Epochs.Select(e => e.Epoch));
    }

    [MpiFact]
    public void ARankThatThrowsEndsTheJobNamingItsRankAndItsErrorAndNoZipIsWritten()
    {
        var (code, output) = MpiRun.Probe(2, MpiRun.Transports[0], "mpi-estimator", _dir, "bad-row");
        Assert.NotEqual(0, code);
        Assert.Contains("rank 1 of 2 failed, ending the job on every rank", output);
        Assert.Contains("NaN or infinity", output);
        Assert.Empty(Directory.GetFiles(_dir));
    }

    [MpiFact]
    public void RanksStartedWithDifferentOptionsAreRefusedOnEveryRankNamingTheDifference()
    {
        var (code, output) = MpiRun.Probe(2, MpiRun.Transports[0], "mpi-estimator", _dir, "mismatch");
        Assert.NotEqual(0, code);
        // Each rank caught the same RankMismatchException (the probe writes its message, then waits for the other).
        const string message = "The ranks of this job disagree on the estimator's data and options: rank 1 has BatchSize = 64 where rank 0 has BatchSize = 128.";
        foreach (int rank in new[] { 0, 1 })
            Assert.StartsWith(message, File.ReadAllText(Path.Combine(_dir, $"rank{rank}-refused.txt")));
        Assert.Equal(2, Directory.GetFiles(_dir).Length); // nothing trained, nothing saved
    }

    [MpiFact]
    public void TheDigitsJobOnTwoRanksPassesItsOwnChecksAndWritesOneZipThatLoadsPlainly()
    {
        // The README's command: the job fails (exit 1) below 94 % held-out accuracy, without beating LbfgsMaximumEntropy,
        // or when the reloaded zip predicts differently; rank 0 alone prints the table and writes.
        var (code, output) = MpiRun.App(2, MpiRun.Transports[0], "Digits.dll", "--distributed", "--output", _dir);
        Assert.True(code == 0, $"the distributed Digits job exited {code}:\n{output}");
        Assert.Contains("Training data parallel on 2 MPI ranks", output);
        Assert.Single(output.Split('\n'), l => l.Contains("Reloaded model identical: True", StringComparison.Ordinal)); // one rank reports
        using var metrics = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, "metrics.json")));
        Assert.True(metrics.RootElement.GetProperty("accuracy").GetDouble() >= 0.94);
        var ml = new MLContext();
        var model = ml.Model.Load(Path.Combine(_dir, "digits-model.zip"), out var schema);
        Assert.Contains(schema, c => c.Name == "Pixels");
        (model as IDisposable)?.Dispose();
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp", SearchOption.AllDirectories));
    }

    [Fact]
    public void AProcessAnMpiLauncherStartedWithoutAnMpiLibrarySaysWhatToInstall()
    {
        var output = ChildProcess.RunProbeWithExitCode(new Dictionary<string, string>
        {
            ["OMPI_COMM_WORLD_SIZE"] = "2",
            ["MLNETGUIDE_MPI_LIBRARY"] = Path.Combine(Path.GetTempPath(), "no-such-libmpi.so.40"),
        }, "mpi-trainer", _dir);
        Assert.NotEqual(0, output.ExitCode);
        Assert.Contains("Distributed training needs an MPI library and none loaded (OMPI_COMM_WORLD_SIZE=2)", output.Stderr);
        Assert.Contains("apt-get install openmpi-bin", output.Stderr);
    }

    private static List<float[]> Scores(IEnumerable<string> lines) => lines.Where(l => l.StartsWith("score ", StringComparison.Ordinal))
        .Select(l => l[6..].Split(',').Select(h => BitConverter.Int32BitsToSingle(Convert.ToInt32(h, 16))).ToArray()).ToList();

    private sealed class Digit
    {
        public long Label { get; set; }

        [Microsoft.ML.Data.VectorType(784)]
        public float[] Pixels { get; set; } = [];
    }

    private sealed class Scored
    {
        public float[] Score { get; set; } = [];
    }
}
