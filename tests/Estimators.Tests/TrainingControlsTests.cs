using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Training;

namespace MlNetGuide.Estimators.Tests;

/// <summary>Validation data, early stopping, schedules and ML.NET's model tools through the estimator.</summary>
public class TrainingControlsTests
{
    private static IDataView Keyed(MLContext ml, IEnumerable<TabularRow> rows)
    {
        var raw = ml.Data.LoadFromEnumerable(rows);
        return ml.Transforms.Conversion.MapValueToKey("Label", nameof(TabularRow.Kind)).Fit(raw).Transform(raw);
    }

    [Fact]
    public void ValidationDataGivesPerEpochValidationMetricsThatMatchEvaluate()
    {
        var ml = new MLContext(seed: 1);
        var rawTrain = ml.Data.LoadFromEnumerable(Synthetic.Rows(300, seed: 1));
        var keys = ml.Transforms.Conversion.MapValueToKey("Label", nameof(TabularRow.Kind), // one key mapping for both: a, b, c
            keyOrdinality: Microsoft.ML.Transforms.ValueToKeyMappingEstimator.KeyOrdinality.ByValue).Fit(rawTrain);
        var train = keys.Transform(rawTrain);
        var valid = keys.Transform(ml.Data.LoadFromEnumerable(Synthetic.Rows(120, seed: 2)));
        var estimator = ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions
        {
            Architecture = NetworkArchitecture.Mlp(16), Epochs = 6, BatchSize = 40, LearningRate = 0.3, // 120 rows: 3 equal batches
        });
        using var model = estimator.Fit(train, valid);
        var last = model.History!.Last!;
        Assert.Equal(6, model.History.Epochs.Count);
        Assert.NotNull(last.ValLoss);
        // The last epoch's validation accuracy is the model's accuracy on those 120 rows (batch means weighted by rows).
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(valid));
        Assert.Equal(metrics.MicroAccuracy, last.ValAccuracy!.Value, 6);
        Assert.True(metrics.MicroAccuracy > 0.6, $"{metrics.MicroAccuracy}"); // chance is 1/3
        // Keys numbered by a second MapValueToKey (fitted on the validation rows alone) would silently mean other classes.
        var ex = Assert.Throws<SchemaMismatchException>(() => estimator.Fit(train, Keyed(ml, Synthetic.Rows(120, seed: 3).OrderByDescending(r => r.Kind)))); // c, b, a
        Assert.Contains("fit MapValueToKey once", ex.Message);
        Assert.Throws<ArgumentException>(() => ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions { ValidationFraction = 0.2 }).Fit(train, valid));
    }

    [Fact]
    public void ValidationDataMustHaveTheTrainingDatasShape()
    {
        var ml = new MLContext(seed: 1);
        var train = Keyed(ml, Synthetic.Rows(60, seed: 1));
        var twoKinds = Keyed(ml, Synthetic.Rows(60, seed: 2).Where(r => r.Kind != "c"));
        var ex = Assert.Throws<SchemaMismatchException>(() => ml.MulticlassClassification.Trainers.NeuralNetwork(epochs: 1).Fit(train, twoKinds));
        Assert.Contains("validation data", ex.Message);
    }

    [Fact]
    public void EarlyStoppingKeepsTheBestEpochAndSaysWhichOneItWas()
    {
        var ml = new MLContext(seed: 3);
        var data = ml.Data.LoadFromEnumerable(Synthetic.Rows(120, seed: 4));
        using var model = ml.Regression.Trainers.NeuralNetwork(new RegressionNeuralNetworkOptions
        {
            LabelColumnName = nameof(TabularRow.Value), Architecture = NetworkArchitecture.Mlp(64, 64), Epochs = 80, BatchSize = 8,
            LearningRate = 0.05, ValidationFraction = 0.5, EarlyStopping = new EarlyStopping("val_loss", Patience: 2),
        }).Fit(data);
        var history = model.History!;
        int best = history.BestEpoch!.Value;
        var losses = history.Epochs.Select(e => e.ValLoss!.Value).ToList();
        Assert.Equal(losses.IndexOf(losses.Min()) + 1, best);
        Assert.True(history.Epochs.Count == best + 2 || history.Epochs.Count == 80, $"{history.Epochs.Count} epochs, best {best}");
        Assert.Throws<ArgumentException>(() => ml.Regression.Trainers.NeuralNetwork(new RegressionNeuralNetworkOptions
            { LabelColumnName = nameof(TabularRow.Value), EarlyStopping = new EarlyStopping() }).Fit(data)); // no validation rows
    }

    [Fact]
    public void ACosineScheduleIsRecordedPerEpoch()
    {
        var ml = new MLContext(seed: 3);
        var data = ml.Data.LoadFromEnumerable(Synthetic.Rows(64, seed: 4));
        using var model = ml.Regression.Trainers.NeuralNetwork(new RegressionNeuralNetworkOptions
        {
            LabelColumnName = nameof(TabularRow.Value), Architecture = NetworkArchitecture.Mlp(8), Epochs = 4, BatchSize = 16,
            LearningRate = 0.1, Schedule = LearningRateSchedule.Cosine,
        }).Fit(data);
        // 4 steps per epoch, 16 in all: the rate at each epoch's first step is 0.1 · (1 + cos(π·t/16)) / 2 for t = 0, 4, 8, 12.
        var expected = new[] { 0, 4, 8, 12 }.Select(t => 0.1 * (1 + Math.Cos(Math.PI * t / 16)) / 2).ToArray();
        var actual = model.History!.Epochs.Select(e => e.LearningRate!.Value).ToArray();
        for (int i = 0; i < 4; i++) Assert.Equal(expected[i], actual[i], 9);
    }

    [Fact]
    public void AWarmUpRisesLinearlyThenTheScheduleTakesOver()
    {
        var ml = new MLContext(seed: 3);
        var data = ml.Data.LoadFromEnumerable(Synthetic.Rows(64, seed: 4));
        using var model = ml.Regression.Trainers.NeuralNetwork(new RegressionNeuralNetworkOptions
        {
            LabelColumnName = nameof(TabularRow.Value), Architecture = NetworkArchitecture.Mlp(8), Epochs = 4, BatchSize = 16,
            LearningRate = 0.1, Schedule = LearningRateSchedule.Step, WarmupEpochs = 1,
        }).Fit(data);
        // 4 steps per epoch, 16 in all; warm-up over steps 0-3 (factor (t + 1) / 4), then 0.1^(t / 5) from the step schedule.
        var expected = new[] { 0.1 * 1 / 4, 0.1 * Math.Pow(0.1, 4 / 5), 0.1 * Math.Pow(0.1, 8 / 5), 0.1 * Math.Pow(0.1, 12 / 5) };
        var actual = model.History!.Epochs.Select(e => e.LearningRate!.Value).ToArray();
        for (int i = 0; i < 4; i++) Assert.Equal(expected[i], actual[i], 9);
    }

    [Fact]
    public void WarmStartContinuesFromTheGivenWeightsAlsoAfterAReload()
    {
        var ml = new MLContext(seed: 5);
        var data = ml.Data.LoadFromEnumerable(Synthetic.Rows(200, seed: 8));
        RegressionNeuralNetworkOptions Options(double lr) => new()
        {
            LabelColumnName = nameof(TabularRow.Value), Architecture = NetworkArchitecture.Mlp(16), Epochs = 2, BatchSize = 20, LearningRate = lr,
        };
        using var first = ml.Regression.Trainers.NeuralNetwork(Options(0.05)).Fit(data);
        float[] Scores(ITransformer m) => m.Transform(data).GetColumn<float>("Score").ToArray();
        var before = Scores(first);

        // A tiny rate moves nothing visible: a warm start scores like the model it started from, a cold start does not.
        using (var warm = ml.Regression.Trainers.NeuralNetwork(Options(1e-9)).Fit(data, first))
            Assert.All(before.Zip(Scores(warm)), p => Assert.Equal(p.First, p.Second, 4));
        using (var cold = ml.Regression.Trainers.NeuralNetwork(Options(1e-9)).Fit(data))
            Assert.True(before.Zip(Scores(cold)).Max(p => Math.Abs(p.First - p.Second)) > 0.1);

        // Training on continues where it left off: its first epoch's loss is below the first fit's first epoch.
        using var continued = ml.Regression.Trainers.NeuralNetwork(Options(0.05)).Fit(data, first);
        Assert.True(continued.History!.Epochs[0].TrainLoss < first.History!.Epochs[0].TrainLoss);
        Assert.Equal(before, Scores(first)); // the initial model is untouched

        // From a model zip: NeuralModel.Load gives the network back to continue from.
        var path = Path.Combine(Path.GetTempPath(), $"warm-{Guid.NewGuid():N}.zip");
        ml.Model.Save(first, data.Schema, path);
        var loaded = NeuralModel.Load(ml, path, out _);
        File.Delete(path);
        var network = NeuralModel.Flatten(loaded).OfType<NeuralNetworkTransformer>().Single();
        using (var fromZip = ml.Regression.Trainers.NeuralNetwork(Options(1e-9)).Fit(data, network))
            Assert.All(before.Zip(Scores(fromZip)), p => Assert.Equal(p.First, p.Second, 4));
        network.Dispose();

        var ex = Assert.Throws<ArgumentException>(() => ml.Regression.Trainers.NeuralNetwork(new RegressionNeuralNetworkOptions
            { LabelColumnName = nameof(TabularRow.Value), Architecture = NetworkArchitecture.Mlp(32) }).Fit(data, first));
        Assert.Contains("same architecture", ex.Message);
    }

    [Fact]
    public void CrossValidateRunsOurEstimatorInEveryFoldOnIris()
    {
        var ml = new MLContext(seed: 1);
        var pipeline = Iris.Features(ml)
            .Append(ml.MulticlassClassification.Trainers.NeuralNetwork(architecture: NetworkArchitecture.Mlp(16), epochs: 40, batchSize: 8, learningRate: 0.1));
        var folds = ml.MulticlassClassification.CrossValidate(Iris.Load(ml), pipeline, numberOfFolds: 3);
        Assert.Equal(3, folds.Count);
        foreach (var fold in folds)
        {
            Assert.InRange(fold.Metrics.MicroAccuracy, 0.85, 1.0); // Iris: about 0.95 for a small MLP
            (fold.Model as IDisposable)?.Dispose();
        }
    }

    [Fact]
    public void PermutationFeatureImportanceOnIrisRanksThePetalsFirst()
    {
        // The petals separate the species; the sepals barely do (Fisher's own finding).
        var ml = new MLContext(seed: 1);
        var data = Iris.Features(ml).Fit(Iris.Load(ml)).Transform(Iris.Load(ml));
        using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(architecture: NetworkArchitecture.Mlp(16), epochs: 60, batchSize: 8, learningRate: 0.1).Fit(data);
        var importance = ml.MulticlassClassification.PermutationFeatureImportance(model, data, permutationCount: 3);
        var drop = importance.Select(m => m.MicroAccuracy.Mean).ToArray(); // negative: accuracy lost when the slot is permuted
        Assert.Equal(4, drop.Length);
        Assert.True(Math.Min(drop[2], drop[3]) < Math.Max(drop[0], drop[1]), $"accuracy changes {string.Join(", ", drop)}");
        Assert.True(Math.Min(drop[2], drop[3]) < -0.1, $"accuracy changes {string.Join(", ", drop)}");
    }

    [Fact]
    public void PermutationFeatureImportanceForABinaryClassifierIgnoresTheUnusedFeature()
    {
        // Positive = a + b > 1: c is irrelevant.
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Synthetic.Rows(400, seed: 9));
        using var model = ml.BinaryClassification.Trainers.NeuralNetwork(labelColumnName: nameof(TabularRow.Positive), architecture: NetworkArchitecture.Mlp(16),
            epochs: 40, batchSize: 16, learningRate: 0.2).Fit(data);
        var importance = ml.BinaryClassification.PermutationFeatureImportance(model, data, labelColumnName: nameof(TabularRow.Positive), permutationCount: 3);
        var drop = importance.Select(m => m.AreaUnderRocCurve.Mean).ToArray();
        Assert.True(drop[0] < -0.05 && drop[1] < -0.05 && Math.Abs(drop[2]) < 0.02, $"AUC changes {string.Join(", ", drop)}");
    }

    [Fact]
    public void PermutationFeatureImportanceFindsTheFeaturesTheLabelDependsOn()
    {
        // y = 2a - 3b + c + 1: permuting b should hurt most, then a, then c.
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Synthetic.Rows(400, seed: 7));
        using var model = ml.Regression.Trainers.NeuralNetwork(labelColumnName: nameof(TabularRow.Value), architecture: NetworkArchitecture.Mlp(16),
            epochs: 40, batchSize: 16, learningRate: 0.05).Fit(data);
        var importance = ml.Regression.PermutationFeatureImportance(model, data, labelColumnName: nameof(TabularRow.Value), permutationCount: 3);
        // One entry per slot of the feature vector, in slot order.
        Assert.Equal(3, importance.Length);
        var drop = importance.Select(m => m.RootMeanSquaredError.Mean).ToArray();
        Assert.True(drop[1] > drop[0] && drop[0] > drop[2] && drop[2] > 0, $"RMSE increases {string.Join(", ", drop)}");
    }
}

/// <summary>libtorch's thread count is process-wide: these tests run alone, after the parallel ones.</summary>
[CollectionDefinition(nameof(TorchThreadsCollection), DisableParallelization = true)]
public sealed class TorchThreadsCollection;

[Collection(nameof(TorchThreadsCollection))]
public sealed class NumberOfThreadsTests
{
    private static IDataView Keyed(MLContext ml)
    {
        var raw = ml.Data.LoadFromEnumerable(Synthetic.Rows(60));
        return ml.Transforms.Conversion.MapValueToKey("Label", nameof(TabularRow.Kind)).Fit(raw).Transform(raw);
    }

    [Theory]
    [InlineData(null, 1)] // the default: one intra-op thread
    [InlineData(3, 3)]
    public void NumberOfThreadsHoldsWhileFitTrainsAndIsRestoredAfter(int? requested, int expected)
    {
        var ml = new MLContext(seed: 1);
        var during = new List<int>();
        int before = TorchSharp.torch.get_num_threads();
        TorchSharp.torch.set_num_threads(2);
        try
        {
            using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions
            {
                Epochs = 2, NumberOfThreads = requested, EpochCompleted = _ => during.Add(TorchSharp.torch.get_num_threads()),
            }).Fit(Keyed(ml));
            Assert.Equal([expected, expected], during);
            Assert.Equal(2, TorchSharp.torch.get_num_threads());
        }
        finally
        {
            TorchSharp.torch.set_num_threads(before);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions { NumberOfThreads = 0 }));
    }

    [Fact]
    public void OutsideAnMpiLauncherEveryDistributionTrainsAsOneProcessAndAnUnknownOneIsRefused()
    {
        // Auto and SingleProcess need no MPI library (none is loaded here: the test host was not started by mpirun).
        var ml = new MLContext(seed: 1);
        var data = Keyed(ml);
        string? digest = null;
        foreach (var distribution in new[] { MlNetGuide.Training.Distribution.Auto, MlNetGuide.Training.Distribution.SingleProcess })
        {
            using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions
            {
                Epochs = 2, Seed = 3, Distribution = distribution,
            }).Fit(data);
            digest ??= model.WeightsDigest();
            Assert.Equal(digest, model.WeightsDigest()); // one process either way: the same weights
        }
        Assert.Equal((0, 1, true), (DistributedTraining.Rank, DistributedTraining.Size, DistributedTraining.IsRankZero));
        Assert.Throws<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.NeuralNetwork(
            new MulticlassNeuralNetworkOptions { Distribution = (MlNetGuide.Training.Distribution)7 }));
    }

    [Fact]
    public void TwoFitsAtOnceEachTrainWithTheirOwnThreadsAndRestoreTheirOwn()
    {
        // libtorch's OpenMP thread count belongs to the calling thread: each Fit sets and restores its own.
        var results = new System.Collections.Concurrent.ConcurrentDictionary<int, (int[] during, int after)>();
        var errors = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
        using var bothStarted = new Barrier(2);
        Thread Run(int threads) => new(() =>
        {
            try
            {
                // A thread's first libtorch call copies the process's last setting into it (libtorch's lazy init): make
                // that happen first, so the 2 set next is this thread's own.
                _ = TorchSharp.torch.get_num_threads();
                TorchSharp.torch.set_num_threads(2);
                var ml = new MLContext(seed: threads);
                var during = new List<int>();
                using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions
                {
                    Epochs = 4, NumberOfThreads = threads,
                    EpochCompleted = m =>
                    {
                        if (m.Epoch == 1) bothStarted.SignalAndWait(); // both Fits are inside training at once
                        during.Add(TorchSharp.torch.get_num_threads());
                    },
                }).Fit(Keyed(ml));
                results[threads] = (during.ToArray(), TorchSharp.torch.get_num_threads());
            }
            catch (Exception ex)
            {
                errors.Enqueue(ex);
                bothStarted.RemoveParticipant();
            }
        });
        var a = Run(1);
        var b = Run(3);
        a.Start(); b.Start();
        a.Join(); b.Join();
        Assert.Empty(errors);
        Assert.Equal([1, 1, 1, 1], results[1].during);
        Assert.Equal([3, 3, 3, 3], results[3].during);
        Assert.Equal(2, results[1].after);
        Assert.Equal(2, results[3].after);
    }
}
