using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Estimators;
using MlNetGuide.Tests.Shared;

namespace MlNetGuide.EndToEnd.Tests.Onnx;

/// <summary>
/// A model saved with mlContext.Model.Save is scored by a child process that references Microsoft.ML, OnnxTransformer
/// and ONNX Runtime only (tests/OnnxConsumer), through Transform and a PredictionEngine: every predicted label is the
/// one this process predicts with the TorchSharp network, every score within 1e-5.
/// </summary>
public sealed class PlainLoadWithoutUsTests : IDisposable
{
    private const double Tolerance = 1e-5;
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-consumer-").FullName;
    private static readonly Lazy<(List<DigitRow> train, List<DigitRow> test)> Digits = new(() => (DigitRows.Load(0, 1500), DigitRows.Load(9000, 300)));

    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void MulticlassDigitsScoreIdenticallyInAProcessWithoutMlNetGuide()
    {
        var ml = new MLContext(seed: 1);
        var train = DigitRows.Prepared(ml, Digits.Value.train);
        var model = ml.MulticlassClassification.Trainers.NeuralNetwork(architecture: NetworkArchitecture.Mlp(32), epochs: 3, learningRate: 0.3).Fit(train);
        Compare(ml, model, train.Schema, "Features", "multiclass-key");
    }

    [Fact]
    public void BinaryDigitsScoreIdenticallyInAProcessWithoutMlNetGuide()
    {
        var ml = new MLContext(seed: 2);
        var train = DigitRows.Prepared(ml, Digits.Value.train);
        var model = ml.BinaryClassification.Trainers.NeuralNetwork(labelColumnName: nameof(DigitRow.IsZero), architecture: NetworkArchitecture.ChapterMlp(),
            epochs: 2, learningRate: 0.3).Fit(train);
        Compare(ml, model, train.Schema, "Features", "binary");
    }

    [Fact]
    public void RegressionDigitsScoreIdenticallyInAProcessWithoutMlNetGuide()
    {
        var ml = new MLContext(seed: 3);
        var train = DigitRows.Prepared(ml, Digits.Value.train);
        var model = ml.Regression.Trainers.NeuralNetwork(labelColumnName: nameof(DigitRow.Digit), architecture: NetworkArchitecture.LazyMlp(16),
            epochs: 2, learningRate: 0.01).Fit(train);
        Compare(ml, model, train.Schema, "Features", "regression");
    }

    [Fact]
    public void PipelineWithPreprocessingBeforeAndAfterTheNetworkScoresIdentically()
    {
        var ml = new MLContext(seed: 4);
        var train = DigitRows.Prepared(ml, Digits.Value.train);
        var model = ml.Transforms.NormalizeMinMax("Scaled", nameof(DigitRow.Pixels))
            .Append(ml.MulticlassClassification.Trainers.NeuralNetwork(featureColumnName: "Scaled", architecture: NetworkArchitecture.Mlp(32), epochs: 3, learningRate: 0.3))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"))
            .Fit(train);
        Compare(ml, model, train.Schema, nameof(DigitRow.Pixels), "multiclass-float");
    }

    [Theory]
    [InlineData("bilstm")]
    [InlineData("transformer")]
    public void ATextNetworkOverRealEmailsScoresIdenticallyInAProcessWithoutMlNetGuide(string name)
    {
        // Raw email text in: NormalizeText, TokenizeIntoWords and MapValueToKey as stock transforms, then the network,
        // whose zip splits the normalized text and numbers its words itself (ML.NET's OnnxTransformer takes no
        // variable-length vectors). Newlines, punctuation, non-ASCII letters and unknown words are all in real emails.
        var ml = new MLContext(seed: 5);
        var emails = MlNetGuide.Samples.SpamFilter.SpamData.Read(ml, RepoData.SpamPath, limit: 700);
        var train = ml.Data.LoadFromEnumerable(emails.Take(600));
        // The SpamFilter sample's own pipeline, with a small network and one epoch.
        var candidate = MlNetGuide.Samples.SpamFilter.SpamCandidate.Network(name, name,
            name == "bilstm" ? NetworkArchitecture.BiLstm(16, 16) : NetworkArchitecture.TransformerEncoder(16, 2, 32, 1),
            epochs: 1, learningRate: 0.01, maxTokens: 120, batchSize: 32, vocabulary: 5_000);
        var model = candidate.Build(ml).Fit(train);
        Compare(ml, model, train.Schema, "Text", "binary", ml.Data.LoadFromEnumerable(emails.Skip(600)), width: 0, relative: 1e-4);
        foreach (var part in (IEnumerable<ITransformer>)model) (part as IDisposable)?.Dispose();
    }

    [Fact]
    public void TheHashedFeatureBagOverRealEmailsScoresIdenticallyInAProcessWithoutMlNetGuide()
    {
        // The SpamFilter sample's fastest pipeline as it ships: raw text through ML.NET's hashed word and character
        // n-grams (stock transforms, saved as themselves), then the feature bag (ONNX: MatMul, then the decoder).
        var ml = new MLContext(seed: 5);
        var emails = MlNetGuide.Samples.SpamFilter.SpamData.Read(ml, RepoData.SpamPath, limit: 700);
        var train = ml.Data.LoadFromEnumerable(emails.Take(600));
        var model = MlNetGuide.Samples.SpamFilter.SpamCandidate.HashedBag.Build(ml).Fit(train);
        Compare(ml, model, train.Schema, "Text", "binary", ml.Data.LoadFromEnumerable(emails.Skip(600)), width: 0, relative: 1e-4);
        foreach (var part in (IEnumerable<ITransformer>)model) (part as IDisposable)?.Dispose();
    }

    private void Compare(MLContext ml, ITransformer model, DataViewSchema schema, string inputColumn, string mode,
        IDataView? test = null, int width = 784, double relative = 0)
    {
        var zip = Path.Combine(_dir, "model.zip");
        ml.Model.Save(model, schema, zip);
        test ??= DigitRows.Prepared(ml, Digits.Value.test);
        var rows = Path.Combine(_dir, "rows.idv");
        using (var stream = File.Create(rows)) ml.Data.SaveAsBinary(test, stream, keepHidden: false);

        var (exit, stdout, stderr) = ChildProcess.RunApp("MlNetGuide.OnnxConsumer.dll", zip, rows, inputColumn, width.ToString(CultureInfo.InvariantCulture), mode);
        Assert.True(exit == 0, $"the consumer exited {exit}: {stderr}\n{stdout}");
        Assert.Contains("ASSEMBLIES\tnone of MlNetGuide or TorchSharp", stdout);
        var deps = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "MlNetGuide.OnnxConsumer.deps.json"));
        Assert.DoesNotContain("TorchSharp", deps);
        Assert.DoesNotContain("MlNetGuide.Estimators", deps);

        var expected = Expected(ml, model.Transform(test));
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var kind in new[] { "T", "P" })
        {
            var actual = lines.Where(l => l.StartsWith(kind + "\t", StringComparison.Ordinal)).Select(l => l.Split('\t')).ToList();
            Assert.Equal(expected.Count, actual.Count);
            for (int i = 0; i < expected.Count; i++)
            {
                var (label, scores) = expected[i];
                Assert.True(label == actual[i][2], $"{kind} row {i}: predicted label {actual[i][2]}, this process predicts {label}");
                var theirs = actual[i].Skip(3).SelectMany(s => s.Split(',')).Select(s => float.Parse(s, CultureInfo.InvariantCulture)).ToArray();
                Assert.Equal(scores.Length, theirs.Length);
                for (int k = 0; k < scores.Length; k++)
                    Assert.True(Math.Abs(scores[k] - theirs[k]) <= Math.Max(Tolerance, relative * Math.Abs(scores[k])), $"{kind} row {i} value {k}: {theirs[k]} vs {scores[k]} here");
            }
        }
    }

    /// <summary>This process's label and score values (score, and probability for binary) per row, from the TorchSharp network.</summary>
    private static List<(string label, float[] scores)> Expected(MLContext ml, IDataView scored)
    {
        var labelColumn = scored.Schema.GetColumnOrNull("PredictedLabel");
        List<string> labels = labelColumn?.Type switch
        {
            null => [],
            KeyDataViewType => scored.GetColumn<uint>("PredictedLabel").Select(v => v.ToString(CultureInfo.InvariantCulture)).ToList(),
            BooleanDataViewType => scored.GetColumn<bool>("PredictedLabel").Select(v => v.ToString()).ToList(),
            _ => scored.GetColumn<float>("PredictedLabel").Select(v => v.ToString("R", CultureInfo.InvariantCulture)).ToList(),
        };
        List<float[]> scores = scored.Schema["Score"].Type is VectorDataViewType
            ? scored.GetColumn<float[]>("Score").ToList()
            : scored.GetColumn<float>("Score").Select(v => new[] { v }).ToList();
        if (scored.Schema.GetColumnOrNull("Probability") is not null)
            scores = scores.Zip(scored.GetColumn<float>("Probability"), (s, p) => s.Append(p).ToArray()).ToList();
        return scores.Select((s, i) => (labels.Count == 0 ? "-" : labels[i], s)).ToList();
    }
}
