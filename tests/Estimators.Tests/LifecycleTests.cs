using Microsoft.ML;
using Microsoft.ML.Data;
using System.Runtime.CompilerServices;
using MlNetGuide.Modules;
using TorchSharp;

namespace MlNetGuide.Estimators.Tests;

/// <summary>
/// A fitted transformer owns its network and nothing else of the training run; a disposed one says so, wherever it is
/// used, and never writes a model that cannot be loaded.
/// </summary>
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

    [Theory]
    [InlineData(1024)] // rows read into memory once
    [InlineData(0)]    // rows streamed from the data view every epoch
    public void AfterFitTheModelHoldsOnlyItsNetworkAndOneDisposeReleasesIt(int inMemoryLimitMB)
    {
        long baseline = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        var (model, trainingData) = FitAndDropTheData(inMemoryLimitMB);
        for (int i = 0; i < 3 && trainingData.IsAlive; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        Assert.False(trainingData.IsAlive, "the fitted model still references the training data view");
        // MLP 3-8-1: two weights and two biases are the only tensors left alive (no optimizer state, loaders, metric sums).
        Assert.Equal(4, model.Scorer.Module.parameters().Count());
        Assert.All(model.Scorer.Module.parameters(), p => Assert.Null(p.grad)); // no gradient buffers kept for scoring
        Assert.Equal(baseline + 4, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        Assert.Single(model.History!.Epochs); // the metrics stay, as plain numbers
        model.Dispose();
        Assert.Equal(baseline, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    [MethodImpl(MethodImplOptions.NoInlining)] // so that no local of the caller keeps the data view alive
    private static (NeuralNetworkTransformer model, WeakReference trainingData) FitAndDropTheData(int inMemoryLimitMB)
    {
        var ml = new MLContext(seed: 1);
        var data = Synthetic.Data(ml, 40);
        var model = ml.Regression.Trainers.NeuralNetwork(new RegressionNeuralNetworkOptions
        {
            LabelColumnName = "Value", Architecture = NetworkArchitecture.Mlp(8), Epochs = 1, InMemoryLimitMB = inMemoryLimitMB,
        }).Fit(data);
        return (model, new WeakReference(data));
    }
}
