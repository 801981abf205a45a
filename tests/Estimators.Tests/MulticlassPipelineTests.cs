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
