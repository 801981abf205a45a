using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Modules;

namespace MlNetGuide.Estimators.Tests;

/// <summary>A disposed transformer says so, wherever it is used; it never writes a model that cannot be loaded.</summary>
public class LifecycleTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-lifecycle-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (MLContext ml, IDataView data, NeuralNetworkTransformer model) Trained()
    {
        var ml = new MLContext(seed: 1);
        var data = Synthetic.Data(ml, 40);
        var model = ml.Regression.Trainers.NeuralNetwork(labelColumnName: "Value", architecture: NetworkArchitecture.Mlp(8), epochs: 1).Fit(data);
        return (ml, data, model);
    }

    [Fact]
    public void EveryUseAfterDisposeThrowsObjectDisposedException()
    {
        var (ml, data, model) = Trained();
        var scoredBefore = model.Transform(data); // a lazy view made before Dispose
        model.Dispose();
        model.Dispose(); // twice is fine
        Assert.Throws<ObjectDisposedException>(() => model.Transform(data));
        Assert.Throws<ObjectDisposedException>(() => model.GetOutputSchema(data.Schema));
        Assert.Throws<ObjectDisposedException>(() => ml.Model.CreatePredictionEngine<TabularRow, RegressionOut>(model));
        Assert.Throws<ObjectDisposedException>(() => model.WeightsDigest());
        Assert.Throws<ObjectDisposedException>(() => model.Summary);
        Assert.Throws<ObjectDisposedException>(() => scoredBefore.GetColumn<float>("Score").ToArray());
    }

    [Fact]
    public void SavingADisposedModelThrowsAndWritesNothing()
    {
        var (ml, data, model) = Trained();
        model.Dispose();
        var path = Path.Combine(_dir, "model.zip");
        Assert.Throws<ObjectDisposedException>(() => NeuralModel.Save(ml, model, data.Schema, path));
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public void ALoadedModelDisposesToo()
    {
        var (ml, data, model) = Trained();
        var path = Path.Combine(_dir, "model.zip");
        NeuralModel.Save(ml, model, data.Schema, path);
        model.Dispose();
        var loaded = NeuralModel.Load(ml, path, out _);
        var network = NeuralModel.Flatten(loaded).OfType<NeuralNetworkTransformer>().Single();
        Assert.Equal(40, loaded.Transform(data).GetColumn<float>("Score").Count());
        network.Dispose();
        Assert.Throws<ObjectDisposedException>(() => loaded.Transform(data).GetColumn<float>("Score").ToArray());
    }
}
