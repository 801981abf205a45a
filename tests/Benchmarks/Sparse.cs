using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Estimators;
using MlNetGuide.Tests.Shared;

namespace MlNetGuide.Benchmarks;

/// <summary>
/// Issue #26's sparse-input row (<c>--sparse</c>; printed, nothing written): one wide, sparse column (ML.NET's
/// FeaturizeText and one-hot encodings write such vectors) trained by the same 8-unit MLP three ways: the sparse path
/// (rows held by their non-zeros, sparse batches), the sparse path streaming (InMemoryLimitMB = 0: the rows read by
/// their non-zeros from the view every epoch), and the dense path (the same MLP registered as a module of one's own,
/// which the estimator feeds dense rows: in memory under InMemoryLimitMB, else streamed). Each side runs in a process
/// of its own (<c>--sparse-worker</c>), so that its peak resident memory (VmHWM) is its own; the sides alternate. A fourth
/// side trains the feature bag (d = 8: sparse input and sparse gradients, lazy Adam); then lazy Adam's step alone, fused
/// against tensor ops.
/// </summary>
internal static class Sparse
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    private const int Rows = 2_000, Epochs = 2;

    public static void RunAll(Action<string> log, bool quick)
    {
        int rounds = quick ? 1 : 3;
        foreach (var (width, nonZeros) in new[] { (100_000, 100), (1_000_000, 1_000) })
        {
            log($"Sparse input (issue #26): {Rows:N0} rows of a {width:N0}-wide column, {nonZeros:N0} non-zeros a row ({100.0 * nonZeros / width:G2} %), MLP 8, {Epochs} epochs, batch 256");
            var ratios = new List<double>();
            for (int r = 0; r < rounds; r++)
            {
                var sparse = Worker("sparse", width, nonZeros);
                var streamed = Worker("streamed", width, nonZeros);
                var dense = Worker("dense", width, nonZeros);
                var bag = Worker("feature-bag", width, nonZeros);
                ratios.Add(dense.epochSeconds / sparse.epochSeconds);
                log($"| round {r + 1} | sparse {sparse.epochSeconds:F2} s/epoch, peak {sparse.peakMb:N0} MB | sparse streamed {streamed.epochSeconds:F2} s/epoch, peak {streamed.peakMb:N0} MB " +
                    $"| dense {dense.epochSeconds:F2} s/epoch, peak {dense.peakMb:N0} MB | dense/sparse time {ratios[^1]:F1}x " +
                    $"| feature bag 8 (sparse gradients) {bag.epochSeconds:F2} s/epoch, peak {bag.peakMb:N0} MB |");
            }
            ratios.Sort();
            log($"| median dense/sparse time per epoch | {ratios[ratios.Count / 2]:F1}x | dense rows would hold {(double)Rows * width * 4 / (1 << 20):N0} MB (in memory under the 1,024 MB limit, else streamed); the non-zeros {(double)Rows * nonZeros * 8 / (1 << 20):N0} MB |");
        }
        LazyAdamSteps(log, rounds);
    }

    /// <summary>
    /// Lazy Adam's step for a row-sparse gradient, the fused CPU loop (FusedSparseAdam) against the tensor ops it
    /// replaces on the CPU (and which other devices run), alternating round by round in this process: a 524,288 × d
    /// feature bag's weight (2¹⁹ hashed n-grams) and the gradient of 128 rows of 1,000 non-zeros each.
    /// </summary>
    private static void LazyAdamSteps(Action<string> log, int rounds)
    {
        const int Width = 524_288, Batch = 128, PerRow = 1_000, Steps = 20;
        foreach (int d in new[] { 4, 16 })
        {
            log($"Lazy Adam step (issue #26): a {Width:N0} × {d} weight, gradients of {Batch} rows × {PerRow:N0} non-zeros (rows repeat), {Steps} steps a side a round");
            var ratios = new List<double>();
            for (int r = 0; r < rounds; r++)
            {
                double fused = StepMilliseconds(fuse: true), tensors = StepMilliseconds(fuse: false);
                ratios.Add(tensors / fused);
                log($"| round {r + 1} | fused {fused:F2} ms/step | tensor ops {tensors:F2} ms/step | tensor/fused {ratios[^1]:F1}x |");
            }
            ratios.Sort();
            log($"| median tensor/fused time per step | {ratios[ratios.Count / 2]:F1}x |");

            double StepMilliseconds(bool fuse)
            {
                using var scope = TorchSharp.torch.NewDisposeScope();
                var generator = new TorchSharp.torch.Generator(7);
                var weight = new TorchSharp.Modules.Parameter(TorchSharp.torch.randn(Width, d, generator: generator));
                using var adam = new MlNetGuide.Training.Adam([weight], lr: 0.01) { FuseSparseOnCpu = fuse };
                // Hashed n-grams are skewed: a row index drawn as the square of a uniform makes low rows common, as frequent n-grams are.
                using var u = TorchSharp.torch.rand(Steps + 1, Batch * PerRow, generator: generator);
                using var rows = u.mul(u).mul_(Width).to_type(TorchSharp.torch.ScalarType.Int64);
                using var values = TorchSharp.torch.randn(Batch * PerRow, d, generator: generator);
                var clock = new Stopwatch();
                for (int step = 0; step <= Steps; step++) // step 0 warms up (allocates the moments)
                {
                    using var stepScope = TorchSharp.torch.NewDisposeScope();
                    weight.grad = TorchSharp.torch.sparse_coo_tensor(rows[step].unsqueeze(0), values, [Width, d]);
                    if (step == 1) clock.Start();
                    adam.step();
                    adam.zero_grad();
                }
                return clock.Elapsed.TotalMilliseconds / Steps;
            }
        }
    }

    private static (double epochSeconds, long peakMb) Worker(string mode, int width, int nonZeros)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { typeof(Sparse).Assembly.Location, "--sparse-worker", mode, width.ToString(Inv), nonZeros.ToString(Inv) }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var lines = p.StandardOutput.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"sparse worker {mode} exited {p.ExitCode}");
        var result = lines.Single(l => l.StartsWith("result ", StringComparison.Ordinal)).Split(' ');
        return (double.Parse(result[1], Inv), long.Parse(result[2], Inv) / 1024);
    }

    /// <summary>One side: builds the rows, fits (timed), prints "result &lt;seconds per epoch&gt; &lt;VmHWM kB&gt;".</summary>
    public static int Worker(string[] args)
    {
        var (mode, width, nonZeros) = (args[0], int.Parse(args[1], Inv), int.Parse(args[2], Inv));
        var ml = new MLContext(seed: 1);
        var data = WideRows.View(ml, WideRows.Generate(Rows, width, nonZeros), width);
        // The dense side: the same MLP as a registered module, which the estimator does not feed sparse batches.
        var architecture = mode == "feature-bag" ? NetworkArchitecture.FeatureBag(8) : mode == "dense"
            ? NetworkArchitecture.Custom("benchmark-dense-mlp", r => TorchSharp.torch.nn.Sequential(
                TorchSharp.torch.nn.Linear(r.Inputs, 8), TorchSharp.torch.nn.ReLU(), TorchSharp.torch.nn.Linear(8, r.Outputs)))
            : NetworkArchitecture.Mlp(8);
        var options = new BinaryNeuralNetworkOptions
        {
            Architecture = architecture, Epochs = Epochs, BatchSize = 256, Optimizer = OptimizerKind.Adam, LearningRate = 0.01, Seed = 1,
            InMemoryLimitMB = mode == "streamed" ? 0 : 1024, // 0: the rows stream from the view every epoch
        };
        _ = data.GetColumn<bool>(nameof(WideRow.Label)).Count(); // fill the cache before the clock starts
        var clock = Stopwatch.StartNew();
        using var model = ml.BinaryClassification.Trainers.NeuralNetwork(options).Fit(data);
        double seconds = clock.Elapsed.TotalSeconds / Epochs;
        var hwm = File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        Console.WriteLine($"result {seconds.ToString("R", Inv)} {hwm.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1]}");
        return 0;
    }
}
