using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using MlNetGuide.Samples.Digits;
using MlNetGuide.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Benchmarks;

/// <summary>
/// Issue #25's figures (<c>--distributed</c>; printed, nothing written): allreduce bandwidth on this machine against
/// memcpy's, steps per second of 2 MPI ranks × 1 thread against 1 process × 2 threads on the digits MLP, and a model of
/// scaling to k machines from measured step times and gradient sizes. The MPI side runs as workers of this same program
/// under <c>mpirun</c> (<c>--mpi-worker</c>).
/// </summary>
internal static class Distributed
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static void RunAll(Action<string> log, bool quick)
    {
        log("Distributed (issue #25): one machine, 2 logical cores, Open MPI on loopback");
        // memcpy: the most any transport between two processes of one box can move per second.
        foreach (int mb in new[] { 4, 64 })
        {
            double gbs = MemcpyGBs(mb << 20);
            log($"| memcpy {mb} MB | {gbs:F2} GB/s |");
        }
        foreach (var (name, mca) in new[] { ("shared memory", Array.Empty<string>()), ("tcp (loopback)", new[] { "--mca", "btl", "self,tcp" }) })
            foreach (var line in Mpi(2, mca, "allreduce")) log($"| allreduce over {name}: {line} |");

        int rounds = quick ? 1 : 5;
        foreach (int batch in new[] { 256, 1024 })
        {
            var ratios = new List<double>();
            for (int r = 0; r < rounds; r++)
            {
                var one = Parse(Single("steps", batch.ToString(Inv), "2"));
                var two = Parse(Mpi(2, [], "steps", batch.ToString(Inv), "1").Single(l => l.StartsWith('{')));
                ratios.Add(two.StepsPerSecond / one.StepsPerSecond);
                log($"batch {batch} round {r + 1}: 1 process x 2 threads {one.StepsPerSecond:F1} steps/s; 2 ranks x 1 thread {two.StepsPerSecond:F1} steps/s " +
                    $"(allreduce of the {two.GradientFloats:N0}-float gradient {two.AllreduceMicroseconds:F0} us of a {1e6 / two.StepsPerSecond:F0} us step) -> ratio {ratios[^1]:F2}");
            }
            log($"| batch {batch} | 2 ranks x 1 thread / 1 process x 2 threads: median {Harness.Median(ratios):F2} (rounds: {string.Join(", ", ratios.Select(x => x.ToString("F2", Inv)))}) |");
        }

        // Scaling model: per-rank batch fixed (weak scaling), ring allreduce, no overlap and with overlap.
        log("Step times for the scaling model (1 process, 1 thread, per-rank batch):");
        var nets = new (string Name, Func<nn.Module<Tensor, Tensor>> Build, long[] Input, int Batch)[]
        {
            ("digits MLP 784-256-10", () => nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)), [784], 256),
            ("LeNet (D2L 7.6)", () => new MlNetGuide.Modules.LeNet(), [784], 256),
            ("MLP 784-2048-2048-2048-10 (10 M)", () => nn.Sequential(nn.Linear(784, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10)), [784], 256),
        };
        set_num_threads(1);
        foreach (var (name, build, input, batch) in nets)
        {
            var (seconds, parameters) = StepSeconds(build, input, batch, quick ? 3 : 8);
            log($"| {name} | {parameters:N0} parameters ({parameters * 4 / 1e6:F2} MB of gradient) | {seconds * 1e3:F1} ms a step at batch {batch} |");
            foreach (double gbit in new[] { 10.0, 25.0, 100.0 })
                log($"|   {gbit:F0} Gb/s | {Scaling(seconds, parameters * 4.0, gbit)} |");
        }
    }

    /// <summary>The first k (2…4096) whose efficiency drops below 90 %, without and with overlap, and the efficiency at k = 8 and 64.</summary>
    private static string Scaling(double computeSeconds, double gradientBytes, double gbitPerSecond)
    {
        const double latency = 30e-6; // per ring hop over TCP on Ethernet (an assumption; RDMA is ~2-5 us)
        double bandwidth = gbitPerSecond * 1e9 / 8;
        double Allreduce(int k) => 2.0 * (k - 1) / k * gradientBytes / bandwidth + 2.0 * (k - 1) * latency;
        double Plain(int k) => computeSeconds / (computeSeconds + Allreduce(k));
        // Buckets reduced while backward still runs (DDP's overlap) hide communication up to backward's time (~2/3 of a step).
        double Overlapped(int k) => computeSeconds / (computeSeconds + Math.Max(0, Allreduce(k) - computeSeconds * 2 / 3));
        string Below(Func<int, double> efficiency)
        {
            for (int k = 2; k <= 4096; k++) if (efficiency(k) < 0.9) return $"k = {k}";
            return "not up to 4096";
        }
        return $"allreduce {Allreduce(8) * 1e3:F2} ms at k = 8 | below 90 %: {Below(Plain)} (with overlap: {Below(Overlapped)}) | efficiency k = 8: {Plain(8):P0} ({Overlapped(8):P0}), k = 64: {Plain(64):P0} ({Overlapped(64):P0})";
    }

    private static (double Seconds, long Parameters) StepSeconds(Func<nn.Module<Tensor, Tensor>> build, long[] input, int batch, int steps)
    {
        using var net = build();
        using var x = randn([batch, .. input]);
        using (no_grad()) net.call(x).Dispose(); // a dry run: lazy layers (LeNet's) take their shapes
        long parameters = net.parameters().Sum(p => p.numel());
        using var opt = new Sgd(net.parameters(), 0.01);
        using var y = randint(10, [batch]);
        var times = new List<double>();
        for (int i = 0; i < steps + 1; i++)
        {
            var watch = Stopwatch.StartNew();
            using (var scope = NewDisposeScope())
            {
                opt.zero_grad();
                nn.functional.cross_entropy(net.call(x), y).backward();
                opt.step();
            }
            if (i > 0) times.Add(watch.Elapsed.TotalSeconds);
        }
        return (Harness.Median(times), parameters);
    }

    private static double MemcpyGBs(int bytes)
    {
        var from = new byte[bytes];
        var to = new byte[bytes];
        Random.Shared.NextBytes(from);
        var times = Harness.Repeat(2, 10, () => from.AsSpan().CopyTo(to));
        return bytes / Harness.Median(times) / 1e9;
    }

    private sealed record StepRate(double StepsPerSecond, int GradientFloats, double AllreduceMicroseconds);

    private static StepRate Parse(string json) => JsonSerializer.Deserialize<StepRate>(json)!;

    private static string Self => Path.Combine(AppContext.BaseDirectory, "MlNetGuide.Benchmarks.dll");

    private static string Single(params string[] worker)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { Self, "--mpi-worker" }.Concat(worker)) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var lines = Clean(p.StandardOutput.ReadToEnd());
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"worker {string.Join(' ', worker)} exited {p.ExitCode}");
        return lines.Single(l => l.StartsWith('{'));
    }

    // .NET's console may write a terminal's keypad-mode escape (ESC [?1h ESC =) before a rank's first line.
    private static string[] Clean(string output) =>
        System.Text.RegularExpressions.Regex.Replace(output, "\u001b(\\[\\?[0-9;]*[a-zA-Z]|[=>])", "").Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Trim()).ToArray();

    private static string[] Mpi(int ranks, string[] mca, params string[] worker)
    {
        var psi = new ProcessStartInfo("mpirun") { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { "--allow-run-as-root", "--oversubscribe", "--timeout", "900", "-np", ranks.ToString(Inv) }.Concat(mca).Concat(["dotnet", Self, "--mpi-worker"]).Concat(worker))
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var lines = Clean(p.StandardOutput.ReadToEnd());
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"mpirun {string.Join(' ', worker)} exited {p.ExitCode}");
        return lines;
    }

    /// <summary>A worker: "allreduce" (bandwidth) or "steps batch threads" (digits MLP steps per second); rank 0 prints.</summary>
    public static int Worker(string[] args)
    {
        var ranks = Collectives.For(Distribution.Auto);
        if (args[0] == "allreduce")
        {
            foreach (int floats in new[] { 1 << 18, 1 << 20, 1 << 24 })
            {
                var buffer = new float[floats];
                var times = new List<double>();
                for (int i = 0; i < 12; i++)
                {
                    ranks.Barrier();
                    var watch = Stopwatch.StartNew();
                    ranks.AllReduceSum(buffer);
                    if (i >= 2) times.Add(watch.Elapsed.TotalSeconds);
                }
                double seconds = Harness.Median(ranks.Gather(Harness.Median(times)));
                if (ranks.Rank == 0) Console.WriteLine($"{floats * 4 / 1e6:F1} MB in {seconds * 1e3:F2} ms: {floats * 4 / seconds / 1e9:F2} GB/s");
            }
            return 0;
        }
        int batch = int.Parse(args[1], Inv), threads = int.Parse(args[2], Inv);
        set_num_threads(threads);
        var digits = DigitsData.Read(DigitsData.DefaultPath()).Take(8000).Where((_, i) => i % ranks.Size == ranks.Rank).ToList();
        using var x = tensor(digits.SelectMany(d => d.Pixels.Select(p => p / 255f)).ToArray(), [digits.Count, 784]);
        using var y = tensor(digits.Select(d => (long)d.Label).ToArray());
        using var data = new TensorDataModule([x, y], batch / ranks.Size, seed: 1);
        manual_seed(1);
        using var model = new Classifier(() => nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)), lr: 0.1) { DrawsBoard = false };
        using var trainer = new Trainer(4) { Ranks = ranks };
        var epochs = new List<double>();
        trainer.EpochCompleted += m => epochs.Add(m.Elapsed.TotalSeconds);
        trainer.Fit(model, data);
        double stepsPerSecond = trainer.NumTrainBatches / Harness.Median(epochs.Skip(1));
        // The collective alone, at the gradient's size: what a step adds with several ranks.
        int gradient = (int)model.Net.parameters().Sum(p => p.numel());
        var buffer2 = new float[gradient];
        var reduce = new List<double>();
        for (int i = 0; i < 30; i++)
        {
            var watch = Stopwatch.StartNew();
            ranks.AllReduceSum(buffer2);
            reduce.Add(watch.Elapsed.TotalSeconds);
        }
        if (ranks.Rank == 0)
            Console.WriteLine(JsonSerializer.Serialize(new StepRate(stepsPerSecond, gradient, ranks.Size > 1 ? Harness.Median(reduce.Skip(5)) * 1e6 : 0)));
        return 0;
    }
}
