using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Modules;

namespace MlNetGuide.Estimators.Tests;

public sealed class MulticlassPipelineTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-est-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void IrisPipelineTrainsEvaluatesSavesAndReloadsWithIdenticalPredictions()
    {
        var ml = new MLContext(seed: 1);
        var split = ml.Data.TrainTestSplit(Iris.Load(ml), testFraction: 0.3, seed: 7);
        var pipeline = Iris.Features(ml)
            .Append(ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions
            {
                Architecture = NetworkArchitecture.Mlp(16),
                Epochs = 60,
                BatchSize = 16,
                LearningRate = 0.2,
            }))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));
        var model = pipeline.Fit(split.TrainSet);
        var scored = model.Transform(split.TestSet);
        var metrics = ml.MulticlassClassification.Evaluate(scored);
        Assert.True(metrics.MicroAccuracy >= 0.93, $"accuracy {metrics.MicroAccuracy:P1}");

        var path = Path.Combine(_dir, "iris.zip");
        NeuralModel.Save(ml, model, split.TrainSet.Schema, path);
        var ml2 = new MLContext();
        var loaded = NeuralModel.Load(ml2, path, out var schema);
        Assert.Equal(split.TrainSet.Schema.Count, schema.Count);
        var a = ml.Data.CreateEnumerable<IrisPrediction>(scored, reuseRowObject: false).ToList();
        var b = ml2.Data.CreateEnumerable<IrisPrediction>(loaded.Transform(split.TestSet), reuseRowObject: false).ToList();
        Assert.Equal(a.Count, b.Count);
        for (int i = 0; i < a.Count; i++)
        {
            Assert.Equal(a[i].PredictedLabel, b[i].PredictedLabel);
            Assert.Equal(a[i].Score, b[i].Score);
        }
        var engine = ml2.Model.CreatePredictionEngine<IrisRow, IrisPrediction>(loaded);
        var setosa = engine.Predict(new IrisRow { SepalLength = 5.1f, SepalWidth = 3.5f, PetalLength = 1.4f, PetalWidth = 0.2f });
        Assert.Equal("setosa", setosa.PredictedLabel);
        var virginica = engine.Predict(new IrisRow { SepalLength = 7.7f, SepalWidth = 3.0f, PetalLength = 6.1f, PetalWidth = 2.3f });
        Assert.Equal("virginica", virginica.PredictedLabel);
        Assert.Equal(1f, setosa.Score.Sum(), 4);
    }
}

/// <summary>
/// A freshly fitted model, the same model after a plain <c>Model.Save</c> + <c>Model.Load</c>, after
/// <see cref="NeuralModel.Load(MLContext, string, out DataViewSchema, LoadLimits)"/>, and ML.NET's own multiclass trainer on the same
/// pipeline describe their output columns alike: SlotNames (the class names) and TrainingLabelValues on Score, KeyValues
/// on PredictedLabel; what ML.NET's GitHub-issue labeler sample reads with <c>GetSlotNames</c>.
/// </summary>
public sealed class OutputSchemaTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-schema-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void FittedReloadedAndStockModelsAnnotateTheirScoresAlike()
    {
        var ml = new MLContext(seed: 1);
        var data = Iris.Load(ml);
        var features = Iris.Features(ml);
        using var fitted = features.Append(ml.MulticlassClassification.Trainers.NeuralNetwork(
            new MulticlassNeuralNetworkOptions { Architecture = NetworkArchitecture.Mlp(8), Epochs = 2 })).Fit(data);
        var sdca = features.Append(ml.MulticlassClassification.Trainers.SdcaMaximumEntropy(maximumNumberOfIterations: 2)).Fit(data);
        var path = Path.Combine(_dir, "iris.zip");
        ml.Model.Save(fitted, data.Schema, path);
        using var plain = (IDisposable)new MLContext().Model.Load(path, out _);
        using var ours = (IDisposable)NeuralModel.Load(new MLContext(), path, out _);

        var expected = Describe(fitted.GetOutputSchema(data.Schema));
        // Before fitting too: the estimator's shape of Score names the same annotations as SDCA's estimator.
        var shape = MlNetInternals.ShapeOf(features.Fit(data).Transform(data).Schema);
        var ourShape = ml.MulticlassClassification.Trainers.NeuralNetwork().GetOutputSchema(shape).Single(c => c.Name == "Score");
        var sdcaShape = ml.MulticlassClassification.Trainers.SdcaMaximumEntropy().GetOutputSchema(shape).Single(c => c.Name == "Score");
        Assert.Equal(sdcaShape.Annotations.Select(a => a.Name).Where(n => n != "ScoreColumnSetId").Order(), ourShape.Annotations.Select(a => a.Name).Order());
        Assert.Contains("Score SlotNames = setosa, versicolor, virginica", expected);
        Assert.Contains("Score TrainingLabelValues = setosa, versicolor, virginica", expected);
        Assert.Equal(expected, Describe(((ITransformer)plain).GetOutputSchema(data.Schema)));
        Assert.Equal(expected, Describe(((ITransformer)ours).GetOutputSchema(data.Schema)));
        Assert.Equal(expected, Describe(sdca.GetOutputSchema(data.Schema)));

        // What the labeler sample does with a prediction engine's output schema.
        using var engine = ml.Model.CreatePredictionEngine<IrisRow, ScoreOnly>(fitted, new PredictionEngineOptions { OwnsTransformer = false });
        VBuffer<ReadOnlyMemory<char>> names = default;
        engine.OutputSchema["Score"].GetSlotNames(ref names);
        Assert.Equal(["setosa", "versicolor", "virginica"], names.DenseValues().Select(n => n.ToString()));
    }

    public sealed class ScoreOnly
    {
        public float[] Score { get; set; } = [];
    }

    [Theory]
    [InlineData("binary")]
    [InlineData("regression")]
    public void BinaryAndRegressionSchemasSurviveAPlainReloadAndMatchMlNetsOwnTrainers(string task)
    {
        var ml = new MLContext(seed: 1);
        var data = Synthetic.Data(ml, 200);
        var columns = task == "binary" ? new[] { "Score", "Probability", "PredictedLabel" } : ["Score"];
        using var fitted = task == "binary"
            ? ml.BinaryClassification.Trainers.NeuralNetwork(labelColumnName: nameof(TabularRow.Positive), epochs: 1)
                .Fit(data)
            : ml.Regression.Trainers.NeuralNetwork(labelColumnName: nameof(TabularRow.Value), epochs: 1).Fit(data);
        ITransformer stock = task == "binary"
            ? ml.BinaryClassification.Trainers.SdcaLogisticRegression(labelColumnName: nameof(TabularRow.Positive), maximumNumberOfIterations: 2).Fit(data)
            : ml.Regression.Trainers.Sdca(labelColumnName: nameof(TabularRow.Value), maximumNumberOfIterations: 2).Fit(data);
        var path = Path.Combine(_dir, $"{task}.zip");
        ml.Model.Save(fitted, data.Schema, path);
        using var plain = (IDisposable)new MLContext().Model.Load(path, out _);
        using var ours = (IDisposable)NeuralModel.Load(new MLContext(), path, out _);

        var expected = Describe(fitted.GetOutputSchema(data.Schema), columns);
        Assert.Equal(expected, Describe(((ITransformer)plain).GetOutputSchema(data.Schema), columns));
        Assert.Equal(expected, Describe(((ITransformer)ours).GetOutputSchema(data.Schema), columns));
        Assert.Equal(expected, Describe(stock.GetOutputSchema(data.Schema), columns));
    }

    /// <summary>Each annotation of the columns as "column kind = values" (ScoreColumnSetId, a per-schema counter, left out).</summary>
    private static List<string> Describe(DataViewSchema schema, params string[] columns)
    {
        var lines = new List<string>();
        foreach (var name in columns.Length > 0 ? columns : ["Score", "PredictedLabel"])
        {
            var column = schema[name];
            lines.Add($"{name} type {column.Type}");
            foreach (var a in column.Annotations.Schema.Where(a => a.Name != "ScoreColumnSetId"))
            {
                var read = typeof(OutputSchemaTests).GetMethod(nameof(Read), System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!
                    .MakeGenericMethod(a.Type.RawType);
                lines.Add($"{name} {a.Name} = {read.Invoke(null, [column.Annotations, a.Name])}");
            }
        }
        lines.Sort(StringComparer.Ordinal);
        return lines;
    }

    private static string Read<T>(DataViewSchema.Annotations annotations, string kind)
    {
        T value = default!;
        annotations.GetValue(kind, ref value);
        return value switch
        {
            VBuffer<ReadOnlyMemory<char>> v => string.Join(", ", v.DenseValues().Select(m => m.ToString())),
            ReadOnlyMemory<char> m => m.ToString(),
            _ => value?.ToString() ?? "",
        };
    }
}
