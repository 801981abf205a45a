// The benchmark command: dotnet run -c Release --project tests/Benchmarks [-- --quick] [--output docs] [--pytorch-only | --step-profile | --contention | --distributed | --text | --sparse]
// Measures, side by side in one process and one run, and writes docs/benchmarks.md, docs/benchmarks.json and plots.
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Benchmarks;
using MlNetGuide.Estimators;
using MlNetGuide.Samples.Digits;
using MlNetGuide.Training;
using OxyPlot;
using OxyPlot.Axes;
using OxyPlot.Series;
using TorchSharp;
using static TorchSharp.torch;

if (args is ["--mpi-worker", .. var worker]) return Distributed.Worker(worker); // a rank of the --distributed figures
if (args is ["--sparse-worker", .. var side]) return Sparse.Worker(side); // one side of the --sparse figures
if (args.Contains("--sparse")) // issue #26: sparse input against the dense path (Sparse.cs); printed, nothing written
{
    Sparse.RunAll(Console.WriteLine, args.Contains("--quick"));
    return 0;
}
bool quick = args.Contains("--quick");
bool pytorchOnly = args.Contains("--pytorch-only"); // just "PyTorch as the peer": markdown and one JSON line printed; nothing written
Harness.Repetitions = quick ? 5 : 7;
string output = args.SkipWhile(a => a != "--output").Skip(1).FirstOrDefault() ?? "docs";
Directory.CreateDirectory(Path.Combine(output, "images"));
var inv = CultureInfo.InvariantCulture;
var results = new Dictionary<string, object>();
// The estimator rows measure overhead, so they train with the hand loop's thread count (libtorch's default here);
// the row "default NumberOfThreads" shows what the estimator's own default (one thread) costs on a quiet machine.
int torchThreads = get_num_threads();
void Log(string s) => Console.WriteLine(s);

// ---------------------------------------------------------------- environment
string cpu = File.Exists("/proc/cpuinfo") ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':')[1].Trim() ?? "?" : RuntimeInformation.ProcessArchitecture.ToString();
var env = new Dictionary<string, object>
{
    ["date"] = DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", inv),
    ["cpu"] = cpu,
    ["logical_cores"] = Environment.ProcessorCount,
    ["torch_threads"] = get_num_threads(),
    ["os"] = RuntimeInformation.OSDescription,
    ["dotnet"] = RuntimeInformation.FrameworkDescription,
    ["torchsharp"] = PackageVersion(typeof(torch).Assembly),
    ["microsoft_ml"] = PackageVersion(typeof(MLContext).Assembly),
    ["repetitions"] = Harness.Repetitions,
};
results["environment"] = env;
Log($"Machine: {cpu}, {Environment.ProcessorCount} logical cores, torch threads {get_num_threads()}");

// ---------------------------------------------------------------- data: 8,000 training and 2,000 test digits
var digits = DigitsData.Read(DigitsData.DefaultPath());
int nTrain = 8000, nTest = digits.Count - nTrain;
float[] Flat(IEnumerable<Digit> ds) => ds.SelectMany(d => d.Pixels.Select(p => p / 255f)).ToArray();
using var xTrain = tensor(Flat(digits.Take(nTrain)), new long[] { nTrain, 784 });
using var yTrain = tensor(digits.Take(nTrain).Select(d => (long)d.Label).ToArray());
using var xTest = tensor(Flat(digits.Skip(nTrain)), new long[] { nTest, 784 });
var ml = new MLContext(seed: 1);
IDataView View(IEnumerable<Digit> ds) => ml.Data.LoadFromEnumerable(ds.Select(d => new BenchRow { Features = d.Pixels.Select(p => p / 255f).ToArray(), Label = d.Label }));
var trainView = ml.Data.Cache(ml.Transforms.Conversion.MapValueToKey("Label").Fit(View(digits.Take(nTrain))).Transform(View(digits.Take(nTrain))));
var testView = ml.Data.Cache(ml.Transforms.Conversion.MapValueToKey("Label").Fit(View(digits.Take(nTrain))).Transform(View(digits.Skip(nTrain))));
_ = trainView.GetColumn<float[]>("Features").Count();
_ = testView.GetColumn<float[]>("Features").Count();

nn.Module<Tensor, Tensor> Mlp(long hidden = 256) => nn.Sequential(nn.Linear(784, hidden), nn.ReLU(inplace: true), nn.Linear(hidden, 10));

// ---------------------------------------------------------------- PyTorch as the peer (see PyTorchPeer.cs)
// Our side runs the training-overhead closures below at each batch size. Short enough for ~4 minutes on 2 quiet cores.
int peerEpochs = quick ? 1 : 3, peerRounds = quick ? 3 : 11;
PyTorchPeer.Report ComparePyTorch()
{
    Log($"PyTorch as the peer: 784-256-10 at batch sizes {string.Join(", ", PyTorchPeer.BatchSizes)}, {peerEpochs} epoch(s) per run, {peerRounds} interleaved rounds");
    return PyTorchPeer.Compare(xTrain, yTrain, HandLoop, TrainerFit, (b, ep) => EstimatorFit(1024, b, ep), peerEpochs, peerRounds, Log);
}
if (pytorchOnly)
{
    var peerOnly = ComparePyTorch();
    Log(peerOnly.Markdown());
    Console.WriteLine(JsonSerializer.Serialize(peerOnly.Json)); // one JSON line: what benchmarks.json's pytorch_peer would hold
    return 0;
}
if (args.Contains("--contention")) // issue #24: fits beside CPU-bound neighbours (Contention.cs); printed, nothing written
{
    Contention.RunAll(Log);
    return 0;
}
if (args.Contains("--text")) // issue #26: token batches' padding, BiLSTM and Transformer against PyTorch (TextPeer.cs); printed, nothing written
{
    TextPeer.RunAll(Log, quick);
    return 0;
}
if (args.Contains("--distributed")) // issue #25: MPI figures (Distributed.cs); printed, nothing written
{
    Distributed.RunAll(Log, quick);
    return 0;
}
if (args.Contains("--step-profile")) // issue #19: where a batch-32 step goes (StepProfile.cs); printed, nothing written
{
    StepProfile.Run(xTrain, yTrain, Log, wholeStepsOnly: args.Contains("--whole-steps"));
    return 0;
}

// ---------------------------------------------------------------- the scoring model and its paths (used by the scoring sections)
using var scoringModel = ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions
{
    Architecture = NetworkArchitecture.Mlp(256), Epochs = 2, BatchSize = 128, LearningRate = 0.1, ScoringBatchSize = 512,
}).Fit(trainView);
using var rawNet = Mlp();
rawNet.eval();
const int scoringPasses = 5; // 10,000 rows per timed run
void RawForward()
{
    for (int pass = 0; pass < scoringPasses; pass++)
    for (int s = 0; s < nTest; s += 512)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var probs = nn.functional.softmax(rawNet.call(xTest[TensorIndex.Slice(s, Math.Min(nTest, s + 512))]), 1);
        _ = probs.data<float>().ToArray();
    }
}
void TransformCursor()
{
    // A cursor with one reused buffer: what a consumer that cares about speed writes.
    for (int pass = 0; pass < scoringPasses; pass++) CursorOver(scoringModel);
}
using var uncached = new UncachedUpstream(ml, digits.Skip(nTrain).ToList());
// --scoring-only: just the scoring paths, for comparing builds in separate processes (one JSON line).
if (args.Contains("--scoring-only"))
{
    var quickScoring = Harness.Interleaved(TimeSpan.FromSeconds(3), 3 * Harness.Repetitions, ("raw batched forward", RawForward), ("Transform + cursor", TransformCursor));
    var quickUncached = Harness.Interleaved(TimeSpan.FromSeconds(2), 3 * Harness.Repetitions, ("upstream alone", uncached.ReadUpstream), ("Transform over it", () => uncached.ReadScored(scoringModel)));
    Console.WriteLine(JsonSerializer.Serialize(new
    {
        transform_fraction_of_raw = 1 / Harness.PairedRatio(quickScoring, "Transform + cursor", "raw batched forward"),
        transform_rows_per_second = scoringPasses * nTest / Harness.Median(quickScoring["Transform + cursor"]),
        uncached_upstream_rows_per_second = nTest / Harness.Median(quickUncached["upstream alone"]),
        uncached_transform_rows_per_second = nTest / Harness.Median(quickUncached["Transform over it"]),
        uncached_transform_over_upstream_time = Harness.PairedRatio(quickUncached, "Transform over it", "upstream alone"),
    }));
    return 0;
}

// ---------------------------------------------------------------- hardware
Log("Hardware: sgemm 1024^3 and a 784-1024-1024-10 training step (batch 1024)");
// The machine is shared and noisy: sgemm and the training step are measured in alternation, and the fraction is the
// median of the per-pair ratios.
double sgemmGflops, stepGflops, stepSeconds, stepFlops, fraction;
long bigP = 784L * 1024 + 1024L * 1024 + 1024L * 10;
{
    const int B = 1024;
    using var a = randn(1024, 1024);
    using var b = randn(1024, 1024);
    using var net = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(inplace: true), nn.Linear(1024, 1024), nn.ReLU(inplace: true), nn.Linear(1024, 10));
    using var x = rand(B, 784);
    using var y = randint(10, new long[] { B });
    using var opt = new Sgd(net.parameters(), 0.01);
    // forward 2PB, backward 4PB minus the first layer's input gradient (2 * 784 * 1024 * B)
    stepFlops = 6.0 * bigP * B - 2.0 * 784 * 1024 * B;
    void Sgemm() { for (int i = 0; i < 4; i++) { using var c = a.matmul(b); } }
    void Step()
    {
        using var scope = NewDisposeScope();
        var loss = nn.functional.cross_entropy(net.call(x), y);
        opt.zero_grad();
        loss.backward();
        opt.step();
    }
    var pairs = Harness.Interleaved(5, ("sgemm x4", Sgemm), ("step", Step));
    var gemm = pairs["sgemm x4"].Select(t => 4 * 2.0 * 1024 * 1024 * 1024 / t / 1e9).ToList();
    var steps = pairs["step"].Select(t => stepFlops / t / 1e9).ToList();
    sgemmGflops = Harness.Median(gemm);
    stepSeconds = Harness.Median(pairs["step"]);
    stepGflops = stepFlops / stepSeconds / 1e9;
    fraction = Harness.Median(gemm.Zip(steps, (g, s) => s / g));
}
results["hardware"] = new { sgemm_gflops = sgemmGflops, mlp_step_seconds = stepSeconds, mlp_step_flops = stepFlops, mlp_step_gflops = stepGflops, fraction_of_sgemm = fraction };
Log($"  sgemm {sgemmGflops:F1} GFLOP/s; MLP step {stepSeconds * 1000:F1} ms = {stepGflops:F1} GFLOP/s = {fraction:P0} of sgemm (median of paired ratios)");

// ---------------------------------------------------------------- LeNet (D2L 7.6)
// One epoch over the 8,000 digits (batch 64, shuffled), SGD with momentum, as the Digits job trains it. FLOPs per image:
// multiply-adds conv1 6·28·28·25 = 117,600, conv2 16·10·10·150 = 240,000, dense 400·120 + 120·84 + 84·10 = 58,920;
// forward 2·MACs, backward 4·MACs less conv1's input gradient (2 · 117,600), as for the MLP step above.
double lenetEpochSeconds, lenetGflops, lenetFraction;
const double lenetFlopsPerImage = 6.0 * (117_600 + 240_000 + 58_920) - 2.0 * 117_600;
{
    Log("LeNet: one epoch over 8,000 digits, batch 64, SGD momentum 0.9");
    using var net = new MlNetGuide.Modules.LeNet();
    net.LayerSummary(); // materialize the lazy dense layers
    using var opt = new Sgd(net.parameters(), 0.05, momentum: 0.9);
    using var g = new Generator(1);
    void Epoch()
    {
        using var perm = randperm(nTrain, generator: g);
        for (int start = 0; start < nTrain; start += 64)
        {
            using var scope = NewDisposeScope();
            var idx = perm.narrow(0, start, Math.Min(64, nTrain - start));
            var loss = nn.functional.cross_entropy(net.call(xTrain.index_select(0, idx)), yTrain.index_select(0, idx));
            opt.zero_grad();
            loss.backward();
            opt.step();
        }
    }
    var times = Harness.Repeat(1, quick ? 2 : 3, Epoch);
    lenetEpochSeconds = Harness.Median(times);
    lenetGflops = lenetFlopsPerImage * nTrain / lenetEpochSeconds / 1e9;
    lenetFraction = lenetGflops / sgemmGflops;
}
results["lenet"] = new { seconds_per_epoch = lenetEpochSeconds, flops_per_image = lenetFlopsPerImage, gflops = lenetGflops, fraction_of_sgemm = lenetFraction };
Log($"  {lenetEpochSeconds:F2} s per epoch = {lenetGflops:F1} GFLOP/s = {lenetFraction:P0} of sgemm");

// ---------------------------------------------------------------- training overhead
int epochs = quick ? 3 : 10;
const int batch = 256;
int overheadRounds = quick ? Harness.Repetitions : 15; // one run is ±10 % on this machine: many rounds for a tight median
Log($"Training overhead: 784-256-10, {nTrain} digits, batch {batch}, {epochs} epochs per run, {overheadRounds} interleaved rounds");
var prebuilt = new List<(Tensor x, Tensor y)>();
for (int s = 0; s < nTrain; s += batch)
    prebuilt.Add((xTrain[TensorIndex.Slice(s, Math.Min(nTrain, s + batch))].contiguous().DetachFromDisposeScope(), yTrain[TensorIndex.Slice(s, Math.Min(nTrain, s + batch))].contiguous().DetachFromDisposeScope()));
// The reference: what one writes by hand with d2l's DataLoader(shuffle=True): a new permutation each epoch and one
// index_select per batch, then forward, loss, zero_grad, backward, step. Nothing else.
void HandLoop(int batch, int epochs) => StepProfile.HandEpochs(xTrain, yTrain, hidden: 256, batch, epochs);
// A lower bound: the same steps over batches built once, never shuffled.
void HandLoopUnshuffled()
{
    using var net = Mlp();
    using var opt = new Sgd(net.parameters(), 0.1);
    for (int e = 0; e < epochs; e++)
        foreach (var (x, y) in prebuilt)
        {
            using var scope = NewDisposeScope();
            var loss = nn.functional.cross_entropy(net.call(x), y);
            opt.zero_grad();
            loss.backward();
            opt.step();
        }
}
void TrainerFit(int batch, int epochs)
{
    using var model = new Classifier(Mlp(), lr: 0.1);
    using var data = new TensorDataModule([xTrain, yTrain], batch, seed: 1);
    using var trainer = new Trainer(epochs);
    trainer.Fit(model, data);
}
void EstimatorFit(int inMemoryLimitMB, int batch, int epochs) => EstimatorFitWith(inMemoryLimitMB, batch, epochs, validationFraction: 0);
void EstimatorFitWith(int inMemoryLimitMB, int batch, int epochs, double validationFraction, int? threads = -1)
{
    using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions
    {
        Architecture = NetworkArchitecture.Mlp(256), Init = null, Epochs = epochs, BatchSize = batch, LearningRate = 0.1,
        InMemoryLimitMB = inMemoryLimitMB, ValidationFraction = validationFraction, NumberOfThreads = threads == -1 ? torchThreads : threads,
    }).Fit(trainView);
}

var overhead = Harness.Interleaved(1, overheadRounds, ("hand-written loop", () => HandLoop(batch, epochs)), ("Trainer.Fit", () => TrainerFit(batch, epochs)),
    ("estimator Fit (IDataView)", () => EstimatorFit(1024, batch, epochs)), ("estimator Fit, streamed every epoch", () => EstimatorFit(0, batch, epochs)),
    ("estimator Fit, ValidationFraction = 0.1", () => EstimatorFitWith(1024, batch, epochs, 0.1)),
    ("estimator Fit, default NumberOfThreads", () => EstimatorFitWith(1024, batch, epochs, 0, threads: null)),
    ("hand-written, unshuffled pre-built batches", HandLoopUnshuffled));
double hand = Harness.Median(overhead["hand-written loop"]) / epochs;
double trn = Harness.Median(overhead["Trainer.Fit"]) / epochs;
double est = Harness.Median(overhead["estimator Fit (IDataView)"]) / epochs;
double streamed = Harness.Median(overhead["estimator Fit, streamed every epoch"]) / epochs;
double validated = Harness.Median(overhead["estimator Fit, ValidationFraction = 0.1"]) / epochs;
double oneThread = Harness.Median(overhead["estimator Fit, default NumberOfThreads"]) / epochs;
double unshuffled = Harness.Median(overhead["hand-written, unshuffled pre-built batches"]) / epochs;
// Ratios: the median of the per-repetition ratios (each pair ran back to back); ratios of the medians are kept in the JSON too.
double rTrainer = Harness.PairedRatio(overhead, "Trainer.Fit", "hand-written loop");
double rEstimator = Harness.PairedRatio(overhead, "estimator Fit (IDataView)", "hand-written loop");
double rStreamed = Harness.PairedRatio(overhead, "estimator Fit, streamed every epoch", "hand-written loop");
double rValidated = Harness.PairedRatio(overhead, "estimator Fit, ValidationFraction = 0.1", "estimator Fit (IDataView)");
double rOneThread = Harness.PairedRatio(overhead, "estimator Fit, default NumberOfThreads", "estimator Fit (IDataView)");
double rUnshuffled = Harness.PairedRatio(overhead, "hand-written, unshuffled pre-built batches", "hand-written loop");
results["training_overhead"] = new
{
    epochs_per_run = epochs, batch,
    seconds_per_epoch = new { hand_loop = hand, trainer = trn, estimator = est, estimator_streamed = streamed, hand_loop_unshuffled = unshuffled },
    ratio_trainer = rTrainer, ratio_estimator = rEstimator, ratio_estimator_streamed = rStreamed, ratio_hand_loop_unshuffled = rUnshuffled,
    seconds_per_epoch_estimator_validation_fraction_0_1 = validated, ratio_validation_fraction_0_1_to_estimator = rValidated,
    estimator_threads = torchThreads, seconds_per_epoch_estimator_default_threads = oneThread, ratio_default_threads_to_estimator = rOneThread,
    ratio_of_medians = new { trainer = trn / hand, estimator = est / hand, estimator_streamed = streamed / hand },
    raw_seconds = overhead,
};
Log($"  per epoch: hand {hand:F3} s, Trainer {trn:F3} s ({rTrainer:F3}x), estimator {est:F3} s ({rEstimator:F3}x), streamed {streamed:F3} s ({rStreamed:F3}x)");

var pytorchPeer = ComparePyTorch();
results["pytorch_peer"] = pytorchPeer.Json;

// ---------------------------------------------------------------- scoring
Log("Scoring: raw batched forward vs Transform vs PredictionEngine");
// Cold: the first call of each, before any warm-up (the Transform path's managed code still runs unoptimized, tier 0).
double coldRaw = scoringPasses * nTest / Harness.Time(RawForward);
double coldTransform = scoringPasses * nTest / Harness.Time(TransformCursor);
var scoring = Harness.Interleaved(TimeSpan.FromSeconds(3), 3 * Harness.Repetitions, ("raw batched forward", RawForward), ("Transform + cursor", TransformCursor));
double rawRows = scoringPasses * nTest / Harness.Median(scoring["raw batched forward"]);
double transformRows = scoringPasses * nTest / Harness.Median(scoring["Transform + cursor"]);
double transformFraction = 1 / Harness.PairedRatio(scoring, "Transform + cursor", "raw batched forward");
var engine = ml.Model.CreatePredictionEngine<BenchRow, BenchScore>(scoringModel);
var testRows = digits.Skip(nTrain).Select(d => new BenchRow { Features = d.Pixels.Select(p => p / 255f).ToArray() }).ToArray();
for (int i = 0; i < 200; i++) engine.Predict(testRows[i]);
var latencies = new List<double>();
foreach (var row in testRows.Concat(testRows))
{
    var sw = System.Diagnostics.Stopwatch.StartNew();
    engine.Predict(row);
    latencies.Add(sw.Elapsed.TotalMilliseconds);
}
results["scoring"] = new
{
    rows = nTest,
    raw_rows_per_second = rawRows,
    transform_rows_per_second = transformRows,
    transform_fraction_of_raw = transformFraction,
    transform_fraction_of_raw_from_medians = transformRows / rawRows,
    cold_first_call_rows_per_second = new { raw = coldRaw, transform = coldTransform },
    prediction_engine_ms = new { median = Harness.Median(latencies), p99 = Harness.Percentile(latencies, 0.99), calls = latencies.Count },
    raw_seconds = scoring,
};
Log($"  raw {rawRows:N0} rows/s, Transform {transformRows:N0} rows/s ({transformFraction:P0} of raw); PredictionEngine median {Harness.Median(latencies):F3} ms, p99 {Harness.Percentile(latencies, 0.99):F3} ms");
Log("Scoring behind an uncached upstream (CSV file -> NormalizeMinMax -> MapValueToKey), reading Score and Label");
var uncachedTimes = Harness.Interleaved(TimeSpan.FromSeconds(2), Harness.Repetitions, ("upstream alone", uncached.ReadUpstream), ("Transform over it", () => uncached.ReadScored(scoringModel)));
double upstreamRows = nTest / Harness.Median(uncachedTimes["upstream alone"]);
double uncachedRows = nTest / Harness.Median(uncachedTimes["Transform over it"]);
double uncachedRatio = Harness.PairedRatio(uncachedTimes, "Transform over it", "upstream alone");
results["scoring_uncached_upstream"] = new { rows = nTest, upstream_rows_per_second = upstreamRows, transform_rows_per_second = uncachedRows, transform_over_upstream_time = uncachedRatio, raw_seconds = uncachedTimes };
Log($"  upstream alone {upstreamRows:N0} rows/s, Transform over it {uncachedRows:N0} rows/s ({uncachedRatio:F2}x the upstream's time)");

// ---------------------------------------------------------------- the plain ML.NET zip
// mlContext.Model.Save writes the network as ONNX; a plain mlContext.Model.Load scores it with ONNX Runtime, which
// ML.NET's OnnxTransformer runs once per row. Measured in the same run, interleaved with our batched path.
Log("Scoring: the plain zip (mlContext.Model.Save -> mlContext.Model.Load, ONNX Runtime) vs our batched path");
var plainZip = new MemoryStream();
ml.Model.Save(scoringModel, trainView.Schema, plainZip);
plainZip.Position = 0;
var plainContext = new MLContext();
var plainModel = plainContext.Model.Load(plainZip, out _);
void CursorOver(ITransformer model)
{
    var scored = model.Transform(testView);
    using var cursor = scored.GetRowCursor([scored.Schema["Score"]]);
    var score = cursor.GetGetter<VBuffer<float>>(scored.Schema["Score"]);
    VBuffer<float> buffer = default;
    long rows = 0;
    while (cursor.MoveNext()) { score(ref buffer); rows++; }
    if (rows != nTest) throw new InvalidOperationException("row count");
}
var plainScoring = Harness.Interleaved(TimeSpan.FromSeconds(3), Harness.Repetitions,
    ("ours: Transform + cursor (TorchSharp, batched)", () => CursorOver(scoringModel)),
    ("plain zip: Transform + cursor (ONNX Runtime, per row)", () => CursorOver(plainModel)));
double oursRows = nTest / Harness.Median(plainScoring["ours: Transform + cursor (TorchSharp, batched)"]);
double plainRows = nTest / Harness.Median(plainScoring["plain zip: Transform + cursor (ONNX Runtime, per row)"]);
var plainEngine = plainContext.Model.CreatePredictionEngine<BenchRow, BenchScore>(plainModel);
for (int i = 0; i < 200; i++) { plainEngine.Predict(testRows[i]); engine.Predict(testRows[i]); }
var oursLatencies = new List<double>();
var plainLatencies = new List<double>();
foreach (var row in testRows)
{
    // Alternating calls, so a slow spell of the machine hits both.
    var sw = System.Diagnostics.Stopwatch.StartNew();
    engine.Predict(row);
    oursLatencies.Add(sw.Elapsed.TotalMilliseconds);
    sw.Restart();
    plainEngine.Predict(row);
    plainLatencies.Add(sw.Elapsed.TotalMilliseconds);
}
results["plain_zip_scoring"] = new
{
    rows = nTest,
    ours_transform_rows_per_second = oursRows,
    plain_zip_transform_rows_per_second = plainRows,
    ours_prediction_engine_ms = new { p50 = Harness.Median(oursLatencies), p99 = Harness.Percentile(oursLatencies, 0.99), calls = oursLatencies.Count },
    plain_zip_prediction_engine_ms = new { p50 = Harness.Median(plainLatencies), p99 = Harness.Percentile(plainLatencies, 0.99), calls = plainLatencies.Count },
    raw_seconds = plainScoring,
};
Log($"  Transform: ours {oursRows:N0} rows/s, plain zip {plainRows:N0} rows/s; PredictionEngine p50/p99: ours {Harness.Median(oursLatencies):F3}/{Harness.Percentile(oursLatencies, 0.99):F3} ms, plain zip {Harness.Median(plainLatencies):F3}/{Harness.Percentile(plainLatencies, 0.99):F3} ms");

// ---------------------------------------------------------------- peers
Log("Peers: ML.NET's LbfgsMaximumEntropy and SdcaMaximumEntropy on the same split");
var peers = new Dictionary<string, (List<double> seconds, double accuracy)>();
void Peer(string name, Func<ITransformer> fit)
{
    ITransformer? last = null;
    var t = Harness.Repeat(0, Harness.Repetitions, () => last = fit());
    var acc = ml.MulticlassClassification.Evaluate(last!.Transform(testView)).MicroAccuracy;
    peers[name] = (t, acc);
    Log($"  {name}: {Harness.Median(t):F2} s, accuracy {acc:P2}");
    (last as IDisposable)?.Dispose();
}
Peer("MlNetGuide chapter MLP (20 epochs, the Digits job's settings)", () => ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions
{
    Architecture = NetworkArchitecture.ChapterMlp(), Epochs = quick ? 5 : 20, BatchSize = 64, LearningRate = 0.2,
}).Fit(trainView));
Peer("LbfgsMaximumEntropy", () => ml.MulticlassClassification.Trainers.LbfgsMaximumEntropy().Fit(trainView));
Peer("SdcaMaximumEntropy", () => ml.MulticlassClassification.Trainers.SdcaMaximumEntropy().Fit(trainView));
results["peers"] = peers.ToDictionary(p => p.Key, p => (object)new { median_train_seconds = Harness.Median(p.Value.seconds), accuracy = p.Value.accuracy, raw_seconds = p.Value.seconds });

// ---------------------------------------------------------------- scaling
Log("Scaling: seconds per epoch (Trainer) against batch size and hidden width");
double EpochSeconds(long hidden, int b) => Harness.Median(Harness.Repeat(1, Harness.Repetitions, () =>
{
    using var model = new Classifier(Mlp(hidden), lr: 0.1);
    using var data = new TensorDataModule([xTrain, yTrain], b, seed: 1);
    using var trainer = new Trainer(1);
    trainer.Fit(model, data);
}));
var batchSizes = new[] { 32, 64, 128, 256, 512, 1024 };
var widths = new[] { 64, 128, 256, 512, 1024 };
var byBatch = batchSizes.Select(b => (b, s: EpochSeconds(256, b))).ToList();
foreach (var (b, s) in byBatch) Log($"  batch {b,5}: {s:F3} s/epoch");
var byWidth = widths.Select(w => (w, s: EpochSeconds(w, 256))).ToList();
foreach (var (w, s) in byWidth) Log($"  width {w,5}: {s:F3} s/epoch");
results["scaling"] = new
{
    by_batch_size = byBatch.Select(p => new { batch_size = p.b, hidden = 256, seconds_per_epoch = p.s }),
    by_hidden_width = byWidth.Select(p => new { hidden = p.w, batch_size = 256, seconds_per_epoch = p.s }),
};
SavePlot(Path.Combine(output, "images", "scaling-batch-size.png"), "Seconds per epoch vs batch size (784-256-10, 8,000 digits)", "batch size", byBatch.Select(p => ((double)p.b, p.s)), logX: true);
SavePlot(Path.Combine(output, "images", "scaling-hidden-width.png"), "Seconds per epoch vs hidden width (batch 256, 8,000 digits)", "hidden width", byWidth.Select(p => ((double)p.w, p.s)), logX: true);

// ---------------------------------------------------------------- write
File.WriteAllText(Path.Combine(output, "benchmarks.json"), JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true }));
var md = new StringBuilder();
md.AppendLine("# Benchmarks").AppendLine();
md.AppendLine("Generated by `dotnet run -c Release --project tests/Benchmarks` (numbers also in `benchmarks.json`). Each figure is the median of");
md.AppendLine($"{Harness.Repetitions} repetitions after warm-up ({overheadRounds} for the training overhead, {3 * Harness.Repetitions} for scoring); competing variants ran interleaved in one process, and each ratio is the median of the");
md.AppendLine("ratios of back-to-back pairs, so a slow spell of this shared machine hits both sides of a ratio (ratios of the medians are in the JSON too).").AppendLine();
md.AppendLine($"Machine: {cpu}; {Environment.ProcessorCount} logical cores; torch threads {get_num_threads()}; {RuntimeInformation.OSDescription}; {RuntimeInformation.FrameworkDescription}; TorchSharp {env["torchsharp"]}; Microsoft.ML {env["microsoft_ml"]}; {env["date"]}.").AppendLine();
md.AppendLine("## Hardware").AppendLine();
md.AppendLine("| measure | value |").AppendLine("| --- | --- |");
md.AppendLine($"| sgemm (libtorch matmul, 1024³ float32) | {sgemmGflops:F1} GFLOP/s |");
md.AppendLine($"| training step, 784-1024-1024-10 MLP, batch 1024 | {stepSeconds * 1000:F1} ms; {stepFlops / 1e9:F2} GFLOP (forward 2·P·B, backward 4·P·B − the first layer's input gradient, P = {bigP:N0}) |");
md.AppendLine($"| achieved | {stepGflops:F1} GFLOP/s = **{fraction:P0} of sgemm** (median of the ratios of alternating sgemm/step measurements; target ≥ 85 %) |").AppendLine();
md.AppendLine("## LeNet (D2L 7.6)").AppendLine();
md.AppendLine("| measure | value |").AppendLine("| --- | --- |");
md.AppendLine($"| one epoch, 8,000 digits, batch 64, SGD momentum 0.9 (median of {(quick ? 2 : 3)} after one warm-up) | {lenetEpochSeconds:F2} s |");
md.AppendLine($"| work | {lenetFlopsPerImage / 1e6:F2} MFLOP per image (forward 2·MACs, backward 4·MACs less conv1's input gradient; 416,520 MACs) |");
md.AppendLine($"| achieved | {lenetGflops:F1} GFLOP/s = **{lenetFraction:P0} of sgemm**: small convolutions (6 and 16 channels) and 64-image batches keep libtorch's CPU kernels far from matrix-multiply speed |").AppendLine();
md.AppendLine("## Training overhead").AppendLine();
md.AppendLine($"Same MLP (784-256-10, default init, SGD lr 0.1), same 8,000 digits, batch {batch}, {epochs} epochs per run.").AppendLine();
md.AppendLine($"Each variant ran {overheadRounds} times, in rounds (order rotated each round); the ratio is the median of the per-round ratios,");
md.AppendLine("and the interquartile range of those ratios shows how much a single pair can tell on this machine.").AppendLine();
md.AppendLine("| variant | seconds per epoch | ratio to the hand-written loop | middle half of the per-round ratios | target |").AppendLine("| --- | --- | --- | --- | --- |");
string Iqr(string v) => Harness.Spread(overhead, v, "hand-written loop");
md.AppendLine($"| hand-written TorchSharp loop over the pre-built tensors (shuffled each epoch: randperm + index_select per batch) | {hand:F3} | 1.000 | | |");
md.AppendLine($"| `Trainer.Fit` (TensorDataModule, shuffled gather per batch, board + metrics on device) | {trn:F3} | **{rTrainer:F3}** | {Iqr("Trainer.Fit")} | ≤ 1.05 |");
md.AppendLine($"| estimator `Fit` from a cached IDataView (default: rows read into memory once per `Fit`, then shuffled there; setup included; `NumberOfThreads = {torchThreads}`, the hand loop's) | {est:F3} | **{rEstimator:F3}** | {Iqr("estimator Fit (IDataView)")} | ≤ 1.15 |");
md.AppendLine($"| estimator `Fit` with its default `NumberOfThreads` (one thread: robust beside other jobs, see `--contention`) | {oneThread:F3} | {oneThread / hand:F3} ({rOneThread:F3}× the estimator row) | {Iqr("estimator Fit, default NumberOfThreads")} | |");
md.AppendLine($"| estimator `Fit`, `ValidationFraction = 0.1` (the Digits job's setting: 10 % held out in memory, validated every epoch) | {validated:F3} | {validated / hand:F3} ({rValidated:F3}× the estimator row) | {Iqr("estimator Fit, ValidationFraction = 0.1")} | ≤ 1.05× the estimator row + validation |");
md.AppendLine($"| estimator `Fit`, `InMemoryLimitMB = 0` (what data over the limit gets: a shuffled cursor → batch tensors every epoch) | {streamed:F3} | {rStreamed:F3} | {Iqr("estimator Fit, streamed every epoch")} | |");
md.AppendLine($"| for reference: hand-written loop over batches built once and never shuffled | {unshuffled:F3} | {rUnshuffled:F3} | {Iqr("hand-written, unshuffled pre-built batches")} | |").AppendLine();
md.Append(pytorchPeer.Markdown());
md.AppendLine("## Scoring").AppendLine();
md.AppendLine($"The {nTest:N0} test digits, 512 rows per forward pass.").AppendLine();
md.AppendLine("| path | throughput / latency |").AppendLine("| --- | --- |");
md.AppendLine($"| raw batched forward (+ softmax, copied out) | {rawRows:N0} rows/s |");
md.AppendLine($"| `Transform` consumed by a cursor | {transformRows:N0} rows/s = **{transformFraction:P0} of raw** (target ≥ 80 %; middle half of the per-round fractions: {1 / Harness.Percentile(Harness.Ratios(scoring, "Transform + cursor", "raw batched forward"), 0.75):P0}–{1 / Harness.Percentile(Harness.Ratios(scoring, "Transform + cursor", "raw batched forward"), 0.25):P0}) |");
md.AppendLine($"| `Transform` behind an uncached upstream (CSV file → `NormalizeMinMax` → `MapValueToKey`), reading `Score` and `Label` as `Evaluate` does | {uncachedRows:N0} rows/s; the upstream alone {upstreamRows:N0} rows/s: **{uncachedRatio:F2}×** the upstream's own time (one pass over it plus the forward passes; two passes would be ≥ 2×) |");
md.AppendLine($"| the first call of each, cold (before warm-up; .NET has not yet optimized the managed code) | raw {coldRaw:N0} rows/s, `Transform` {coldTransform:N0} rows/s |");
md.AppendLine($"| `PredictionEngine`, one row per call ({latencies.Count:N0} calls) | median {Harness.Median(latencies):F3} ms, p99 {Harness.Percentile(latencies, 0.99):F3} ms |").AppendLine();
md.AppendLine("## Scoring a plain ML.NET zip").AppendLine();
md.AppendLine($"The same network saved with `mlContext.Model.Save` (ONNX inside the zip) and loaded with a plain `mlContext.Model.Load`, which scores");
md.AppendLine($"with ONNX Runtime through ML.NET's `OnnxTransformer` (one ORT run per row), against our batched TorchSharp path; same run, the");
md.AppendLine($"`Transform` variants interleaved, the `PredictionEngine` calls alternating ({oursLatencies.Count:N0} each).").AppendLine();
md.AppendLine("| path | `Transform` + cursor | `PredictionEngine` p50 | `PredictionEngine` p99 |").AppendLine("| --- | --- | --- | --- |");
md.AppendLine($"| ours (TorchSharp, batched; `NeuralModel.Load` gives this back from the zip) | {oursRows:N0} rows/s | {Harness.Median(oursLatencies):F3} ms | {Harness.Percentile(oursLatencies, 0.99):F3} ms |");
md.AppendLine($"| plain zip (`mlContext.Model.Load`, ONNX Runtime per row) | {plainRows:N0} rows/s | {Harness.Median(plainLatencies):F3} ms | {Harness.Percentile(plainLatencies, 0.99):F3} ms |").AppendLine();
md.AppendLine("## Peers (same split, held-out accuracy)").AppendLine();
md.AppendLine("| trainer | median training seconds | accuracy |").AppendLine("| --- | --- | --- |");
foreach (var (name, (secs, acc)) in peers) md.AppendLine($"| {name} | {Harness.Median(secs):F2} | {acc:P2} |");
md.AppendLine().AppendLine("## Scaling").AppendLine();
md.AppendLine("| batch size | s/epoch (hidden 256) |").AppendLine("| --- | --- |");
foreach (var (b, s) in byBatch) md.AppendLine($"| {b} | {s:F3} |");
md.AppendLine().AppendLine("| hidden width | s/epoch (batch 256) |").AppendLine("| --- | --- |");
foreach (var (w, s) in byWidth) md.AppendLine($"| {w} | {s:F3} |");
md.AppendLine().AppendLine("![batch size](images/scaling-batch-size.png)").AppendLine().AppendLine("![hidden width](images/scaling-hidden-width.png)");
var notes = Path.Combine(output, "benchmarks-notes.md");
if (File.Exists(notes)) md.AppendLine().Append(File.ReadAllText(notes));
File.WriteAllText(Path.Combine(output, "benchmarks.md"), md.ToString());
Log($"Wrote {Path.Combine(output, "benchmarks.md")} and benchmarks.json");
foreach (var (x, y) in prebuilt) { x.Dispose(); y.Dispose(); }
return 0;

// The informational version is the package's ("5.0.1"); ML.NET's assembly version is always 1.0.0.0.
static string PackageVersion(System.Reflection.Assembly a) =>
    (a.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false).FirstOrDefault() as System.Reflection.AssemblyInformationalVersionAttribute)?.InformationalVersion.Split('+')[0]
    ?? a.GetName().Version!.ToString();

static void SavePlot(string path, string title, string xLabel, IEnumerable<(double x, double y)> points, bool logX)
{
    var model = new PlotModel { Title = title, Background = OxyColors.White };
    model.Axes.Add(logX ? new LogarithmicAxis { Position = AxisPosition.Bottom, Title = xLabel, Base = 2, MajorGridlineStyle = LineStyle.Dot }
                        : new LinearAxis { Position = AxisPosition.Bottom, Title = xLabel, MajorGridlineStyle = LineStyle.Dot });
    model.Axes.Add(new LinearAxis { Position = AxisPosition.Left, Title = "seconds per epoch", Minimum = 0, MajorGridlineStyle = LineStyle.Dot });
    var series = new LineSeries { MarkerType = MarkerType.Circle, StrokeThickness = 2 };
    series.Points.AddRange(points.Select(p => new DataPoint(p.x, p.y)));
    model.Series.Add(series);
    using var stream = File.Create(path);
    new OxyPlot.SkiaSharp.PngExporter { Width = 720, Height = 420 }.Export(model, stream);
}

internal sealed class BenchRow
{
    [VectorType(784)] public float[] Features { get; set; } = [];
    public float Label { get; set; }
}

internal sealed class BenchScore
{
    public float[] Score { get; set; } = [];
}
