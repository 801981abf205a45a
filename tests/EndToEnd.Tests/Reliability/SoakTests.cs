using Microsoft.ML;
using MlNetGuide.Estimators;
using MlNetGuide.Modules;
using MlNetGuide.Training;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MlNetGuide.EndToEnd.Tests.Reliability;

/// <summary>
/// Many training steps and scoring batches: live tensors return to the baseline after every round and the resident
/// memory stays flat (least-squares slope over the rounds). The default run is short; set MLNETGUIDE_SOAK_ROUNDS
/// (e.g. 100 for ~25,000 steps) for the long soak.
/// </summary>
public sealed class SoakTests(ITestOutputHelper output)
{
    [Fact]
    public void TrainingAndScoringLeaveNoTensorsBehindAndMemoryStaysFlat()
    {
        int rounds = int.TryParse(Environment.GetEnvironmentVariable("MLNETGUIDE_SOAK_ROUNDS"), out var r) && r >= 4 ? r : 8;
        const int epochsPerRound = 2;
        using var g = new Generator(3);
        using var x = randn(new long[] { 4096, 64 }, generator: g);
        using var y = randint(10, new long[] { 4096 }, generator: g);
        using var model = new Classifier(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)), lr: 0.05);
        var ml = new MLContext(seed: 1);
        var data = Fixtures.Keyed(ml, Fixtures.Rows(4096));
        using var scorer = Fixtures.Train(ml, data, epochs: 1);
        var scored = scorer.Transform(data);

        void Round()
        {
            using (var dm = new TensorDataModule([x, y], 32, seed: 1))
            using (var trainer = new Trainer(epochsPerRound))
                trainer.Fit(model, dm);
            long n = 0;
            foreach (var s in Microsoft.ML.Data.ColumnCursorExtensions.GetColumn<float[]>(scored, "Score")) n += s.Length;
            Assert.Equal(4096 * 2, n);
        }

        static long Rss()
        {
            for (int i = 0; i < 2; i++) { GC.Collect(); GC.WaitForPendingFinalizers(); }
            return Environment.WorkingSet;
        }

        Round(); Round(); // warm up: allocator arenas, JIT, caches
        long baseline = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        var rss = new List<double>();
        for (int i = 0; i < rounds; i++)
        {
            Round();
            Assert.Equal(baseline, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
            rss.Add(Rss() / 1048576.0);
        }
        int stepsPerRound = epochsPerRound * 4096 / 32;
        int batchesPerRound = 4096 / 64;
        double slope = Slope(rss); // MB per round
        double perThousandSteps = slope * 1000 / stepsPerRound;
        output.WriteLine($"{rounds} rounds: {rounds * stepsPerRound} training steps, {rounds * batchesPerRound} scoring batches; live tensors {baseline} at every round end; " +
                         $"RSS {rss[0]:F1} -> {rss[^1]:F1} MB, slope {perThousandSteps:F3} MB per 1,000 steps");
        Assert.True(perThousandSteps < 2.0, $"resident memory grows {perThousandSteps:F2} MB per 1,000 steps: {string.Join(", ", rss.Select(v => v.ToString("F1")))}");
    }

    private static double Slope(IReadOnlyList<double> ys)
    {
        double n = ys.Count, mx = (n - 1) / 2, my = ys.Average();
        double num = 0, den = 0;
        for (int i = 0; i < ys.Count; i++) { num += (i - mx) * (ys[i] - my); den += (i - mx) * (i - mx); }
        return num / den;
    }
}

/// <summary>
/// The estimator's whole cycle, as an ML.NET app repeats it: Fit, Transform (every row read), Dispose. After the
/// cycles (a count, not a time) the live tensors are back where they started; resident memory is printed every 500
/// cycles for the long soak (MLNETGUIDE_SOAK_CYCLES=2000), not asserted: 100 cycles are within its warm-up.
/// </summary>
public sealed class FitCycleSoakTests(ITestOutputHelper output)
{
    [Fact]
    public void FitTransformDisposeCyclesLeaveNoTensorsBehind()
    {
        var ml = new MLContext(seed: 1);
        var data = Fixtures.Keyed(ml, Fixtures.Rows(256));
        var withValidation = new MulticlassNeuralNetworkOptions { Architecture = NetworkArchitecture.Mlp(16), Epochs = 2, BatchSize = 32, ValidationFraction = 0.25 };
        void Cycle(int i)
        {
            using var model = i % 2 == 0 ? Fixtures.Train(ml, data, epochs: 2) : ml.MulticlassClassification.Trainers.NeuralNetwork(withValidation).Fit(data);
            long n = 0;
            foreach (var s in Microsoft.ML.Data.ColumnCursorExtensions.GetColumn<float[]>(model.Transform(data), "Score")) n += s.Length;
            Assert.Equal(256 * 2, n);
        }
        // Tensors created and not disposed on this thread (where Fit and Transform run). Not Tensor.TotalCount: TorchSharp
        // 0.107's Parameter(tensor) moves the handle out of the tensor it wraps, and that tensor is never subtracted, so
        // TotalCount grows by one per parameter ever built (4 per fit here), however carefully everything is disposed.
        static long Live()
        {
            for (int i = 0; i < 2; i++) { GC.Collect(); GC.WaitForPendingFinalizers(); }
            return DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        }

        for (int i = 0; i < 4; i++) Cycle(i); // warm up
        long start = Live();
        long rssStart = Environment.WorkingSet;
        int cycles = int.TryParse(Environment.GetEnvironmentVariable("MLNETGUIDE_SOAK_CYCLES"), out var c) && c > 0 ? c : 100;
        for (int i = 0; i < cycles; i++)
        {
            Cycle(i);
            if ((i + 1) % 500 == 0) output.WriteLine($"after {i + 1} cycles: live {Live() - start:+0;-0}, RSS {(Environment.WorkingSet - rssStart) / 1048576.0:+0.0;-0.0} MB");
        }
        long end = Live();
        output.WriteLine($"{cycles} Fit/Transform/Dispose cycles: live tensors {start} -> {end}; RSS {rssStart / 1048576.0:F0} -> {Environment.WorkingSet / 1048576.0:F0} MB");
        Assert.Equal(start, end);
    }
}
