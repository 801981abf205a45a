using System.Globalization;
using MlNetGuide.Samples.Digits;
using MlNetGuide.Training;
using Spectre.Console;

// The main job (README's first command). Options are few and flat, so they are parsed here rather than with a CLI
// framework: each one is named in the usage text and a bad value fails with a message naming it.
const string Usage = """
    Usage: dotnet run --project samples/Digits -c Release -- [options]
      --architecture A    mlp (the chapter's MLP, default), lenet (D2L 7.6) or both
      --epochs N          passes over the training data (default: mlp 20, lenet 15)
      --batch-size N      rows per batch (default 64)
      --lr X              learning rate (default: mlp 0.4 with SGD, lenet 0.05 with SGD, momentum 0.9)
      --num-gpus N        GPUs to train on; more than exist are clamped (default 0)
      --seed N            MLContext seed (default 1)
      --limit N           use only the first N digits (default: all 10,000)
      --output DIR        where the model zip, PNG and metrics.json go (default ./artifacts)
      --data PATH         the digits file (default samples/data/mnist-digits-10k.csv.gz)
      --min-accuracy X    fail below this held-out accuracy (default: mlp 0.94, lenet 0.98)
      --beat-baseline B   fail unless we beat LbfgsMaximumEntropy: true|false (default true)
      --distributed       train data parallel on MPI: mpirun -np 2 dotnet Digits.dll --distributed
                          (every rank trains on its share of the rows; rank 0 reports and writes)
    """;

DigitsSettings settings;
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

var interactive = AnsiConsole.Profile.Capabilities.Interactive;
var plans = settings.Plans();
int planIndex = -1;
string Describe(EpochMetrics m)
{
    if (m.Epoch == 1) planIndex++; // a new network starts (early stopping may end one before its last epoch)
    var plan = plans[Math.Clamp(planIndex, 0, plans.Count - 1)];
    return $"{plan.Name} epoch {m.Epoch}/{plan.Epochs}  loss {m.TrainLoss:F3}" + (m.ValAccuracy is double a ? $"  val acc {a:P1}" : "")
        + (m.LearningRate is double lr && plan.Schedule != MlNetGuide.Estimators.LearningRateSchedule.Constant ? $"  lr {lr:G3}" : "");
}
DigitsReport? report;
if (interactive)
{
    report = AnsiConsole.Progress()
        .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
        .Start(ctx =>
        {
            var task = ctx.AddTask("Preparing", maxValue: plans.Sum(p => p.Epochs));
            return DigitsJob.Run(settings,
                progress: m =>
                {
                    task.Description = Describe(m);
                    task.Increment(1);
                },
                status: line => AnsiConsole.MarkupLine($"[grey]{Markup.Escape(line)}[/]"));
        });
}
else
{
    report = DigitsJob.Run(settings, m => Console.WriteLine(Describe(m)), Console.WriteLine);
}

if (report is null) return 0; // an MPI rank other than 0: it trained, rank 0 reports

var table = new Table().AddColumns("", "accuracy", "macro accuracy", "log-loss", "train seconds", "epochs (kept)");
foreach (var n in report.Networks)
    table.AddRow(plans.Single(p => p.Name == n.Name).Title, P(n.Accuracy), P(n.MacroAccuracy), F(n.LogLoss), F(n.TrainSeconds),
        n.BestEpoch is int kept ? $"{n.EpochsRun} ({kept})" : $"{n.EpochsRun}");
table.AddRow("ML.NET LbfgsMaximumEntropy", P(report.Baseline.Accuracy), P(report.Baseline.MacroAccuracy), F(report.Baseline.LogLoss), F(report.Baseline.TrainSeconds), "-");
AnsiConsole.Write(table);
Console.WriteLine($"Scoring: {report.ScoringRowsPerSecond:N0} rows/s through Transform. Reloaded model identical: {report.ReloadIdentical}.");
Console.WriteLine($"Wrote {Path.Combine(settings.Output, "digits-model.zip")}, training-curve.png, metrics.json, model-summary.txt");
foreach (var failure in report.Failures) Console.Error.WriteLine($"CHECK FAILED: {failure}");
return report.Failures.Count == 0 ? 0 : 1;


static string P(double v) => v.ToString("P2", CultureInfo.InvariantCulture);
static string F(double v) => v.ToString("F3", CultureInfo.InvariantCulture);

static DigitsSettings Parse(string[] args)
{
    var s = new DigitsSettings();
    for (int i = 0; i < args.Length; i++)
    {
        string name = args[i];
        if (name is "-h" or "--help") return null!;
        if (name == "--distributed") { s = s with { Distributed = true }; continue; }
        string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{name} needs a value.");
        int Int(int min) => int.TryParse(Value(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v >= min ? v : throw new ArgumentException($"{name} needs an integer >= {min}; got '{args[i]}'.");
        double Double() => double.TryParse(Value(), NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v) ? v : throw new ArgumentException($"{name} needs a number; got '{args[i]}'.");
        s = name switch
        {
            "--architecture" => s with { Architecture = Value() is var a && a is "mlp" or "lenet" or "both" ? a : throw new ArgumentException($"--architecture must be mlp, lenet or both; got '{a}'.") },
            "--epochs" => s with { Epochs = Int(1) },
            "--batch-size" => s with { BatchSize = Int(1) },
            "--lr" => s with { LearningRate = Double() is var lr && lr > 0 ? lr : throw new ArgumentException("--lr must be > 0.") },
            "--num-gpus" => s with { NumGpus = Int(0) },
            "--seed" => s with { Seed = Int(0) },
            "--limit" => s with { Limit = Int(50) },
            "--output" => s with { Output = Value() },
            "--data" => s with { DataPath = Value() },
            "--min-accuracy" => s with { MinAccuracy = Double() },
            "--beat-baseline" => s with { BeatBaseline = bool.TryParse(Value(), out var b) ? b : throw new ArgumentException($"--beat-baseline needs true or false; got '{args[i]}'.") },
            _ => throw new ArgumentException($"Unknown option '{name}'."),
        };
    }
    return s;
}
