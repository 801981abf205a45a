using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Estimators;
using MlNetGuide.Modules;
using MlNetGuide.Training;

namespace MlNetGuide.Samples.Digits;

/// <summary>Settings of the digits job (the command-line options). Null epochs, batch size or rate: the network's default.</summary>
public sealed record DigitsSettings
{
    public string Architecture { get; init; } = "mlp";
    public int? Epochs { get; init; }
    public int? BatchSize { get; init; }
    public double? LearningRate { get; init; }
    public int NumGpus { get; init; }
    public int Seed { get; init; } = 1;
    public int Limit { get; init; } = int.MaxValue;
    public string Output { get; init; } = "artifacts";
    public string? DataPath { get; init; }
    public double? MinAccuracy { get; init; }
    public bool BeatBaseline { get; init; } = true;

    /// <summary>
    /// Train data parallel on MPI (<c>mpirun -np N dotnet Digits.dll --distributed</c>). Under an MPI launcher the
    /// estimator does so anyway (<see cref="Distribution.Auto"/>); the flag also makes a run without one an error-free job
    /// of one rank, and it is what the README's command shows.
    /// </summary>
    public bool Distributed { get; init; }

    /// <summary>The networks to train, the first being the one saved, reloaded and checked.</summary>
    public IReadOnlyList<NetworkPlan> Plans() => Architecture switch
    {
        "mlp" => [NetworkPlan.Mlp.With(this)],
        "lenet" => [NetworkPlan.LeNet.With(this)],
        "both" => [NetworkPlan.LeNet.With(this), NetworkPlan.Mlp],
        _ => throw new ArgumentException($"--architecture must be mlp, lenet or both; got '{Architecture}'."),
    };
}

/// <summary>How one network is trained, with defaults measured on this data set.</summary>
public sealed record NetworkPlan(string Name, string Title, NetworkArchitecture Architecture, InitScheme Init, OptimizerKind Optimizer,
    int Epochs, int BatchSize, double LearningRate, double MinAccuracy, double Momentum = 0, double WeightDecay = 0, double ValidationFraction = 0.1,
    LearningRateSchedule Schedule = LearningRateSchedule.Constant, EarlyStopping? EarlyStopping = null)
{
    /// <summary>
    /// The chapter's MLP (lazy input width, 256 hidden, ReLU) with Xavier init and SGD on a cosine schedule, stopped early
    /// when the validation accuracy (10 % of the rows) has not improved for 4 epochs, keeping the best epoch's weights.
    /// </summary>
    public static NetworkPlan Mlp { get; } = new("mlp", "MlNetGuide chapter MLP", NetworkArchitecture.ChapterMlp(), InitScheme.Xavier,
        OptimizerKind.Sgd, Epochs: 20, BatchSize: 64, LearningRate: 0.4, MinAccuracy: 0.94,
        Schedule: LearningRateSchedule.Cosine, EarlyStopping: new EarlyStopping("val_acc", Patience: 4));

    /// <summary>D2L 7.6 LeNet (ReLU and max pooling) with Kaiming init for its ReLUs and SGD with momentum.</summary>
    public static NetworkPlan LeNet { get; } = new("lenet", "MlNetGuide LeNet", NetworkArchitecture.LeNet(),
        new InitScheme(Initializer.KaimingUniform(), Initializer.Zeros), OptimizerKind.Sgd, Epochs: 15, BatchSize: 64, LearningRate: 0.05,
        MinAccuracy: 0.98, Momentum: 0.9, WeightDecay: 5e-4, ValidationFraction: 0, // every one of the 8,000 rows trains it
        Schedule: LearningRateSchedule.OneCycle);

    /// <summary>This plan with the settings' overrides.</summary>
    public NetworkPlan With(DigitsSettings s) => this with
    {
        Epochs = s.Epochs ?? Epochs, BatchSize = s.BatchSize ?? BatchSize, LearningRate = s.LearningRate ?? LearningRate,
        MinAccuracy = s.MinAccuracy ?? MinAccuracy,
    };
}

/// <summary>Metrics of one classifier on the held-out split.</summary>
public sealed record ClassifierMetrics(
    [property: JsonPropertyName("accuracy")] double Accuracy,
    [property: JsonPropertyName("macro_accuracy")] double MacroAccuracy,
    [property: JsonPropertyName("log_loss")] double LogLoss,
    [property: JsonPropertyName("train_seconds")] double TrainSeconds);

/// <summary>One network's result: held-out metrics, training time, and the epochs run and kept (early stopping).</summary>
public sealed record NetworkMetrics(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("accuracy")] double Accuracy,
    [property: JsonPropertyName("macro_accuracy")] double MacroAccuracy,
    [property: JsonPropertyName("log_loss")] double LogLoss,
    [property: JsonPropertyName("train_seconds")] double TrainSeconds,
    [property: JsonPropertyName("epochs")] int Epochs,
    [property: JsonPropertyName("epochs_run")] int EpochsRun,
    [property: JsonPropertyName("best_epoch")] int? BestEpoch);

/// <summary>What the job measured; written to metrics.json. The top-level figures are the first network's.</summary>
public sealed record DigitsReport(
    [property: JsonPropertyName("architecture")] string Architecture,
    [property: JsonPropertyName("accuracy")] double Accuracy,
    [property: JsonPropertyName("macro_accuracy")] double MacroAccuracy,
    [property: JsonPropertyName("log_loss")] double LogLoss,
    [property: JsonPropertyName("baseline")] ClassifierMetrics Baseline,
    [property: JsonPropertyName("networks")] IReadOnlyList<NetworkMetrics> Networks,
    [property: JsonPropertyName("train_seconds")] double TrainSeconds,
    [property: JsonPropertyName("scoring_rows_per_second")] double ScoringRowsPerSecond,
    [property: JsonPropertyName("reload_identical")] bool ReloadIdentical,
    [property: JsonPropertyName("train_rows")] int TrainRows,
    [property: JsonPropertyName("test_rows")] int TestRows,
    [property: JsonPropertyName("epochs")] int Epochs,
    [property: JsonPropertyName("seed")] int Seed)
{
    /// <summary>Why the run failed its checks (empty when it passed).</summary>
    [JsonIgnore]
    public List<string> Failures { get; } = [];
}

/// <summary>
/// The main job: real handwritten digits through an ML.NET pipeline with the chapter's MLP (lazy input width) and a
/// Xavier init scheme — or D2L 7.6's LeNet, or both — trained by MlNetGuide's estimator, compared with ML.NET's
/// LbfgsMaximumEntropy on the same seeded 80/20 split; the first network is saved, reloaded in a fresh MLContext, and
/// checked. Under MPI every rank trains (each on its share of the rows) and rank 0 alone reports, compares and writes.
/// </summary>
public static class DigitsJob
{
    /// <summary>
    /// Runs the job; <paramref name="progress"/> hears every epoch, <paramref name="status"/> every stage. Under MPI,
    /// ranks other than 0 train, wait for rank 0's zip, and return null.
    /// </summary>
    public static DigitsReport? Run(DigitsSettings s, Action<EpochMetrics>? progress = null, Action<string>? status = null)
    {
        bool lead = DistributedTraining.IsRankZero; // the rank that prints and writes
        if (!lead) (progress, status) = (null, null);
        status ??= _ => { };
        if (DistributedTraining.Size > 1) status($"Training data parallel on {DistributedTraining.Size} MPI ranks; this is rank 0, which reports and writes");
        Directory.CreateDirectory(s.Output);
        var ml = new MLContext(seed: s.Seed);
        status($"Reading digits from {s.DataPath ?? DigitsData.DefaultPath()}");
        var digits = DigitsData.Read(s.DataPath ?? DigitsData.DefaultPath(), s.Limit);
        var split = ml.Data.TrainTestSplit(ml.Data.LoadFromEnumerable(digits), testFraction: 0.2, seed: s.Seed);
        var train = ml.Data.Cache(split.TrainSet);
        var test = ml.Data.Cache(split.TestSet);

        var features = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Transforms.NormalizeMinMax("Features", nameof(Digit.Pixels))); // no cache checkpoint: the network reads its rows into memory once

        var plans = s.Plans();
        var results = new List<(NetworkPlan plan, ITransformer model, MulticlassClassificationMetrics metrics, NetworkMetrics row)>();
        foreach (var plan in plans)
        {
            status($"Training {plan.Title}: {plan.Architecture}, {plan.Epochs} epochs, {plan.Optimizer} lr {plan.LearningRate}" +
                (plan.Momentum > 0 ? $" momentum {plan.Momentum}" : "") + (plan.WeightDecay > 0 ? $" weight decay {plan.WeightDecay}" : "") +
                (plan.Schedule != LearningRateSchedule.Constant ? $", {plan.Schedule} schedule" : "") + $", batch {plan.BatchSize}");
            var pipeline = features
                .Append(ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions
                {
                    Architecture = plan.Architecture,
                    Init = plan.Init,                                         // 6.3: e.g. Xavier-uniform weights, zero biases
                    Optimizer = plan.Optimizer,
                    Momentum = plan.Momentum,
                    WeightDecay = plan.WeightDecay,
                    Schedule = plan.Schedule,
                    EarlyStopping = plan.EarlyStopping,
                    Epochs = plan.Epochs,
                    BatchSize = plan.BatchSize,
                    LearningRate = plan.LearningRate,
                    NumGpus = s.NumGpus,
                    ValidationFraction = plan.ValidationFraction,
                    EpochCompleted = progress,
                    Distribution = s.Distributed ? Distribution.Mpi : Distribution.Auto,
                }))
                .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));
            var clock = Stopwatch.StartNew();
            var fitted = pipeline.Fit(train);
            double seconds = clock.Elapsed.TotalSeconds;
            var metrics = ml.MulticlassClassification.Evaluate(fitted.Transform(test));
            var history = Flatten(fitted).OfType<NeuralNetworkTransformer>().Single().History!;
            if (history.BestEpoch is int kept)
                status($"{plan.Title}: early stopping ran {history.Epochs.Count} of {plan.Epochs} epochs and kept epoch {kept}'s weights");
            results.Add((plan, fitted, metrics, new NetworkMetrics(plan.Name, metrics.MicroAccuracy, metrics.MacroAccuracy, metrics.LogLoss,
                seconds, plan.Epochs, history.Epochs.Count, history.BestEpoch)));
        }
        var (primary, model, ours, _) = results[0];
        double trainSeconds = results[0].row.TrainSeconds;
        var zip = Path.Combine(s.Output, "digits-model.zip");
        if (!lead)
        {
            ml.Model.SaveOnRankZero(model, train.Schema, zip); // waits for rank 0's zip
            foreach (var network in results.SelectMany(r => Flatten(r.model)).OfType<NeuralNetworkTransformer>()) network.Dispose();
            return null;
        }

        status("Training ML.NET's LbfgsMaximumEntropy on the same split");
        var watch = Stopwatch.StartNew();
        var baselineModel = features.AppendCacheCheckpoint(ml).Append(ml.MulticlassClassification.Trainers.LbfgsMaximumEntropy()).Fit(train); // LBFGS passes over its data many times
        double baselineSeconds = watch.Elapsed.TotalSeconds;
        var baseline = ml.MulticlassClassification.Evaluate(baselineModel.Transform(test));

        status("Measuring scoring throughput");
        int testRows = (int)test.GetRowCount()!.Value;
        var parts = Flatten(model).ToList();
        int at = parts.FindIndex(t => t is NeuralNetworkTransformer);
        var neural = (NeuralNetworkTransformer)parts[at];
        // Time the network alone on cached, already-featurized rows: what Transform costs, not the upstream transforms.
        var featurized = ml.Data.Cache(parts.Take(at).Aggregate(test, (d, t) => t.Transform(d)));
        _ = featurized.GetColumn<float[]>("Features").Count(); // fills the cache
        watch.Restart();
        int scored = neural.Transform(featurized).GetColumn<float[]>("Score").Count();
        double rowsPerSecond = scored / Math.Max(1e-9, watch.Elapsed.TotalSeconds);

        status("Saving with mlContext.Model.Save (the network as ONNX), reloading with mlContext.Model.Load in a fresh MLContext, comparing every prediction");
        ml.Model.SaveOnRankZero(model, train.Schema, zip); // with one process: Model.Save, written atomically
        var fresh = new MLContext(seed: s.Seed);
        var reloaded = fresh.Model.Load(zip, out _);
        bool identical = SamePredictions(ml, model, fresh, reloaded, test);
        var engine = fresh.Model.CreatePredictionEngine<Digit, DigitPrediction>(reloaded);
        var first = ml.Data.CreateEnumerable<Digit>(test, reuseRowObject: false).First();
        status($"A prediction from the reloaded model: the first test digit (a {first.Label}) is read as {engine.Predict(first).PredictedLabel}");

        long trainRows = train.GetRowCount() ?? 0;
        neural.History?.SavePng(Path.Combine(s.Output, "training-curve.png"),
            title: $"{primary.Title["MlNetGuide ".Length..]} on MNIST digits ({trainRows:N0} training rows, 10% of them held out for val_*)");
        File.WriteAllText(Path.Combine(s.Output, "model-summary.txt"), neural.Summary);

        var report = new DigitsReport(primary.Name, ours.MicroAccuracy, ours.MacroAccuracy, ours.LogLoss,
            new ClassifierMetrics(baseline.MicroAccuracy, baseline.MacroAccuracy, baseline.LogLoss, baselineSeconds),
            results.Select(r => r.row).ToList(), trainSeconds, rowsPerSecond, identical, (int)trainRows, testRows, primary.Epochs, s.Seed);
        if (!identical) report.Failures.Add("the reloaded model's predictions differ from the original's");
        foreach (var (plan, _, metrics, _) in results)
        {
            if (!(metrics.MicroAccuracy >= plan.MinAccuracy))
                report.Failures.Add($"{plan.Name}: accuracy {metrics.MicroAccuracy:P2} is below --min-accuracy {plan.MinAccuracy:P1}");
            if (s.BeatBaseline && !(metrics.MicroAccuracy > baseline.MicroAccuracy))
                report.Failures.Add($"{plan.Name}: accuracy {metrics.MicroAccuracy:P2} does not beat LbfgsMaximumEntropy's {baseline.MicroAccuracy:P2}");
            if (!double.IsFinite(metrics.LogLoss)) report.Failures.Add($"{plan.Name}: log-loss is not finite");
        }
        File.WriteAllText(Path.Combine(s.Output, "metrics.json"), JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
        foreach (var (_, fitted, _, _) in results)
            foreach (var network in Flatten(fitted).OfType<NeuralNetworkTransformer>()) network.Dispose();
        return report;
    }

    private static IEnumerable<ITransformer> Flatten(ITransformer t) =>
        t is IEnumerable<ITransformer> chain ? chain.SelectMany(Flatten) : [t];

    /// <summary>Every predicted label identical; every score within 1e-5 (ONNX Runtime and TorchSharp round differently).</summary>
    private static bool SamePredictions(MLContext ml, ITransformer a, MLContext ml2, ITransformer b, IDataView test)
    {
        var left = ml.Data.CreateEnumerable<DigitPrediction>(a.Transform(test), reuseRowObject: false).ToList();
        var right = ml2.Data.CreateEnumerable<DigitPrediction>(b.Transform(test), reuseRowObject: false).ToList();
        return left.Count == right.Count && left.Zip(right).All(p =>
            p.First.PredictedLabel == p.Second.PredictedLabel && p.First.Score.Length == p.Second.Score.Length
            && p.First.Score.Zip(p.Second.Score).All(s => Math.Abs(s.First - s.Second) <= 1e-5f));
    }
}
