using System.Diagnostics;

namespace MlNetGuide.Benchmarks;

/// <summary>
/// A small timing harness: warm-up runs, then repetitions whose median (and p99) are reported. Competing variants are
/// run interleaved (A, B, C, A, B, C, …) so that machine noise hits them alike; ratios are taken between medians of the
/// same run. (BenchmarkDotNet measures one method per process; these comparisons need one process and one run.)
/// </summary>
internal static class Harness
{
    public static int Repetitions = 5;

    /// <summary>Seconds per call of each variant, interleaved in rounds.</summary>
    public static Dictionary<string, List<double>> Interleaved(int warmup, params (string name, Action run)[] variants) =>
        Interleaved(warmup, Repetitions, variants);

    /// <summary>Seconds per call of each variant, interleaved, <paramref name="repetitions"/> times.</summary>
    public static Dictionary<string, List<double>> Interleaved(int warmup, int repetitions, params (string name, Action run)[] variants)
    {
        for (int w = 0; w < warmup; w++)
            foreach (var (_, run) in variants) run();
        var times = variants.ToDictionary(v => v.name, _ => new List<double>());
        for (int r = 0; r < repetitions; r++)
            for (int i = 0; i < variants.Length; i++)
            {
                var (name, run) = variants[(i + r) % variants.Length]; // rotate the order each round: no variant always runs first
                times[name].Add(Time(run));
            }
        return times;
    }

    /// <summary>
    /// As <see cref="Interleaved(int, int, (string, Action)[])"/>, warming up in rounds until at least
    /// <paramref name="warmup"/> has passed: .NET runs new code unoptimized (tier 0) and recompiles what stays hot after
    /// roughly 100 ms of calls, so short runs need a warm-up measured in time, not in calls, to reach the steady state.
    /// </summary>
    public static Dictionary<string, List<double>> Interleaved(TimeSpan warmup, int repetitions, params (string name, Action run)[] variants)
    {
        var clock = Stopwatch.StartNew();
        do
            foreach (var (_, run) in variants) run();
        while (clock.Elapsed < warmup);
        return Interleaved(0, repetitions, variants);
    }

    public static List<double> Repeat(int warmup, int reps, Action run)
    {
        for (int w = 0; w < warmup; w++) run();
        return Enumerable.Range(0, reps).Select(_ => Time(run)).ToList();
    }

    public static double Time(Action run)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var sw = Stopwatch.StartNew();
        run();
        return sw.Elapsed.TotalSeconds;
    }

    public static double Median(IEnumerable<double> xs)
    {
        var s = xs.OrderBy(x => x).ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }

    /// <summary>
    /// The median over repetitions of <paramref name="variant"/>'s time divided by <paramref name="baseline"/>'s in the
    /// same repetition: the pair ran back to back, so a slow spell of the machine hits both sides of each ratio.
    /// </summary>
    public static double PairedRatio(Dictionary<string, List<double>> times, string variant, string baseline) =>
        Median(Ratios(times, variant, baseline));

    /// <summary>The per-round ratios of <paramref name="variant"/> to <paramref name="baseline"/>.</summary>
    public static List<double> Ratios(Dictionary<string, List<double>> times, string variant, string baseline) =>
        times[variant].Zip(times[baseline], (v, b) => v / b).ToList();

    /// <summary>"q1–q3": the interquartile range of the per-round ratios, to show how much one run can tell.</summary>
    public static string Spread(Dictionary<string, List<double>> times, string variant, string baseline, string format = "F3")
    {
        var r = Ratios(times, variant, baseline);
        return $"{Percentile(r, 0.25).ToString(format, System.Globalization.CultureInfo.InvariantCulture)}–{Percentile(r, 0.75).ToString(format, System.Globalization.CultureInfo.InvariantCulture)}";
    }

    public static double Percentile(IEnumerable<double> xs, double p)
    {
        var s = xs.OrderBy(x => x).ToArray();
        return s[Math.Clamp((int)Math.Ceiling(p * s.Length) - 1, 0, s.Length - 1)];
    }
}
