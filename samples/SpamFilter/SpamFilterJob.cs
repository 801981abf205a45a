using System.Diagnostics;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetGuide.Samples.SpamFilter;

/// <summary>Settings of the spam job (the command-line options).</summary>
public sealed record SpamSettings
{
    public int Seed { get; init; } = 1;
    public int Limit { get; init; } = int.MaxValue;
    public string Output { get; init; } = Path.Combine("artifacts", "spam");
    public string? DataPath { get; init; }

    /// <summary>
    /// Fits of each candidate on the same split, the k-th with an MLContext seeded <see cref="Seed"/> + k (the trainers'
    /// shuffling and initialization); the table shows their means. One by default.
    /// </summary>
    public int Repeats { get; init; } = 1;

    /// <summary>The pipelines to train and compare (default: every text network and both ML.NET baselines).</summary>
    public IReadOnlyList<SpamCandidate> Candidates { get; init; } = [.. SpamCandidate.Networks, .. SpamCandidate.Baselines];
}

/// <summary>One fit's result on the held-out split.</summary>
public sealed record RunMetrics(
    [property: JsonPropertyName("accuracy")] double Accuracy,
    [property: JsonPropertyName("auc")] double Auc,
    [property: JsonPropertyName("f1")] double F1,
    [property: JsonPropertyName("fit_seconds")] double FitSeconds);

/// <summary>One candidate's result on the held-out split: the means over its <see cref="Runs"/>.</summary>
public sealed record CandidateMetrics(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("title")] string Title,
    [property: JsonPropertyName("accuracy")] double Accuracy,
    [property: JsonPropertyName("auc")] double Auc,
    [property: JsonPropertyName("f1")] double F1,
    [property: JsonPropertyName("spam_precision")] double SpamPrecision,
    [property: JsonPropertyName("spam_recall")] double SpamRecall,
    [property: JsonPropertyName("log_loss")] double? LogLoss,
    [property: JsonPropertyName("fit_seconds")] double FitSeconds,
    [property: JsonPropertyName("scoring_rows_per_second")] double ScoringRowsPerSecond,
    [property: JsonPropertyName("runs")] IReadOnlyList<RunMetrics> Runs);

/// <summary>What the job measured; written to metrics.json.</summary>
public sealed record SpamReport(
    [property: JsonPropertyName("candidates")] IReadOnlyList<CandidateMetrics> Candidates,
    [property: JsonPropertyName("saved")] string Saved,
    [property: JsonPropertyName("reload_identical")] bool ReloadIdentical,
    [property: JsonPropertyName("reload_max_score_difference")] double ReloadMaxScoreDifference,
    [property: JsonPropertyName("emails")] int Emails,
    [property: JsonPropertyName("train_rows")] int TrainRows,
    [property: JsonPropertyName("test_rows")] int TestRows,
    [property: JsonPropertyName("test_spam")] int TestSpam,
    [property: JsonPropertyName("seed")] int Seed)
{
    /// <summary>Why the run failed its checks (empty when it passed).</summary>
    [JsonIgnore]
    public List<string> Failures { get; } = [];
}

/// <summary>
/// Real emails (the SpamAssassin corpus) through ML.NET pipelines: every candidate is trained on the same seeded 80/20
/// split and evaluated on the same held-out emails (fitted <see cref="SpamSettings.Repeats"/> times, averaged); the best by accuracy (then AUC) is saved with
/// <c>mlContext.Model.Save</c>, reloaded with <c>mlContext.Model.Load</c> in a fresh MLContext, and its predictions compared.
/// </summary>
public static class SpamFilterJob
{
    /// <summary>
    /// The shipped file's size, and its held-out rows under <c>TrainTestSplit(testFraction: 0.2, seed: 1)</c> (the split
    /// draws a random number per row, so this is not exactly 20 %; it is the same whether the rows come from a file or a list).
    /// </summary>
    private const int ShippedEmails = 5_919, ShippedTestRowsSeed1 = 1_187;

    /// <summary>Emails in each candidate's untimed first fit.</summary>
    public const int WarmUpRows = 200;

    /// <summary>The saved model's file name under the output folder.</summary>
    public const string ModelFileName = "spam-model.zip";

    /// <summary>
    /// Scores within this of the original's count as the same, relative to their size (at least 1): ONNX Runtime's LSTM
    /// and attention kernels sum in another order than libtorch's.
    /// </summary>
    public const double ScoreTolerance = 1e-4;

    // A file, not HTML: keep the "+" in titles unescaped.
    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Runs the job over <paramref name="candidates"/> (default: <see cref="SpamCandidate.Baselines"/>); <paramref name="status"/> hears every stage.</summary>
    public static SpamReport Run(SpamSettings s, IReadOnlyList<SpamCandidate>? candidates = null, Action<string>? status = null)
    {
        candidates ??= SpamCandidate.Baselines;
        if (candidates.Count == 0) throw new ArgumentException("At least one candidate is needed.", nameof(candidates));
        status ??= _ => { };
        Directory.CreateDirectory(s.Output);
        var ml = new MLContext(seed: s.Seed);
        string path = s.DataPath ?? SpamData.DefaultPath();
        status($"Reading emails from {path}");
        var emails = SpamData.Read(ml, path, s.Limit);
        var split = ml.Data.TrainTestSplit(ml.Data.LoadFromEnumerable(emails), testFraction: 0.2, seed: s.Seed);
        var train = ml.Data.Cache(split.TrainSet);
        var test = ml.Data.Cache(split.TestSet);
        var testLabels = test.GetColumn<bool>(nameof(Email.Label)).ToList(); // also fills the cache, so scoring is timed alone
        int trainRows = train.GetColumn<bool>(nameof(Email.Label)).Count(), testRows = testLabels.Count, testSpam = testLabels.Count(l => l);
        status($"{emails.Count:N0} emails ({emails.Count(e => e.Label):N0} spam): {trainRows:N0} to train, {testRows:N0} held out ({testSpam:N0} spam)");
        if (testSpam == 0 || testSpam == testRows)
            throw new InvalidDataException($"The held-out split of {testRows} emails holds only {(testSpam == 0 ? "ham" : "spam")}; use a larger --limit.");

        // A first fit of each candidate on a few emails, untimed: the JIT compiles its featurizer and trainer there, so
        // the timed fit does not depend on which candidate ran first.
        var warmUp = ml.Data.TakeRows(ml.Data.ShuffleRows(train, seed: s.Seed), WarmUpRows);
        var results = new List<(SpamCandidate candidate, ITransformer model, CandidateMetrics metrics)>();
        foreach (var candidate in candidates)
        {
            status($"Training {candidate.Title}");
            DisposeNetworks(candidate.Build(ml).Fit(warmUp));
            var runs = new List<(RunMetrics run, double precision, double recall, double? logLoss)>();
            ITransformer? first = null;
            for (int repeat = 0; repeat < s.Repeats; repeat++)
            {
                var context = repeat == 0 ? ml : new MLContext(seed: s.Seed + repeat);
                var clock = Stopwatch.StartNew();
                var model = candidate.Build(context).Fit(train);
                double fitSeconds = clock.Elapsed.TotalSeconds;
                var scored = model.Transform(test);
                var (accuracy, auc, f1, precision, recall, logLoss) = candidate.Scores switch
                {
                    SpamScores.Calibrated => ml.BinaryClassification.Evaluate(scored) is var m
                        ? (m.Accuracy, m.AreaUnderRocCurve, m.F1Score, m.PositivePrecision, m.PositiveRecall, (double?)m.LogLoss) : default,
                    _ => ml.BinaryClassification.EvaluateNonCalibrated(scored) is var n
                        ? (n.Accuracy, n.AreaUnderRocCurve, n.F1Score, n.PositivePrecision, n.PositiveRecall, (double?)null) : default,
                };
                runs.Add((new RunMetrics(accuracy, auc, f1, fitSeconds), precision, recall, logLoss));
                status($"{candidate.Title}{(s.Repeats > 1 ? $" (fit {repeat + 1} of {s.Repeats})" : "")}: accuracy {accuracy:P2}, AUC {auc:F4}, F1 {f1:F4}, fit {fitSeconds:F1} s");
                if (repeat == 0) first = model; // the one saved if this candidate is the best
                else DisposeNetworks(model);
            }
            double rowsPerSecond = ScoringRowsPerSecond(first!, test);
            var metrics = new CandidateMetrics(candidate.Name, candidate.Title, runs.Average(r => r.run.Accuracy), runs.Average(r => r.run.Auc),
                runs.Average(r => r.run.F1), runs.Average(r => r.precision), runs.Average(r => r.recall),
                runs[0].logLoss is null ? null : runs.Average(r => r.logLoss!.Value), runs.Average(r => r.run.FitSeconds), rowsPerSecond,
                runs.Select(r => r.run).ToList());
            results.Add((candidate, first!, metrics));
        }

        var best = results.OrderByDescending(r => r.metrics.Accuracy).ThenByDescending(r => r.metrics.Auc).First();
        var zip = Path.Combine(s.Output, ModelFileName);
        var fresh = new MLContext(seed: s.Seed);
        status($"Saving {best.candidate.Title} with mlContext.Model.Save, reloading it with mlContext.Model.Load in a fresh MLContext, comparing every prediction");
        ml.Model.Save(best.model, train.Schema, zip);
        var reloaded = fresh.Model.Load(zip, out _);
        var (identical, maxDifference) = ComparePredictions(best.model.Transform(test), reloaded.Transform(test));

        var report = new SpamReport(results.Select(r => r.metrics).ToList(), best.candidate.Name, identical, maxDifference,
            emails.Count, trainRows, testRows, testSpam, s.Seed);
        if (!identical) report.Failures.Add($"the reloaded model's predictions differ from the original's (largest score difference {maxDifference:G3})");
        if (emails.Count == ShippedEmails && s.Seed == 1 && testRows != ShippedTestRowsSeed1)
            report.Failures.Add($"the seeded split held out {testRows} emails; TrainTestSplit(seed: 1) of the shipped file holds out {ShippedTestRowsSeed1}");
        foreach (var m in report.Candidates.Where(m => m.Runs.Any(r => !double.IsFinite(r.Auc))))
            report.Failures.Add($"{m.Name}: AUC is not finite");
        File.WriteAllText(Path.Combine(s.Output, "metrics.json"), JsonSerializer.Serialize(report, JsonOptions));
        // The networks own native modules: release them (and the reloaded one) now rather than at the process's exit.
        foreach (var model in results.Select(r => r.model).Append(reloaded)) DisposeNetworks(model);
        return report;
    }

    private static void DisposeNetworks(ITransformer model)
    {
        foreach (var network in Flatten(model).OfType<MlNetGuide.Estimators.NeuralNetworkTransformer>()) network.Dispose();
    }

    private static IEnumerable<ITransformer> Flatten(ITransformer t) =>
        t is IEnumerable<ITransformer> chain ? chain.SelectMany(Flatten) : [t];

    /// <summary>
    /// Test rows per second through Transform, every output value read by a cursor (the featurizer included): after one
    /// warm-up pass, passes for at least a second, so the first candidate does not pay for the JIT of the shared code.
    /// </summary>
    private static double ScoringRowsPerSecond(ITransformer model, IDataView test)
    {
        CountScoredRows(model, test);
        var clock = Stopwatch.StartNew();
        long rows = 0;
        do rows += CountScoredRows(model, test);
        while (clock.Elapsed < TimeSpan.FromSeconds(1));
        return rows / clock.Elapsed.TotalSeconds;
    }

    private static long CountScoredRows(ITransformer model, IDataView test)
    {
        var scored = model.Transform(test);
        var score = scored.Schema["Score"];
        var label = scored.Schema["PredictedLabel"];
        using var cursor = scored.GetRowCursor([score, label]);
        var getScore = cursor.GetGetter<float>(score);
        var getLabel = cursor.GetGetter<bool>(label);
        float s = 0;
        bool l = false;
        long rows = 0;
        while (cursor.MoveNext())
        {
            getScore(ref s);
            getLabel(ref l);
            rows++;
        }
        return rows;
    }

    /// <summary>Every predicted label equal and every score (and probability, where there is one) within <see cref="ScoreTolerance"/> (relative).</summary>
    private static (bool identical, double maxDifference) ComparePredictions(IDataView original, IDataView reloaded)
    {
        bool labelsEqual = original.GetColumn<bool>("PredictedLabel").SequenceEqual(reloaded.GetColumn<bool>("PredictedLabel"));
        double max = 0;
        foreach (var column in new[] { "Score", "Probability" }.Where(c => original.Schema.GetColumnOrNull(c) is not null))
        {
            var a = original.GetColumn<float>(column).ToList();
            var b = reloaded.GetColumn<float>(column).ToList();
            if (a.Count != b.Count) return (false, double.PositiveInfinity);
            max = Math.Max(max, a.Zip(b).Select(p => Math.Abs(p.First - p.Second) / Math.Max(1.0, Math.Abs(p.First))).DefaultIfEmpty(0).Max());
        }
        return (labelsEqual && max <= ScoreTolerance, max);
    }
}
