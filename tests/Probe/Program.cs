using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Estimators;
using MlNetGuide.Modules;
using MlNetGuide.Tests.Shared;
using TorchSharp;
using static TorchSharp.torch;

// Usage:
//   probe mlp-forward <state-dict-path>   build MLP(32, 3, inputs: 8), load the file, print forward(X) for a fixed X
//   probe slow-save <path> <megabytes>    save a large tensor dictionary atomically (a test kills it midway)
//   probe gc-stress <steps> <sgd|adam|torch-sgd|torch-adam>
//                                         train through the Trainer while another thread forces GCs non-stop
//   probe checkpoint-train <path> <pauseAt>   6 epochs with a checkpoint after each; after printing "epoch <pauseAt>"
//                                         it waits for a line on stdin (a test kills it there); 0: never pauses
//   probe checkpoint-resume <path>        resumes from the checkpoint and trains to epoch 6
//                                         both print "weights <digest>" at the end
//   probe load-untrusted <model|tensors|state-dict> <path>
//                                         load a (crafted) file; print "loaded" or "refused <type>: <message>",
//                                         then "vmhwm <kB>" (the process's peak resident memory)
//   probe save-loop <count>               train a small multiclass network, then mlContext.Model.Save it <count> times;
//                                         prints "save <i> fds <open files> temp <files in the temp folder> rss <kB>"
//                                         before the first save, after saves 1 and 100, the middle one and the last
//   probe sparse-fit <rows>               train an MLP on <rows> rows of a 1,000,000-wide column holding 1,000 non-zeros a
//                                         row (0.1 %), score them; prints "accuracy <a>" and "vmhwm <kB>"
//   probe mpi-trainer <dir> [<kill-rank-1-at-batch>]
//                                         run under mpirun (or alone): DistributedScenario with a checkpoint in <dir>;
//                                         each rank writes <dir>/rank<r>.txt (weights as bits, history); rank 1 kills
//                                         itself (SIGKILL) before the given batch
//   probe mpi-estimator <dir> <plain|mismatch|bad-row>
//                                         run under mpirun (or alone): a digits MLP through the estimator; rank 0
//                                         saves <dir>/model.zip; each rank writes <dir>/rank<r>.txt (weights digest,
//                                         test scores as bits). mismatch: rank 1 asks for another batch size;
//                                         bad-row: rank 1's copy of the data has NaNs
return args switch
{
    ["gc-stress", var steps, var optimizer] => GcStress(int.Parse(steps, CultureInfo.InvariantCulture), optimizer),
    ["train-digest", var seed] => TrainDigest(int.Parse(seed, CultureInfo.InvariantCulture)),
    ["mlp-forward", var path] => MlpForward(path),
    ["load-untrusted", var kind, var path] => LoadUntrusted(kind, path),
    ["checkpoint-train", var path, var pauseAt] => CheckpointTrain(path, int.Parse(pauseAt, CultureInfo.InvariantCulture), resume: false),
    ["checkpoint-resume", var path] => CheckpointTrain(path, 0, resume: true),
    ["save-loop", var count] => SaveLoop(int.Parse(count, CultureInfo.InvariantCulture)),
    ["mpi-trainer", var dir] => MpiTrainer(dir, -1),
    ["mpi-trainer", var dir, var killAt] => MpiTrainer(dir, int.Parse(killAt, CultureInfo.InvariantCulture)),
    ["mpi-estimator", var dir, var variant] => MpiEstimator(dir, variant),
    ["mpi-trainer-with-library", var dir, var library] => WithEnvironment("MLNETGUIDE_MPI_LIBRARY", library, () => MpiTrainer(dir, -1)),
    ["sparse-fit", var rows] => SparseFit(int.Parse(rows, CultureInfo.InvariantCulture)),
    ["slow-save", var path, var mb] => SlowSave(path, int.Parse(mb, CultureInfo.InvariantCulture)),
    _ => Usage(),
};

static int MlpForward(string path)
{
    using var net = ProbeNets.Mlp();
    StateDict.Load(net, path);
    using var x = ProbeNets.Input();
    using var y = net.call(x);
    Console.WriteLine(string.Join(" ", y.data<float>().ToArray().Select(v => BitConverter.SingleToInt32Bits(v).ToString("x8", CultureInfo.InvariantCulture))));
    return 0;
}

static int LoadUntrusted(string kind, string path)
{
    try
    {
        switch (kind)
        {
            case "model":
                (NeuralModel.Load(new MLContext(), path, out _) as IDisposable)?.Dispose();
                break;
            case "tensors":
                foreach (var t in TensorIO.LoadDict(path).Values) t.Dispose();
                break;
            case "state-dict":
                using (var net = ProbeNets.Mlp()) StateDict.Load(net, path);
                break;
            default:
                return Usage();
        }
        Console.WriteLine("loaded");
    }
    catch (Exception ex)
    {
        Console.WriteLine($"refused {ex.GetType().Name}: {ex.Message.ReplaceLineEndings(" ")}");
    }
    var hwm = File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
    Console.WriteLine($"vmhwm {hwm.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1]}");
    return 0;
}

// Momentum SGD, a step schedule, dropout (the global generator) and a shuffled data module: every kind of state a
// checkpoint must carry for a resumed run to end with the same weights as one that never stopped.
static int CheckpointTrain(string path, int pauseAt, bool resume)
{
    using var g = new Generator(21);
    using var x = randn(new long[] { 256, 10 }, generator: g);
    using var y = randint(4, new long[] { 256 }, generator: g);
    using var data = MlNetGuide.Training.TensorDataModule.Split(x, y, 0.2, 16, seed: 3);
    manual_seed(5);
    using var model = new MlNetGuide.Training.Classifier(
        torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(32, 4)), lr: 0.1)
    {
        OptimizerFactory = (ps, lr) => new MlNetGuide.Training.Sgd(ps, lr, momentum: 0.9),
        SchedulerFactory = (opt, steps) => torch.optim.lr_scheduler.StepLR(opt, step_size: steps / 3, gamma: 0.5),
    };
    model.Net.ApplyInit(new InitScheme(Initializer.XavierUniform(), Initializer.Zeros, Seed: 8));
    using var trainer = new MlNetGuide.Training.Trainer(6) { CheckpointPath = path };
    trainer.EpochCompleted += m =>
    {
        Console.WriteLine($"epoch {m.Epoch}");
        Console.Out.Flush();
        if (m.Epoch == pauseAt) Console.ReadLine(); // the test kills the process here, after checkpoint {pauseAt - 1}
    };
    var history = resume ? trainer.Fit(model, data, path) : trainer.Fit(model, data);
    using var stream = new MemoryStream();
    StateDict.Save(model, stream);
    Console.WriteLine($"weights {Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(stream.ToArray()))[..16]} epochs {history.Epochs.Count}");
    return 0;
}

// .NET keeps its own copy of the environment; what the probe sets here is what MlNetGuide reads.
static int WithEnvironment(string name, string value, Func<int> run)
{
    Environment.SetEnvironmentVariable(name, value);
    return run();
}

static int MpiTrainer(string dir, int killAt)
{
    var ranks = MlNetGuide.Training.Collectives.For(MlNetGuide.Training.Distribution.Auto);
    var (weights, history) = MlNetGuide.Tests.Shared.DistributedScenario.Train(ranks, Path.Combine(dir, "checkpoint.bin"), trainer =>
    {
        if (ranks.Rank == 1 && trainer.TrainBatchIdx == killAt) System.Diagnostics.Process.GetCurrentProcess().Kill(); // SIGKILL: no finalizer, no MPI_Finalize
    });
    File.WriteAllLines(Path.Combine(dir, $"rank{ranks.Rank}.txt"), MlNetGuide.Tests.Shared.DistributedScenario.Lines(weights, history));
    Console.WriteLine($"rank {ranks.Rank} of {ranks.Size}: {ranks}");
    return 0;
}

static int MpiEstimator(string dir, string variant)
{
    int rank = DistributedTraining.Rank;
    var (pixels, labels) = MlNetGuide.Tests.Shared.RepoData.Digits(1500);
    if (variant == "bad-row" && rank == 1)
        for (int i = 0; i < 200; i++) pixels[i * 784 + 400] = float.NaN; // rows only this rank's copy has bad
    var rows = Enumerable.Range(0, labels.Length).Select(i => new ProbeDigit { Label = labels[i], Pixels = pixels.AsSpan(i * 784, 784).ToArray() }).ToList();
    var ml = new MLContext(seed: 1);
    var train = ml.Data.LoadFromEnumerable(rows.Take(1200));
    var test = ml.Data.LoadFromEnumerable(rows.Skip(1200));
    var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", keyOrdinality: Microsoft.ML.Transforms.ValueToKeyMappingEstimator.KeyOrdinality.ByValue) // key k is digit k
        .Append(ml.Transforms.CopyColumns("Features", nameof(ProbeDigit.Pixels)))
        .Append(ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions
        {
            Architecture = NetworkArchitecture.Mlp(64),
            Epochs = 4,
            BatchSize = variant == "mismatch" && rank == 1 ? 64 : 128,
            Optimizer = OptimizerKind.Adam,
            LearningRate = 0.003,
            ValidationFraction = 0.1,
        }));
    TransformerChain<NeuralNetworkTransformer> model;
    try
    {
        model = pipeline.Fit(train);
    }
    catch (MlNetGuide.Training.RankMismatchException e)
    {
        // Raised on every rank alike: each records it, and none exits before the other has (the launcher would kill it).
        File.WriteAllText(Path.Combine(dir, $"rank{rank}-refused.txt"), e.Message);
        MlNetGuide.Training.Collectives.For(MlNetGuide.Training.Distribution.Auto).Barrier();
        return 4;
    }
    ml.Model.SaveOnRankZero(model, train.Schema, Path.Combine(dir, "model.zip"));
    var net = model.LastTransformer;
    var scores = ml.Data.CreateEnumerable<ProbeScore>(model.Transform(test), reuseRowObject: false).ToList();
    var lines = new List<string> { $"digest {net.WeightsDigest()}" };
    lines.AddRange(scores.Select(s => "score " + string.Join(",", s.Score.Select(v => BitConverter.SingleToInt32Bits(v).ToString("x8", CultureInfo.InvariantCulture)))));
    lines.AddRange(net.History!.Epochs.Select(e => $"epoch {e.Epoch} " + string.Join(" ", e.Values.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value:R}"))));
    File.WriteAllLines(Path.Combine(dir, $"rank{rank}.txt"), lines);
    Console.WriteLine($"rank {rank} of {DistributedTraining.Size} done");
    return 0;
}

static int SparseFit(int n)
{
    const int width = 1_000_000;
    var ml = new MLContext(seed: 1);
    var data = WideRows.View(ml, WideRows.Generate(n, width, nonZeros: 1000), width);
    using var model = ml.BinaryClassification.Trainers.NeuralNetwork(new BinaryNeuralNetworkOptions
    {
        Architecture = NetworkArchitecture.Mlp(8), Epochs = 2, BatchSize = 256, Optimizer = OptimizerKind.Adam, LearningRate = 0.01, Seed = 1, // a dense batch: 1,000 MB
    }).Fit(data);
    var accuracy = ml.BinaryClassification.Evaluate(model.Transform(data)).Accuracy;
    Console.WriteLine($"accuracy {accuracy.ToString("F4", CultureInfo.InvariantCulture)}");
    var hwm = File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
    Console.WriteLine($"vmhwm {hwm.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1]}");
    return 0;
}

static int SlowSave(string path, int megabytes)
{
    var dict = new Dictionary<string, Tensor>();
    for (int i = 0; i < megabytes; i++) dict[$"t{i}"] = full(262144, (float)i); // 1 MiB each
    Console.WriteLine("saving");
    Console.Out.Flush();
    TensorIO.SaveDict(dict, path);
    Console.WriteLine("saved");
    return 0;
}

// TorchSharp's implicit Scalars can be finalized during native calls (see MlNetGuide.Modules.Scalars); forcing GCs
// from another thread makes that show within a few thousand steps. Exit code 0 means every step ran.
static int GcStress(int steps, string optimizer)
{
    var stop = false;
    var hammer = new Thread(() => { while (!Volatile.Read(ref stop)) { GC.Collect(); GC.WaitForPendingFinalizers(); } }) { IsBackground = true };
    hammer.Start();
    using var g = new Generator(1);
    using var x = randn(new long[] { 640, 20 }, generator: g);
    using var y = randint(10, new long[] { 640 }, generator: g);
    using var data = MlNetGuide.Training.TensorDataModule.Split(x, y, 0.1, 32, seed: 1);
    using var model = new MlNetGuide.Training.Classifier(
        torch.nn.Sequential(new MyLinear(20, 32, g), new CenteredLayer(), torch.nn.Linear(32, 10)), lr: 0.01);
    model.OptimizerFactory = optimizer switch
    {
        "sgd" => null, // the default: MlNetGuide's GC-safe Sgd
        "adam" => (ps, lr) => new MlNetGuide.Training.Adam(ps, lr),
        // Negative controls: TorchSharp 0.107's own optimizers, which finalize implicit Scalars mid-call under this load.
        "torch-sgd" => (ps, lr) => torch.optim.SGD(ps, lr),
        "torch-adam" => (ps, lr) => torch.optim.Adam(ps, lr),
        _ => throw new ArgumentException($"unknown optimizer '{optimizer}'"),
    };
    int epochs = Math.Max(1, steps / 18);
    using var trainer = new MlNetGuide.Training.Trainer(epochs, gradientClipVal: 1.0);
    trainer.Fit(model, data);
    Volatile.Write(ref stop, true);
    Console.WriteLine($"survived {trainer.TrainBatchIdx} steps");
    return 0;
}

// Trains the multiclass estimator on fixed synthetic data with MLContext(seed) and prints SHA-256 digests of the
// trained weights and of every prediction: two processes with the same seed must print the same line.
static int TrainDigest(int seed)
{
    var ml = new MLContext(seed: seed);
    var raw = ml.Data.LoadFromEnumerable(DigestRows());
    var data = ml.Transforms.Conversion.MapValueToKey("Label", nameof(DigestRow.Kind)).Fit(raw).Transform(raw);
    using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(architecture: NetworkArchitecture.Mlp(16), epochs: 5, batchSize: 32).Fit(data);
    var scores = model.Transform(data).GetColumn<float[]>("Score").SelectMany(v => v).ToArray();
    var path = Path.Combine(Path.GetTempPath(), $"probe-digest-{Environment.ProcessId}.zip");
    NeuralModel.Save(ml, model, data.Schema, path);
    var loaded = NeuralModel.Load(new MLContext(), path, out _);
    File.Delete(path);
    var reloaded = loaded.Transform(data).GetColumn<float[]>("Score").SelectMany(v => v).ToArray();
    static string Hash(float[] v) => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(v.AsSpan())))[..16];
    Console.WriteLine($"weights {model.WeightsDigest()} predictions {Hash(scores)} reloaded {Hash(reloaded)}");
    return 0;
}

static int SaveLoop(int count)
{
    var ml = new MLContext(seed: 1);
    var raw = ml.Data.LoadFromEnumerable(DigestRows());
    var data = ml.Transforms.Conversion.MapValueToKey("Label", nameof(DigestRow.Kind)).Fit(raw).Transform(raw);
    using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(architecture: NetworkArchitecture.Mlp(16), epochs: 1, batchSize: 32).Fit(data);
    for (int i = 0; i <= count; i++)
    {
        if (i > 0)
            using (var stream = new MemoryStream()) ml.Model.Save(model, data.Schema, stream);
        if (i is not (0 or 1 or 100) && i != count / 2 && i != count) continue;
        for (int k = 0; k < 2; k++) { GC.Collect(); GC.WaitForPendingFinalizers(); }
        var rss = File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal)).Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1];
        Console.WriteLine($"save {i} fds {Directory.GetFiles("/proc/self/fd").Length} temp {Directory.GetFileSystemEntries(Path.GetTempPath()).Length} rss {rss}");
    }
    return 0;
}

static List<DigestRow> DigestRows()
{
    var rng = new Random(5);
    return Enumerable.Range(0, 400).Select(_ =>
    {
        var f = new[] { (float)rng.NextDouble(), (float)rng.NextDouble(), (float)rng.NextDouble() };
        return new DigestRow { Features = f, Kind = f[0] > f[1] ? "a" : "b" };
    }).ToList();
}

static int Usage()
{
    Console.Error.WriteLine("usage: probe mlp-forward <path> | slow-save <path> <megabytes> | gc-stress <steps> <sgd|adam> | train-digest <seed>");
    return 2;
}

public sealed class DigestRow
{
    [Microsoft.ML.Data.VectorType(3)] public float[] Features { get; set; } = [];
    public string Kind { get; set; } = "";
}

/// <summary>The architecture and input both processes agree on.</summary>
public static class ProbeNets
{
    public static MLP Mlp() => new(hiddenUnits: 32, outputs: 3, inputs: 8);

    public static Tensor Input()
    {
        using var g = new Generator(123);
        return rand(new long[] { 4, 8 }, generator: g);
    }
}

sealed class ProbeDigit
{
    public long Label { get; set; }

    [Microsoft.ML.Data.VectorType(784)]
    public float[] Pixels { get; set; } = [];
}

sealed class ProbeScore
{
    public float[] Score { get; set; } = [];
}
