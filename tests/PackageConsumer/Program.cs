// What a user of the MlNetGuide packages writes first: a chapter cell, then an ML.NET fit on Iris, saved and loaded,
// then a text pipeline saved as a plain zip.
// Prints one "check:" line per result; exits 1 if a check fails. Run by tests/EndToEnd.Tests/PackageConsumerTests.cs.
// The README's "Use it in your project" snippet is here verbatim, line by line (the Iris part adds three usings).
using MlNetGuide.Modules;
using static TorchSharp.torch;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Estimators;

var net = nn.Sequential(new LazyLinear(256), nn.ReLU(), new LazyLinear(10));
net.ApplyInit(rand(2, 20), InitScheme.Xavier);   // 6.4: a dry run infers the input width (20), then Xavier init
var y = net.call(rand(2, 20));
Console.WriteLine($"check: lazy MLP output shape ({string.Join(", ", y.shape)})");   // (2, 10)

bool ok = y.shape is [2, 10];

// ML.NET: the estimator on the 150 Iris flowers (iris.csv beside the program).
var ml = new MLContext(seed: 1);
var data = ml.Data.LoadFromTextFile<IrisRow>(Path.Combine(AppContext.BaseDirectory, "iris.csv"), separatorChar: ',', hasHeader: true);
var split = ml.Data.TrainTestSplit(data, testFraction: 0.3, seed: 1);
var pipeline = ml.Transforms.Concatenate("Features", nameof(IrisRow.SepalLength), nameof(IrisRow.SepalWidth), nameof(IrisRow.PetalLength), nameof(IrisRow.PetalWidth))
    .Append(ml.Transforms.NormalizeMinMax("Features"))
    .Append(ml.Transforms.Conversion.MapValueToKey("Label", nameof(IrisRow.Species)))
    .Append(ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions
    {
        Architecture = NetworkArchitecture.Mlp(16), Epochs = 60, BatchSize = 16, LearningRate = 0.1,
    }))
    .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));
var model = pipeline.Fit(split.TrainSet);
var accuracy = ml.MulticlassClassification.Evaluate(model.Transform(split.TestSet)).MicroAccuracy;
Console.WriteLine($"check: Iris test accuracy {accuracy:F3}");
ok &= accuracy >= 0.85;

// The network's transformer keeps per-epoch metrics as plain numbers (MlNetGuide.Plots draws them; not needed here).
var network = model.OfType<NeuralNetworkTransformer>().Single();
Console.WriteLine($"check: History has {network.History!.Epochs.Count} epochs");
ok &= network.History.Epochs.Count == 60;

// Save with ML.NET's own Model.Save (the network as ONNX inside the zip), load in a fresh MLContext, compare every score.
var zip = Path.Combine(Path.GetTempPath(), $"mlnetguide-consumer-{Environment.ProcessId}.zip");
ml.Model.Save(model, split.TrainSet.Schema, zip);
var loaded = new MLContext().Model.Load(zip, out _);
File.Delete(zip);
var before = ml.Data.CreateEnumerable<IrisPrediction>(model.Transform(split.TestSet), reuseRowObject: false).ToList();
var after = ml.Data.CreateEnumerable<IrisPrediction>(loaded.Transform(split.TestSet), reuseRowObject: false).ToList();
bool agree = before.Count > 0 && before.Count == after.Count && before.Zip(after).All(p =>
    p.First.PredictedLabel == p.Second.PredictedLabel && p.First.Score.Zip(p.Second.Score).All(s => Math.Abs(s.First - s.Second) <= 1e-5f));
Console.WriteLine($"check: save/load predictions agree {agree} ({before.Count} rows)");
ok &= agree;

// Text: ML.NET's own tokenizer and key mapping, then a token network; the plain zip splits the text itself.
string[] filler = ["the", "a", "movie", "plot", "was", "and", "it", "really", "very"];
var rng = new Random(1);
var sentences = Enumerable.Range(0, 300).Select(i =>
{
    var words = Enumerable.Range(0, rng.Next(3, 12)).Select(_ => filler[rng.Next(filler.Length)]).ToList();
    words.Insert(rng.Next(words.Count + 1), i % 2 == 0 ? "great" : "awful");
    return new SentenceRow { Text = string.Join(' ', words), Label = i % 2 == 0 };
}).ToList();
var text = ml.Data.LoadFromEnumerable(sentences);
var textModel = ml.Transforms.Text.TokenizeIntoWords("Tokens", nameof(SentenceRow.Text))
    .Append(ml.Transforms.Conversion.MapValueToKey("Tokens"))
    .Append(ml.BinaryClassification.Trainers.NeuralNetwork(new BinaryNeuralNetworkOptions
    {
        FeatureColumnName = "Tokens", Architecture = NetworkArchitecture.FastText(8), Init = null, Optimizer = OptimizerKind.Adam,
        LearningRate = 0.02, Epochs = 5, BatchSize = 32,
    }))
    .Fit(text);
var textZip = Path.Combine(Path.GetTempPath(), $"mlnetguide-consumer-text-{Environment.ProcessId}.zip");
ml.Model.Save(textModel, text.Schema, textZip);
var textLoaded = new MLContext().Model.Load(textZip, out _);
File.Delete(textZip);
var ours = textModel.Transform(text).GetColumn<float>("Score").ToList();
var plain = textLoaded.Transform(text).GetColumn<float>("Score").ToList();
bool textAgree = ours.Count == 300 && plain.Count == 300 && ours.Zip(plain).All(p => Math.Abs(p.First - p.Second) <= 1e-4f * Math.Max(1, Math.Abs(p.First)));
var textAccuracy = ml.BinaryClassification.Evaluate(textModel.Transform(text)).Accuracy;
Console.WriteLine($"check: text network accuracy {textAccuracy:F3}, plain zip scores agree {textAgree}");
ok &= textAgree && textAccuracy >= 0.9;

Console.WriteLine(ok ? "consumer: all checks passed" : "consumer: a check FAILED");
return ok ? 0 : 1;

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

public sealed class SentenceRow
{
    public string Text { get; set; } = "";
    public bool Label { get; set; }
}
