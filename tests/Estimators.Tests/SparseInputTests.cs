using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetGuide.Estimators.Tests;

public sealed class WideRow
{
    public const int Width = 50_000;

    [VectorType(Width)] public VBuffer<float> Features { get; set; }
    public bool Label { get; set; }
}

/// <summary>
/// Wide, sparsely stored feature columns (what FeaturizeText and the one-hot encoders write) train from their non-zeros:
/// the rows are held as non-zeros, batches are sparse, the MLP's first layer multiplies them as they are; scoring and
/// the plain zip see the same network.
/// </summary>
public sealed class SparseInputTests
{
    /// <summary>50 non-zeros of 50,000 a row; positive when the row's values on the 20 signal columns sum above 0.</summary>
    internal static List<WideRow> Rows(int n, int seed, int nonZeros = 50)
    {
        var rng = new Random(seed);
        var rows = new List<WideRow>();
        for (int i = 0; i < n; i++)
        {
            var columns = new SortedSet<int>();
            while (columns.Count < nonZeros - 5) columns.Add(rng.Next(20, WideRow.Width));
            while (columns.Count < nonZeros) columns.Add(rng.Next(0, 20));
            var indices = columns.ToArray();
            var values = indices.Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
            float signal = indices.Zip(values).Where(p => p.First < 20).Sum(p => p.Second);
            rows.Add(new WideRow { Features = new VBuffer<float>(WideRow.Width, indices.Length, values, indices), Label = signal > 0 });
        }
        return rows;
    }

    [Theory]
    [InlineData("mlp")]
    [InlineData("feature-bag")] // fastText's bag: sparse gradients, lazy Adam
    public void AWideSparseColumnTrainsFromItsNonZerosAndThePlainZipScoresAlike(string architecture)
    {
        var ml = new MLContext(seed: 1);
        var log = new List<string>();
        ml.Log += (_, e) => { if (e.Message.Contains("non-zeros", StringComparison.Ordinal)) log.Add(e.Message); };
        var train = ml.Data.LoadFromEnumerable(Rows(800, seed: 1));
        var test = ml.Data.LoadFromEnumerable(Rows(200, seed: 2));
        using var model = ml.BinaryClassification.Trainers.NeuralNetwork(new BinaryNeuralNetworkOptions
        {
            Architecture = architecture == "mlp" ? NetworkArchitecture.Mlp(16) : NetworkArchitecture.FeatureBag(16), Epochs = 15, BatchSize = 32, Optimizer = OptimizerKind.Adam, LearningRate = architecture == "mlp" ? 0.01 : 0.001, Seed = 1,
        }).Fit(train);
        // 800 rows x 50 non-zeros x 8 bytes = 0.3 MB held, where dense rows would take 800 x 50,000 x 4 = 153 MB.
        Assert.Contains(log, m => m.Contains("as 40,000 non-zeros", StringComparison.Ordinal) && m.Contains("dense rows would take 153 MB", StringComparison.Ordinal));
        var metrics = ml.BinaryClassification.Evaluate(model.Transform(test));
        Assert.True(metrics.Accuracy >= 0.85, $"accuracy {metrics.Accuracy:P1} on held-out rows");

        var path = Path.Combine(Directory.CreateTempSubdirectory("mlnetguide-sparse-").FullName, "model.zip");
        try
        {
            ml.Model.Save(model, train.Schema, path);
            var plain = ml.Model.Load(path, out _);
            var ours = ml.Data.CreateEnumerable<BinaryOut>(model.Transform(test), false).ToList();
            var theirs = ml.Data.CreateEnumerable<BinaryOut>(plain.Transform(test), false).ToList();
            for (int i = 0; i < ours.Count; i++)
            {
                Assert.Equal(ours[i].PredictedLabel, theirs[i].PredictedLabel);
                Assert.True(Math.Abs(ours[i].Score - theirs[i].Score) <= 1e-4 * Math.Max(1, Math.Abs(ours[i].Score)), $"row {i}: {ours[i].Score} vs {theirs[i].Score}");
            }
            (plain as IDisposable)?.Dispose();
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        }
    }

    [Fact]
    public void ScoringReadsTheNonZerosAndARowWithNaNGetsNaNWithoutTouchingItsBatch()
    {
        // Scoring hands the feature bag sparse batches too (a batch of 512 dense rows would be 100 MB here). A NaN in one
        // row makes that row's outputs NaN; every other row of its batch scores as it does without it.
        var ml = new MLContext(seed: 1);
        var rows = Rows(300, seed: 4);
        using var model = ml.BinaryClassification.Trainers.NeuralNetwork(new BinaryNeuralNetworkOptions
        {
            Architecture = NetworkArchitecture.FeatureBag(4), Epochs = 2, BatchSize = 64, Optimizer = OptimizerKind.Adam, LearningRate = 0.01, Seed = 1,
        }).Fit(ml.Data.LoadFromEnumerable(rows));
        Assert.True(model.Scorer.SparseInput);
        var clean = ml.Data.CreateEnumerable<BinaryOut>(model.Transform(ml.Data.LoadFromEnumerable(rows)), false).ToList();
        var poisoned = rows.Select(r => new WideRow { Features = r.Features, Label = r.Label }).ToList();
        var values = poisoned[7].Features.GetValues().ToArray();
        values[3] = float.NaN;
        poisoned[7].Features = new VBuffer<float>(WideRow.Width, values.Length, values, poisoned[7].Features.GetIndices().ToArray());
        var scored = ml.Data.CreateEnumerable<BinaryOut>(model.Transform(ml.Data.LoadFromEnumerable(poisoned)), false).ToList();
        Assert.True(float.IsNaN(scored[7].Score));
        for (int i = 0; i < rows.Count; i++)
            if (i != 7) Assert.Equal(clean[i].Score, scored[i].Score);
        Assert.Contains(clean, r => r.Score != clean[0].Score); // the rows are told apart: their non-zeros reached the bag
    }

    [Fact]
    public void OverInMemoryLimitMBTheRowsStreamByTheirNonZerosAndTrainTheSameNetwork()
    {
        // 300 rows of 500 non-zeros: 1.2 MB held sparse. A 1 MB limit stops the sparse pass midway (the rest counted in the
        // same pass, SkipRow reading them), and batches stream as sparse batches, as with no limit; all three train one network.
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(Rows(300, seed: 3, nonZeros: 500));
        var held = new List<string>();
        ml.Log += (_, e) => { if (e.Message.Contains("Training mlp(8)", StringComparison.Ordinal)) held.Add(e.Message); };
        float[] Scores(int limit)
        {
            using var model = ml.BinaryClassification.Trainers.NeuralNetwork(new BinaryNeuralNetworkOptions
            {
                Architecture = NetworkArchitecture.Mlp(8), Epochs = 2, BatchSize = 300, Seed = 1, InMemoryLimitMB = limit, // one batch: no order to differ
                NonFiniteFeatures = NonFiniteFeaturePolicy.SkipRow,
            }).Fit(train);
            return ml.Data.CreateEnumerable<BinaryOut>(model.Transform(train), false).Select(r => r.Score).ToArray();
        }
        var (inMemory, overLimit, none) = (Scores(1024), Scores(1), Scores(0));
        Assert.Contains("as 150,000 non-zeros", held[0]);
        Assert.Contains("streamed from the data view every epoch", held[1]);
        Assert.Contains("streamed from the data view every epoch", held[2]);
        for (int i = 0; i < inMemory.Length; i++)
        {
            Assert.True(Math.Abs(inMemory[i] - none[i]) <= 1e-4 * Math.Max(1, Math.Abs(none[i])), $"row {i}: sparse {inMemory[i]}, dense {none[i]}");
            Assert.Equal(none[i], overLimit[i]);
        }
        // What streams is sparse: the batches of a view over the limit are COO tensors holding the rows' non-zeros only,
        // shuffled (a view that shuffles itself) or in a window (one that cannot) alike.
        foreach (var view in new[] { train, ml.Data.Cache(train) })
        {
            using var source = new DataViewBatchSource(view, new BinaryNeuralNetworkOptions { Architecture = NetworkArchitecture.Mlp(8), BatchSize = 128, InMemoryLimitMB = 0 }, seed: 1);
            source.Prepare(0);
            Assert.False(source.InMemory);
            var batches = source.Train(epoch: 0).ToList();
            Assert.All(batches, b => Assert.True(b.X.is_sparse));
            Assert.Equal(300 * 500, batches.Sum(b => { using var dense = b.X.to_dense(); using var count = dense.count_nonzero(); return count.item<long>(); }));
            Assert.Equal(300, batches.Sum(b => b.X.shape[0]));
            foreach (var b in batches) b.Dispose();
        }
    }
}
