using System.Diagnostics;

namespace MlNetGuide.Benchmarks;

/// <summary>
/// A fit alone and the same fit beside CPU-bound neighbours (one busy shell loop per logical core: another job on the
/// machine), alternated, with whatever thread settings the process has (the defaults unless the environment sets
/// OMP_NUM_THREADS or OMP_WAIT_POLICY). The slowdown is the median of the per-pair ratios.
/// </summary>
internal static class Contention
{
    /// <summary>
    /// A small tabular fit, the kind that suffered most (ML.NET's bike-sharing sample: 12 columns, batches of 32, Adam):
    /// 16,384 synthetic rows, MLP 64-64, 2 epochs; alone and beside one and two busy loops per logical core.
    /// </summary>
    public static void RunAll(Action<string> log)
    {
        var ml = new Microsoft.ML.MLContext(seed: 1);
        var rng = new Random(3);
        var rows = Enumerable.Range(0, 16384).Select(_ =>
        {
            var f = Enumerable.Range(0, 12).Select(_ => (float)rng.NextDouble()).ToArray();
            return new TabularRow { Features = f, Label = f.Take(6).Sum() - f.Skip(6).Sum() };
        }).ToList();
        var data = ml.Data.LoadFromEnumerable(rows);
        void Fit()
        {
            using var model = MlNetGuide.Estimators.NeuralNetworkCatalog.NeuralNetwork(ml.Regression.Trainers, new MlNetGuide.Estimators.RegressionNeuralNetworkOptions
            {
                Architecture = MlNetGuide.Estimators.NetworkArchitecture.Mlp(64, 64), Epochs = 2, BatchSize = 32,
                Optimizer = MlNetGuide.Estimators.OptimizerKind.Adam, LearningRate = 0.001,
            }).Fit(data);
        }
        foreach (int perCore in new[] { 1, 2 })
            Run(Fit, log, neighbours: perCore * Environment.ProcessorCount);

        // A wider one, where two threads pay off on a quiet machine: 784 features, MLP 256, batches of 64, SGD.
        var wide = ml.Data.LoadFromEnumerable(Enumerable.Range(0, 8192).Select(_ => new WideRow
        {
            Features = Enumerable.Range(0, 784).Select(_ => (float)rng.NextDouble()).ToArray(), Label = (float)rng.NextDouble(),
        }).ToList());
        void FitWide()
        {
            using var model = MlNetGuide.Estimators.NeuralNetworkCatalog.NeuralNetwork(ml.Regression.Trainers, new MlNetGuide.Estimators.RegressionNeuralNetworkOptions
            {
                Architecture = MlNetGuide.Estimators.NetworkArchitecture.Mlp(256), Epochs = 2, BatchSize = 64, LearningRate = 0.01,
            }).Fit(wide);
        }
        Run(FitWide, log, neighbours: 2 * Environment.ProcessorCount);
    }

    public sealed class WideRow
    {
        [Microsoft.ML.Data.VectorType(784)] public float[] Features { get; set; } = [];
        public float Label { get; set; }
    }

    public sealed class TabularRow
    {
        [Microsoft.ML.Data.VectorType(12)] public float[] Features { get; set; } = [];
        public float Label { get; set; }
    }

    public static (double alone, double beside, double ratio) Run(Action fit, Action<string> log, int neighbours, int pairs = 3)
    {
        fit(); // warm-up
        var alone = new List<double>();
        var beside = new List<double>();
        var ratios = new List<double>();
        for (int i = 0; i < pairs; i++)
        {
            var a = Time(fit);
            double b;
            using (Neighbours.Start(neighbours)) b = Time(fit);
            alone.Add(a);
            beside.Add(b);
            ratios.Add(b / a);
            log($"  pair {i + 1}: alone {a:F2} s, beside {neighbours} busy loops {b:F2} s ({b / a:F2}x)");
        }
        var result = (Harness.Median(alone), Harness.Median(beside), Harness.Median(ratios));
        log($"Contention: a fit alone {result.Item1:F2} s, beside {neighbours} CPU-bound neighbours {result.Item2:F2} s: {result.Item3:F2}x " +
            $"(OMP_NUM_THREADS={Environment.GetEnvironmentVariable("OMP_NUM_THREADS") ?? "unset"}, OMP_WAIT_POLICY={Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") ?? "unset"}, torch threads {TorchSharp.torch.get_num_threads()})");
        return result;
    }

    private static double Time(Action a)
    {
        var w = Stopwatch.StartNew();
        a();
        return w.Elapsed.TotalSeconds;
    }

    /// <summary>Busy shell loops, killed on Dispose.</summary>
    private sealed class Neighbours : IDisposable
    {
        private readonly List<Process> _loops = [];

        public static Neighbours Start(int count)
        {
            var n = new Neighbours();
            for (int i = 0; i < count; i++)
                n._loops.Add(Process.Start(new ProcessStartInfo("/bin/sh", ["-c", "while :; do :; done"]) { UseShellExecute = false })!);
            Thread.Sleep(200); // let them reach the run queue
            return n;
        }

        public void Dispose()
        {
            foreach (var p in _loops)
            {
                p.Kill();
                p.WaitForExit();
                p.Dispose();
            }
        }
    }
}
