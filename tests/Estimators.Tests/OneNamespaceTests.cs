// Only what an ML.NET user writes (the project's implicit usings are System ones): no MlNetGuide.Training, no
// MlNetGuide.Modules. This file compiling is half the test.
using Microsoft.ML;
using MlNetGuide.Estimators;

namespace MlNetGuide.Estimators.Tests.OneNamespace;

public sealed class OneNamespaceTests
{
    [Fact]
    public void EveryOptionIsSetWithMicrosoftMlAndMlNetGuideEstimatorsAlone()
    {
        var ml = new MLContext(seed: 1);
        var raw = ml.Data.LoadFromEnumerable(Synthetic.Rows(200));
        var data = ml.Transforms.Conversion.MapValueToKey("Label", nameof(TabularRow.Kind)).Fit(raw).Transform(raw);
        var epochs = new List<int>();
        using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions
        {
            Architecture = NetworkArchitecture.Mlp(16),
            Init = NetworkInit.NormalSmall,
            EarlyStopping = new("val_loss", Patience: 2),
            ValidationFraction = 0.2,
            Epochs = 30,
            EpochCompleted = m => epochs.Add(m.Epoch),
            Optimizer = OptimizerKind.Adam,
            Schedule = LearningRateSchedule.Cosine,
            LearningRate = 0.01,
            NumberOfThreads = 1,
        }).Fit(data);
        Assert.Equal(model.History!.Epochs.Count, epochs.Count);
        Assert.Equal(Enumerable.Range(1, epochs.Count), epochs);
        Assert.NotNull(model.History.BestEpoch);
    }
}
