using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using static TorchSharp.torch;

namespace MlNetGuide.Benchmarks;

/// <summary>
/// PyTorch as the peer: one long-lived Python worker (<c>pytorch_peer.py</c>, copied beside the benchmark) that trains
/// the same 784-256-10 MLP on the same digits when asked over stdin, so that its runs interleave with ours, round by
/// round, without an interpreter start between them. The data goes to the worker as raw files in a temp folder.
/// </summary>
internal sealed class PyTorchPeer : IDisposable
{
    private readonly Process _process;
    private readonly string _dataDir;
    private readonly Queue<string> _stderr = new();

    private PyTorchPeer(Process process, string dataDir, string python)
    {
        (_process, _dataDir, Python) = (process, dataDir, python);
        _process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not { } line) return;
            lock (_stderr)
            {
                _stderr.Enqueue(line);
                if (_stderr.Count > 20) _stderr.Dequeue();
            }
        };
        _process.BeginErrorReadLine();
    }

    public string Python { get; }
    public string TorchVersion { get; private set; } = "?";
    public int Threads { get; private set; } = -1;
    public string Blas { get; private set; } = "?";

    /// <summary>Reads the worker's first line, "ready torch=1.13.1 threads=2 blas=...": null when it is ready, else why not.</summary>
    private string? Handshake()
    {
        var first = ReadLine(TimeSpan.FromSeconds(120));
        if (first is null || !first.StartsWith("ready ", StringComparison.Ordinal)) return first ?? LastError() ?? "no answer";
        var fields = first.Split(' ', 4).Skip(1).Select(f => f.Split('=', 2)).Where(kv => kv.Length == 2).ToDictionary(kv => kv[0], kv => kv[1]);
        TorchVersion = fields.GetValueOrDefault("torch", "?");
        Threads = int.TryParse(fields.GetValueOrDefault("threads"), out var t) ? t : -1;
        Blas = fields.GetValueOrDefault("blas", "?");
        return null;
    }

    /// <summary>
    /// Starts the worker with the first Python that imports torch: $MLNETGUIDE_PYTHON, /usr/bin/python3 (Debian's
    /// python3-torch), then python3 on the PATH. Null, with the reason, when none does.
    /// </summary>
    public static PyTorchPeer? TryStart(Tensor x, Tensor y, int threads, out string whyNot)
    {
        string script = Path.Combine(AppContext.BaseDirectory, "pytorch_peer.py");
        if (!File.Exists(script)) { whyNot = $"{script} is missing"; return null; }
        string dir = Directory.CreateTempSubdirectory("mlnetguide-pytorch-peer-").FullName;
        using (var xs = x.contiguous())
            File.WriteAllBytes(Path.Combine(dir, "x.f32"), MemoryMarshal.AsBytes(xs.data<float>().ToArray().AsSpan()).ToArray());
        using (var ys = y.to_type(ScalarType.Int64))
            File.WriteAllBytes(Path.Combine(dir, "y.i64"), MemoryMarshal.AsBytes(ys.data<long>().ToArray().AsSpan()).ToArray());
        var tried = new List<string>();
        var candidates = new[] { Environment.GetEnvironmentVariable("MLNETGUIDE_PYTHON"), "/usr/bin/python3", "python3" }
            .Where(c => !string.IsNullOrEmpty(c)).Distinct();
        foreach (var python in candidates)
        {
            var info = new ProcessStartInfo(python!)
            {
                RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            };
            foreach (var a in new[] { script, dir, x.shape[0].ToString(CultureInfo.InvariantCulture), x.shape[1].ToString(CultureInfo.InvariantCulture), threads.ToString(CultureInfo.InvariantCulture) })
                info.ArgumentList.Add(a);
            info.Environment["OMP_NUM_THREADS"] = threads.ToString(CultureInfo.InvariantCulture); // OpenBLAS (OpenMP build) as torch
            info.Environment["PYTHONDONTWRITEBYTECODE"] = "1";
            Process process;
            try { process = Process.Start(info)!; }
            catch (System.ComponentModel.Win32Exception e) { tried.Add($"{python}: {e.Message}"); continue; }
            var peer = new PyTorchPeer(process, dir, python!);
            if (peer.Handshake() is not { } failure)
            {
                whyNot = "";
                return peer;
            }
            tried.Add($"{python}: {failure}");
            peer.Kill();
        }
        Directory.Delete(dir, recursive: true);
        whyNot = "no Python with PyTorch found (" + string.Join("; ", tried) + "); on Debian: sudo apt-get install python3-torch";
        return null;
    }

    /// <summary>Seconds the worker took for <paramref name="epochs"/> epochs of its <paramref name="kind"/> loop ("hand" or "loader").</summary>
    public double Run(string kind, int batch, int epochs, int hidden = 256) => Ask($"run {kind} {batch} {epochs} {hidden}");

    /// <summary>Seconds for <paramref name="reps"/> 1024³ float32 matmuls in PyTorch.</summary>
    public double Sgemm(int reps) => Ask($"sgemm {reps}");

    private double Ask(string command)
    {
        _process.StandardInput.WriteLine(command);
        _process.StandardInput.Flush();
        var answer = ReadLine(TimeSpan.FromMinutes(5)) ?? throw new InvalidOperationException($"The PyTorch worker did not answer '{command}': {LastError() ?? "it exited"}");
        if (!answer.StartsWith("ok ", StringComparison.Ordinal))
            throw new InvalidOperationException($"The PyTorch worker answered '{command}' with: {answer}");
        return double.Parse(answer.AsSpan(3), CultureInfo.InvariantCulture);
    }

    private string? ReadLine(TimeSpan timeout)
    {
        try { return _process.StandardOutput.ReadLineAsync().WaitAsync(timeout).GetAwaiter().GetResult(); }
        catch (TimeoutException) { return null; }
    }

    private string? LastError()
    {
        lock (_stderr) return _stderr.Count == 0 ? null : _stderr.Last();
    }

    private void Kill()
    {
        try { if (!_process.HasExited) _process.Kill(); } catch (InvalidOperationException) { }
        _process.Dispose();
    }

    public void Dispose()
    {
        try
        {
            _process.StandardInput.WriteLine("quit");
            _process.StandardInput.Flush();
            _process.WaitForExit(5000);
        }
        catch (IOException) { }
        Kill();
        try { Directory.Delete(_dataDir, recursive: true); } catch (IOException) { }
    }

    // ------------------------------------------------------------------------------------------------- the section

    public static readonly int[] BatchSizes = [32, 64, 128, 256, 512];
    public const string OursHand = "ours: hand-written TorchSharp loop";
    public const string OursTrainer = "ours: Trainer.Fit";
    public const string OursEstimator = "ours: estimator Fit";
    public const string TorchHand = "PyTorch: hand loop";
    public const string TorchLoader = "PyTorch: DataLoader";

    /// <summary>
    /// The section: our three variants and PyTorch's two at every batch size, interleaved round by round (the order
    /// rotated each round), plus both sides' sgemm. Each of our variants is called as (batch size, epochs).
    /// </summary>
    public static Report Compare(Tensor x, Tensor y, Action<int, int> oursHand, Action<int, int> trainerFit, Action<int, int> estimatorFit,
        int epochs, int rounds, Action<string> log)
    {
        int threads = get_num_threads();
        using var peer = TryStart(x, y, threads, out var whyNot);
        if (peer is null)
        {
            log($"  skipped: {whyNot}");
            return new Report(null, whyNot, epochs, rounds, threads, [], 0, 0);
        }
        log($"  {peer.Python}: PyTorch {peer.TorchVersion}, {peer.Threads} thread(s) (TorchSharp {threads}), BLAS {peer.Blas}");

        // sgemm, both sides alternating: 4 multiplications of 1024x1024 float32 matrices per measurement.
        const int gemms = 4;
        const double gemmFlops = gemms * 2.0 * 1024 * 1024 * 1024;
        using var a = randn(1024, 1024);
        using var b = randn(1024, 1024);
        var oursGemm = new List<double>();
        var torchGemm = new List<double>();
        peer.Sgemm(gemms);
        for (int i = 0; i < 5; i++)
        {
            oursGemm.Add(gemmFlops / Harness.Time(() => { for (int k = 0; k < gemms; k++) { using var c = a.matmul(b); } }) / 1e9);
            torchGemm.Add(gemmFlops / peer.Sgemm(gemms) / 1e9);
        }
        double oursSgemm = Harness.Median(oursGemm), torchSgemm = Harness.Median(torchGemm);
        log($"  sgemm 1024^3: TorchSharp {oursSgemm:F1} GFLOP/s, PyTorch {torchSgemm:F1} GFLOP/s");

        (string name, Func<int, int, double> run)[] variants =
        [
            (OursHand, (bs, ep) => Harness.Time(() => oursHand(bs, ep))),
            (OursTrainer, (bs, ep) => Harness.Time(() => trainerFit(bs, ep))),
            (OursEstimator, (bs, ep) => Harness.Time(() => estimatorFit(bs, ep))),
            (TorchHand, (bs, ep) => peer.Run("hand", bs, ep)),
            (TorchLoader, (bs, ep) => peer.Run("loader", bs, ep)),
        ];
        // Warm-up: one epoch of each at each batch size (.NET's tiered JIT, PyTorch's first-call caches).
        foreach (var bs in BatchSizes)
            foreach (var (_, run) in variants) run(bs, 1);
        var times = BatchSizes.ToDictionary(bs => bs, _ => variants.ToDictionary(v => v.name, _ => new List<double>()));
        var clock = Stopwatch.StartNew();
        for (int r = 0; r < rounds; r++)
        {
            foreach (var bs in BatchSizes)
                for (int i = 0; i < variants.Length; i++)
                {
                    var (name, run) = variants[(i + r) % variants.Length];
                    times[bs][name].Add(run(bs, epochs) / epochs);
                }
            log($"  round {r + 1}/{rounds} ({clock.Elapsed.TotalSeconds:F0} s)");
        }
        var rows = BatchSizes.Select(bs => new Row(bs, times[bs])).ToList();
        foreach (var row in rows)
            log($"  batch {row.BatchSize,3}: s/epoch ours hand {row.Seconds(OursHand):F3}, Trainer {row.Seconds(OursTrainer):F3}, estimator {row.Seconds(OursEstimator):F3}, " +
                $"PyTorch hand {row.Seconds(TorchHand):F3}, DataLoader {row.Seconds(TorchLoader):F3}; Trainer/PT hand {row.Ratio(OursTrainer, TorchHand):F2}, " +
                $"estimator/PT hand {row.Ratio(OursEstimator, TorchHand):F2}, Trainer/DataLoader {row.Ratio(OursTrainer, TorchLoader):F2}, estimator/DataLoader {row.Ratio(OursEstimator, TorchLoader):F2}");
        return new Report(peer, "", epochs, rounds, threads, rows, oursSgemm, torchSgemm);
    }

    /// <summary>One batch size: seconds per epoch of every variant, per round.</summary>
    public sealed record Row(int BatchSize, Dictionary<string, List<double>> Times)
    {
        public double Seconds(string variant) => Harness.Median(Times[variant]);

        /// <summary>The median of the per-round ratios variant / baseline.</summary>
        public double Ratio(string variant, string baseline) => Harness.PairedRatio(Times, variant, baseline);
    }

    /// <summary>What the section measured, as the JSON entry and the markdown section of docs/benchmarks.md.</summary>
    public sealed class Report(PyTorchPeer? peer, string whyNot, int epochs, int rounds, int threads, List<Row> rows, double oursSgemm, double torchSgemm)
    {
        private readonly string _python = peer?.Python ?? "", _torch = peer?.TorchVersion ?? "", _blas = peer?.Blas ?? "";
        private readonly int _torchThreads = peer?.Threads ?? 0;

        public bool Available => rows.Count > 0;

        public object Json => !Available
            ? new { available = false, reason = whyNot }
            : new
            {
                available = true, python = _python, pytorch = _torch, pytorch_threads = _torchThreads, torchsharp_threads = threads, pytorch_blas = _blas,
                epochs_per_run = epochs, rounds,
                sgemm_gflops = new { torchsharp = oursSgemm, pytorch = torchSgemm },
                by_batch_size = rows.Select(r => (object)new
                {
                    batch_size = r.BatchSize,
                    seconds_per_epoch = new
                    {
                        ours_hand_loop = r.Seconds(OursHand), trainer = r.Seconds(OursTrainer), estimator = r.Seconds(OursEstimator),
                        pytorch_hand_loop = r.Seconds(TorchHand), pytorch_dataloader = r.Seconds(TorchLoader),
                    },
                    ratio_to_pytorch_hand_loop = new { ours_hand_loop = r.Ratio(OursHand, TorchHand), trainer = r.Ratio(OursTrainer, TorchHand), estimator = r.Ratio(OursEstimator, TorchHand) },
                    ratio_to_pytorch_dataloader = new { ours_hand_loop = r.Ratio(OursHand, TorchLoader), trainer = r.Ratio(OursTrainer, TorchLoader), estimator = r.Ratio(OursEstimator, TorchLoader) },
                    raw_seconds_per_epoch = r.Times,
                }).ToList(),
            };

        public string Markdown()
        {
            var md = new StringBuilder();
            md.AppendLine("## PyTorch as the peer").AppendLine();
            if (!Available)
            {
                md.AppendLine($"Skipped in this run: {whyNot}.").AppendLine();
                return md.ToString();
            }
            md.AppendLine($"The same MLP (784-256-10, `nn.Linear`'s default init, SGD lr 0.1, cross-entropy) on the same 8,000 digits, trained by");
            md.AppendLine($"PyTorch {_torch} (`{_python}`, {_torchThreads} thread(s), as TorchSharp's {threads}; BLAS: {_blas}) in one long-lived worker");
            md.AppendLine("process (`tests/Benchmarks/pytorch_peer.py`), the two ways a PyTorch user writes it: a hand loop (`randperm` + `index_select` per");
            md.AppendLine("batch) and `DataLoader(TensorDataset, shuffle=True)`. Ours: the hand-written TorchSharp loop, `Trainer.Fit` (TensorDataModule)");
            md.AppendLine($"and the estimator's `Fit` (cached IDataView, setup included). Each run is {epochs} epoch(s) from a fresh model; {rounds} rounds,");
            md.AppendLine("every batch size and variant once per round (the order rotated each round); figures are medians, ratios the medians of the per-round ratios.").AppendLine();
            md.AppendLine($"sgemm (1024³ float32, alternating): TorchSharp's libtorch **{oursSgemm:F1} GFLOP/s**, PyTorch **{torchSgemm:F1} GFLOP/s**.").AppendLine();
            md.AppendLine("| batch | ours: hand loop | ours: `Trainer.Fit` | ours: estimator `Fit` | PyTorch: hand loop | PyTorch: DataLoader |");
            md.AppendLine("| ---: | ---: | ---: | ---: | ---: | ---: |");
            foreach (var r in rows)
                md.AppendLine($"| {r.BatchSize} | {r.Seconds(OursHand):F3} | {r.Seconds(OursTrainer):F3} | {r.Seconds(OursEstimator):F3} | {r.Seconds(TorchHand):F3} | {r.Seconds(TorchLoader):F3} |");
            md.AppendLine().AppendLine("Seconds per epoch. Ratios (ours / PyTorch; targets: `Trainer.Fit` and the estimator ≤ 1.00 × the PyTorch hand loop and ≤ 0.70 × the");
            md.AppendLine("DataLoader loop at every batch size; a ratio that misses its target is marked ✗):").AppendLine();
            md.AppendLine("| batch | hand loop / PT hand | `Trainer.Fit` / PT hand | estimator / PT hand | `Trainer.Fit` / PT DataLoader | estimator / PT DataLoader |");
            md.AppendLine("| ---: | ---: | ---: | ---: | ---: | ---: |");
            static string Mark(double ratio, double target) => ratio <= target ? $"{ratio:F2}" : $"{ratio:F2} ✗";
            foreach (var r in rows)
                md.AppendLine($"| {r.BatchSize} | {r.Ratio(OursHand, TorchHand):F2} | {Mark(r.Ratio(OursTrainer, TorchHand), 1.0)} | {Mark(r.Ratio(OursEstimator, TorchHand), 1.0)} | " +
                              $"{Mark(r.Ratio(OursTrainer, TorchLoader), 0.7)} | {Mark(r.Ratio(OursEstimator, TorchLoader), 0.7)} |");
            md.AppendLine();
            return md.ToString();
        }
    }
}
