using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Estimators;
using MlNetGuide.Modules;
using MlNetGuide.Training;

namespace MlNetGuide.Samples.Digits;

/// <summary>Settings of the digits job (the command-line options).</summary>
public sealed record DigitsSettings
{
    public int Epochs { get; init; } = 20;
    public int BatchSize { get; init; } = 64;
    public double LearningRate { get; init; } = 0.2;
    public int NumGpus { get; init; }
    public int Seed { get; init; } = 1;
    public int Limit { get; init; } = int.MaxValue;
    public string Output { get; init; } = "artifacts";
    public string? DataPath { get; init; }
    public double MinAccuracy { get; init; } = 0.94;
    public bool BeatBaseline { get; init; } = true;
}

/// <summary>Metrics of one classifier on the held-out split.</summary>
public sealed record ClassifierMetrics(
    [property: JsonPropertyName("accuracy")] double Accuracy,
    [property: JsonPropertyName("macro_accuracy")] double MacroAccuracy,
    [property: JsonPropertyName("log_loss")] double LogLoss,
    [property: JsonPropertyName("train_seconds")] double TrainSeconds);

/// <summary>What the job measured; written to metrics.json.</summary>
public sealed record DigitsReport(
    [property: JsonPropertyName("accuracy")] double Accuracy,
    [property: JsonPropertyName("macro_accuracy")] double MacroAccuracy,
    [property: JsonPropertyName("log_loss")] double LogLoss,
    [property: JsonPropertyName("baseline")] ClassifierMetrics Baseline,
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
/// Xavier init scheme, trained by MlNetGuide's estimator, compared with ML.NET's LbfgsMaximumEntropy on the same
/// seeded 80/20 split, saved, reloaded in a fresh MLContext, and checked.
/// </summary>
public static class DigitsJob
{
    /// <summary>Runs the job; <paramref name="progress"/> hears every epoch, <paramref name="status"/> every stage.</summary>
    public static DigitsReport Run(DigitsSettings s, Action<EpochMetrics>? progress = null, Action<string>? status = null)
    {
        status ??= _ => { };
        Directory.CreateDirectory(s.Output);
        var ml = new MLContext(seed: s.Seed);
        status($"Reading digits from {s.DataPath ?? DigitsData.DefaultPath()}");
        var digits = DigitsData.Read(s.DataPath ?? DigitsData.DefaultPath(), s.Limit);
        var split = ml.Data.TrainTestSplit(ml.Data.LoadFromEnumerable(digits), testFraction: 0.2, seed: s.Seed);
        var train = ml.Data.Cache(split.TrainSet);
        var test = ml.Data.Cache(split.TestSet);

        var features = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Transforms.NormalizeMinMax("Features", nameof(Digit.Pixels))); // no cache checkpoint: the network reads its rows into memory once

        var pipeline = features
            .Append(ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions
            {
                Architecture = NetworkArchitecture.ChapterMlp(),          // the chapter's MLP: LazyLinear(256) -> ReLU -> LazyLinear(10)
                Init = InitScheme.Xavier,                                 // 6.3: Xavier-uniform weights, zero biases
                Epochs = s.Epochs,
                BatchSize = s.BatchSize,
                LearningRate = s.LearningRate,
                NumGpus = s.NumGpus,
                ValidationFraction = 0.1,
                EpochCompleted = progress,
            }))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));

        status("Training the neural network");
        var watch = Stopwatch.StartNew();
        var model = pipeline.Fit(train);
        double trainSeconds = watch.Elapsed.TotalSeconds;
        var ours = ml.MulticlassClassification.Evaluate(model.Transform(test));

        status("Training ML.NET's LbfgsMaximumEntropy on the same split");
        watch.Restart();
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
        var zip = Path.Combine(s.Output, "digits-model.zip");
        ml.Model.Save(model, train.Schema, zip);
        var fresh = new MLContext(seed: s.Seed);
        var reloaded = fresh.Model.Load(zip, out _);
        bool identical = SamePredictions(ml, model, fresh, reloaded, test);
        var engine = fresh.Model.CreatePredictionEngine<Digit, DigitPrediction>(reloaded);
        var first = ml.Data.CreateEnumerable<Digit>(test, reuseRowObject: false).First();
        status($"A prediction from the reloaded model: the first test digit (a {first.Label}) is read as {engine.Predict(first).PredictedLabel}");

        long trainRows = train.GetRowCount() ?? 0;
        neural.Board?.SavePng(Path.Combine(s.Output, "training-curve.png"),
            title: $"Chapter MLP on MNIST digits ({trainRows:N0} training rows, 10% of them held out for val_*)");
        File.WriteAllText(Path.Combine(s.Output, "model-summary.txt"), neural.Summary);

        var report = new DigitsReport(ours.MicroAccuracy, ours.MacroAccuracy, ours.LogLoss,
            new ClassifierMetrics(baseline.MicroAccuracy, baseline.MacroAccuracy, baseline.LogLoss, baselineSeconds),
            trainSeconds, rowsPerSecond, identical, (int)trainRows, testRows, s.Epochs, s.Seed);
        if (!identical) report.Failures.Add("the reloaded model's predictions differ from the original's");
        if (!(ours.MicroAccuracy >= s.MinAccuracy)) report.Failures.Add($"accuracy {ours.MicroAccuracy:P2} is below --min-accuracy {s.MinAccuracy:P0}");
        if (s.BeatBaseline && !(ours.MicroAccuracy > baseline.MicroAccuracy))
            report.Failures.Add($"accuracy {ours.MicroAccuracy:P2} does not beat LbfgsMaximumEntropy's {baseline.MicroAccuracy:P2}");
        if (!double.IsFinite(ours.LogLoss)) report.Failures.Add("log-loss is not finite");
        File.WriteAllText(Path.Combine(s.Output, "metrics.json"), JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
        neural.Dispose();
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
