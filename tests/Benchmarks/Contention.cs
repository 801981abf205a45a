using System.Diagnostics;

namespace MlNetGuide.Benchmarks;

/// <summary>
/// A fit alone and the same fit beside CPU-bound neighbours (one busy shell loop per logical core: another job on the
/// machine), alternated, with whatever thread settings the process has (the defaults unless the environment sets
/// OMP_NUM_THREADS or OMP_WAIT_POLICY). The slowdown is the median of the per-pair ratios.
/// </summary>
internal static class Contention
{
    public static (double alone, double beside, double ratio) Run(Action fit, Action<string> log, int pairs = 5)
    {
        fit(); // warm-up
        var alone = new List<double>();
        var beside = new List<double>();
        var ratios = new List<double>();
        for (int i = 0; i < pairs; i++)
        {
            var a = Time(fit);
            double b;
            using (Neighbours.Start(Environment.ProcessorCount)) b = Time(fit);
            alone.Add(a);
            beside.Add(b);
            ratios.Add(b / a);
            log($"  pair {i + 1}: alone {a:F2} s, beside {Environment.ProcessorCount} busy loops {b:F2} s ({b / a:F2}x)");
        }
        var result = (Harness.Median(alone), Harness.Median(beside), Harness.Median(ratios));
        log($"Contention: a fit alone {result.Item1:F2} s, beside {Environment.ProcessorCount} CPU-bound neighbours {result.Item2:F2} s: {result.Item3:F2}x " +
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
