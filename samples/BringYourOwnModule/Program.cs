// Bring your own module: a user-defined TorchSharp module and init scheme inside an ordinary ML.NET pipeline,
// saved with mlContext.Model.Save (as ONNX, thanks to IrisNet's export rule), then rebuilt as a TorchSharp module and
// scored by a second process that only registers the module by name.
//   dotnet run --project samples/BringYourOwnModule            train, save, then start the scoring process
//   dotnet run --project samples/BringYourOwnModule -- score model.zip
using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Estimators;
using MlNetGuide.Modules;
using MlNetGuide.Samples.BringYourOwnModule;

IrisNet.Register();

if (args is ["score", var zip]) return Score(zip);
if (args.Length > 0) { Console.Error.WriteLine("usage: BringYourOwnModule [score MODEL.zip]"); return 2; }

var ml = new MLContext(seed: 7);
var data = ml.Data.LoadFromTextFile<IrisRow>(FindIris(), separatorChar: ',', hasHeader: true);
var split = ml.Data.TrainTestSplit(data, testFraction: 0.3, seed: 7);
var pipeline = ml.Transforms.Concatenate("Features", nameof(IrisRow.SepalLength), nameof(IrisRow.SepalWidth), nameof(IrisRow.PetalLength), nameof(IrisRow.PetalWidth))
    .Append(ml.Transforms.NormalizeMinMax("Features"))
    .Append(ml.Transforms.Conversion.MapValueToKey("Label", nameof(IrisRow.Species)))
    .Append(ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions
    {
        Architecture = NetworkArchitecture.Custom(IrisNet.Name, 16),
        Init = new LeCunNormal(),
        Epochs = 60,
        BatchSize = 16,
        LearningRate = 0.1,
    }))
    .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));
var model = pipeline.Fit(split.TrainSet);
var metrics = ml.MulticlassClassification.Evaluate(model.Transform(split.TestSet));
Console.WriteLine($"IrisNet (LeCun-normal init) test accuracy: {metrics.MicroAccuracy:P1}, log-loss {metrics.LogLoss:F3}");

var path = Path.GetFullPath("iris-net-model.zip");
ml.Model.Save(model, split.TrainSet.Schema, path); // a plain ML.NET zip: mlContext.Model.Load scores it anywhere
Console.WriteLine($"Saved {path}; starting a second process to score it...");

var self = Environment.ProcessPath!;
var psi = new ProcessStartInfo(self) { RedirectStandardOutput = true, UseShellExecute = false };
if (Path.GetFileNameWithoutExtension(self) == "dotnet") psi.ArgumentList.Add(typeof(IrisNet).Assembly.Location);
psi.ArgumentList.Add("score");
psi.ArgumentList.Add(path);
using var child = Process.Start(psi)!;
string childOutput = child.StandardOutput.ReadToEnd();
child.WaitForExit();
Console.Write(childOutput);

// The second process must print exactly what this process predicts for the same flowers.
var mine = Describe(ml.Model.CreatePredictionEngine<IrisRow, IrisPrediction>(model));
bool agree = child.ExitCode == 0 && childOutput.Trim() == mine.Trim();
Console.WriteLine(agree ? "The scoring process's predictions are identical to this process's." : $"MISMATCH: this process predicts\n{mine}");
return agree && metrics.MicroAccuracy >= 0.9 ? 0 : 1;

static int Score(string zip)
{
    // A process that never built the module: it registered "iris-net" above, and that is all NeuralModel.Load needs to
    // rebuild the TorchSharp module from the zip's ONNX model (architecture from its metadata, weights bit for bit).
    var ml = new MLContext();
    var model = NeuralModel.Load(ml, zip, out _);
    Console.Write(Describe(ml.Model.CreatePredictionEngine<IrisRow, IrisPrediction>(model)));
    return 0;
}

static string Describe(PredictionEngine<IrisRow, IrisPrediction> engine)
{
    var text = new System.Text.StringBuilder();
    foreach (var flower in new[]
    {
        new IrisRow { SepalLength = 5.1f, SepalWidth = 3.5f, PetalLength = 1.4f, PetalWidth = 0.2f },
        new IrisRow { SepalLength = 6.4f, SepalWidth = 3.2f, PetalLength = 4.5f, PetalWidth = 1.5f },
        new IrisRow { SepalLength = 7.7f, SepalWidth = 3.0f, PetalLength = 6.1f, PetalWidth = 2.3f },
    })
    {
        var p = engine.Predict(flower);
        var scores = string.Join(" ", p.Score.Select(v => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture)));
        text.AppendLine($"  {flower.SepalLength}/{flower.SepalWidth}/{flower.PetalLength}/{flower.PetalWidth} -> {p.PredictedLabel} [{scores}]");
    }
    return text.ToString();
}

static string FindIris()
{
    foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "samples", "data", "iris.csv"))) return Path.Combine(dir.FullName, "samples", "data", "iris.csv");
    throw new FileNotFoundException("samples/data/iris.csv not found above the working directory or the program.");
}

public sealed class IrisRow
{
    [LoadColumn(0)] public float SepalLength { get; set; }
    [LoadColumn(1)] public float SepalWidth { get; set; }
    [LoadColumn(2)] public float PetalLength { get; set; }
    [LoadColumn(3)] public float PetalWidth { get; set; }
    [LoadColumn(4)] public string Species { get; set; } = "";
}

public sealed class IrisPrediction
{
    public string PredictedLabel { get; set; } = "";
    public float[] Score { get; set; } = [];
}
