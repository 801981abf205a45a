using System.Globalization;
using MlNetGuide.Samples.SpamFilter;
using Spectre.Console;

// Options are few and flat, so they are parsed here rather than with a CLI framework: each one is named in the usage
// text and a bad value fails with a message naming it.
const string Usage = """
    Usage: dotnet run --project samples/SpamFilter -c Release -- [options]
      --seed N            MLContext and split seed (default 1)
      --limit N           use only the first N emails, at least 100 (default: all 5,919)
      --repeats N         fit each candidate N times on the same split, the k-th with an MLContext
                          seeded seed + k; the table shows means and the accuracy range (default 1)
      --output DIR        where spam-model.zip and metrics.json go (default ./artifacts/spam)
      --data PATH         the emails file (default samples/data/spamassassin.csv.gz)
      --candidates LIST   comma-separated: hashed-ngrams-feature-bag, featurize-text-feature-bag,
                          featurize-text-mlp, fasttext, textcnn, bigru, transformer,
                          averaged-perceptron, sdca
                          (default: all of them)
    """;

SpamSettings settings;
try
{
    settings = Parse(args);
}
catch (ArgumentException ex)
{
    Console.Error.WriteLine(ex.Message);
    Console.Error.WriteLine(Usage);
    return 2;
}
if (settings is null) { Console.WriteLine(Usage); return 0; }

if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 120; // a log has no width; Spectre's default of 80 would wrap the table
Action<string> status = AnsiConsole.Profile.Capabilities.Interactive
    ? line => AnsiConsole.MarkupLine($"[grey]{Markup.Escape(line)}[/]")
    : Console.WriteLine;
SpamReport report;
try
{
    report = SpamFilterJob.Run(settings, settings.Candidates, status);
}
catch (Exception ex) when (ex is FileNotFoundException or InvalidDataException)
{
    Console.Error.WriteLine(ex.Message);
    return 2;
}

bool repeated = settings.Repeats > 1;
var table = new Table().AddColumns(repeated ? $"mean of {settings.Repeats} fits" : "", "accuracy", "AUC", "F1", "fit seconds", "scoring rows/s");
foreach (var m in report.Candidates)
    table.AddRow(Markup.Escape(m.Title), P(m.Accuracy) + (repeated ? $" ({P(m.Runs.Min(r => r.Accuracy))}–{P(m.Runs.Max(r => r.Accuracy))})" : ""),
        F(m.Auc, 4), F(m.F1, 4), F(m.FitSeconds, 1), m.ScoringRowsPerSecond.ToString("N0", CultureInfo.InvariantCulture));
AnsiConsole.Write(table);
Console.WriteLine($"{report.TrainRows:N0} emails trained, {report.TestRows:N0} held out ({report.TestSpam:N0} spam), seed {report.Seed}. " +
    $"Fit seconds: the whole pipeline, featurizer included, after an untimed first fit on {SpamFilterJob.WarmUpRows} emails.");
Console.WriteLine($"Saved {report.Candidates.Single(c => c.Name == report.Saved).Title} to {Path.Combine(settings.Output, SpamFilterJob.ModelFileName)}; " +
    $"reloaded model identical: {report.ReloadIdentical} (largest score difference, relative, {report.ReloadMaxScoreDifference:G3}).");
Console.WriteLine($"Wrote {Path.Combine(settings.Output, "metrics.json")}");
foreach (var failure in report.Failures) Console.Error.WriteLine($"CHECK FAILED: {failure}");
return report.Failures.Count == 0 ? 0 : 1;


static string P(double v) => v.ToString("P2", CultureInfo.InvariantCulture);
static string F(double v, int digits) => v.ToString("F" + digits, CultureInfo.InvariantCulture);

static SpamSettings Parse(string[] args)
{
    var s = new SpamSettings();
    for (int i = 0; i < args.Length; i++)
    {
        string name = args[i];
        if (name is "-h" or "--help") return null!;
        string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{name} needs a value.");
        int Int(int min) => int.TryParse(Value(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v >= min ? v : throw new ArgumentException($"{name} needs an integer >= {min}; got '{args[i]}'.");
        s = name switch
        {
            "--seed" => s with { Seed = Int(0) },
            "--limit" => s with { Limit = Int(100) },
            "--repeats" => s with { Repeats = Int(1) },
            "--output" => s with { Output = Value() },
            "--data" => s with { DataPath = Value() },
            "--candidates" => s with { Candidates = SpamCandidate.Named(Value()) },
            _ => throw new ArgumentException($"Unknown option '{name}'."),
        };
    }
    return s;
}
