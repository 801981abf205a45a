using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Estimators;
using MlNetGuide.Modules;
using MlNetGuide.Samples.SpamFilter;
using static TorchSharp.torch;

namespace MlNetGuide.Benchmarks;

/// <summary>
/// Issue #26's figures (<c>--text</c>; printed, nothing written): the padding of the estimator's token batches with and
/// without length bucketing, and training tokens per second of our BiLSTM and Transformer encoder against PyTorch 1.13
/// running the same architectures (the interop tests' mirrors) on the same padded batches, same loop (Adam, lr 1e-3),
/// same threads, alternating round by round. The batches are the SpamFilter sample's emails, tokenized as it does.
/// </summary>
internal static class TextPeer
{
    private const int MaxTokens = 400, BatchSize = 64, Vocabulary = 20_000;

    public static void RunAll(Action<string> log, bool quick)
    {
        var inv = CultureInfo.InvariantCulture;
        var ml = new MLContext(seed: 1);
        var emails = SpamData.Read(ml, SpamData.DefaultPath());
        var data = ml.Data.LoadFromEnumerable(emails);
        var tokens = ml.Transforms.Text.NormalizeText("Normalized", nameof(Email.Text), keepPunctuations: false, keepNumbers: false)
            .Append(ml.Transforms.Text.TokenizeIntoWords("Tokens", "Normalized"))
            .Append(ml.Transforms.Conversion.MapValueToKey("Tokens", maximumNumberOfKeys: Vocabulary)).Fit(data).Transform(data);
        var keys = tokens.GetColumn<VBuffer<uint>>("Tokens").ToList();
        var labels = tokens.GetColumn<bool>(nameof(Email.Label)).Select(l => l ? 1L : 0L).ToArray();
        int n = keys.Count, vocabulary = Vocabulary + 1;
        var slots = new float[n * MaxTokens];
        for (int r = 0; r < n; r++)
        {
            var values = keys[r].DenseValues().Take(MaxTokens).ToArray();
            for (int t = 0; t < values.Length; t++) slots[r * MaxTokens + t] = values[t];
        }
        using var x = tensor(slots, [n, MaxTokens]);
        using var y = tensor(labels);
        var buckets = new LengthBuckets([x, y], BatchSize, seed: 1);
        var bucketed = buckets.Order(epoch: 0);
        double with = buckets.PaddingFraction(bucketed), without = buckets.PaddingFraction(buckets.Order(epoch: 0, bucket: false));
        var lengths = LengthBuckets.Lengths(x);
        long realTokens = lengths.Sum(l => (long)l);
        log($"Text (issue #26): {n:N0} emails, words cut at {MaxTokens}, {realTokens:N0} tokens, vocabulary {Vocabulary:N0} + padding, batches of {BatchSize}");
        log($"| padding in an epoch's batches (each cut to its longest row) | shuffled: {without:P1} | length-bucketed (the estimator's): {with:P1} |");

        // The bucketed batches as int64 ids, cut to their longest rows: what TokenIdsInput hands the modules.
        var batches = bucketed.Select(rows =>
        {
            int longest = Math.Max(1, rows.Max(i => lengths[i]));
            using var index = tensor(rows.Select(i => (long)i).ToArray());
            using var picked = x.index_select(0, index);
            using var cut = picked.narrow(1, 0, longest);
            return (Ids: cut.to_type(ScalarType.Int64).contiguous().DetachFromDisposeScope(), Labels: y.index_select(0, index).DetachFromDisposeScope());
        }).ToList();
        var dir = Directory.CreateTempSubdirectory("mlnetguide-text-bench-").FullName;
        try
        {
            using (var idsFile = File.Create(Path.Combine(dir, "ids.i64")))
            using (var labelsFile = File.Create(Path.Combine(dir, "labels.i64")))
            {
                foreach (var (ids, ls) in batches)
                {
                    idsFile.Write(ids.bytes);
                    labelsFile.Write(ls.bytes);
                }
            }
            File.WriteAllLines(Path.Combine(dir, "shapes.txt"), batches.Select(b => $"{b.Ids.shape[0]} {b.Ids.shape[1]}"));
            int threads = get_num_threads(), rounds = quick ? 1 : 3;
            foreach (var arch in new[] { "bilstm", "transformer" })
            {
                var ratios = new List<double>();
                var ours = new List<double>();
                var theirs = new List<double>();
                for (int round = 0; round < rounds; round++)
                {
                    ours.Add(OursEpoch(arch, vocabulary, batches));
                    theirs.Add(PyTorchEpoch(arch, vocabulary, dir, threads));
                    ratios.Add(theirs[^1] / ours[^1]); // tokens/s ours ÷ tokens/s theirs
                }
                double oursRate = realTokens / Harness.Median(ours), theirRate = realTokens / Harness.Median(theirs);
                log($"| {arch} | ours {oursRate:N0} tokens/s ({Harness.Median(ours):F2} s an epoch) | PyTorch {theirRate:N0} tokens/s ({Harness.Median(theirs):F2} s) | ours / PyTorch: {Harness.Median(ratios):F2} (rounds: {string.Join(", ", ratios.Select(r => r.ToString("F2", inv)))}) |");
            }
        }
        finally
        {
            foreach (var (ids, ls) in batches) { ids.Dispose(); ls.Dispose(); }
            Directory.Delete(dir, recursive: true);
        }
    }

    private static double OursEpoch(string arch, int vocabulary, List<(Tensor Ids, Tensor Labels)> batches)
    {
        manual_seed(1);
        using nn.Module<Tensor, Tensor> net = arch == "bilstm"
            ? new BiRnnEncoder(vocabulary, 2, RecurrentCell.Lstm, 64, 64, 1)
            : new TransformerTextEncoder(vocabulary, 2, 64, 4, 128, 1, 0.1);
        using var opt = new MlNetGuide.Training.Adam(net.parameters(), 1e-3);
        net.train();
        var watch = Stopwatch.StartNew();
        foreach (var (ids, labels) in batches)
        {
            using var scope = NewDisposeScope();
            var loss = nn.functional.cross_entropy(net.call(ids), labels);
            opt.zero_grad();
            loss.backward();
            opt.step();
        }
        return watch.Elapsed.TotalSeconds;
    }

    /// <summary>tests/EndToEnd.Tests/Interop (the PyTorch mirrors), found above the binary: the command may run from anywhere.</summary>
    private static string InteropDirectory()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (Path.Combine(d.FullName, "tests", "EndToEnd.Tests", "Interop") is var interop && File.Exists(Path.Combine(interop, "pytorch_interop.py")))
                return interop;
        throw new DirectoryNotFoundException($"tests/EndToEnd.Tests/Interop/pytorch_interop.py is not above {AppContext.BaseDirectory}: run the benchmark from a clone of the repository.");
    }

    private static double PyTorchEpoch(string arch, int vocabulary, string dir, int threads)
    {
        string python = File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
        var psi = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "text_peer.py"), InteropDirectory(),
                     dir, arch, vocabulary.ToString(CultureInfo.InvariantCulture), threads.ToString(CultureInfo.InvariantCulture) })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        var line = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit();
        if (p.ExitCode != 0 || !line.StartsWith("ok ", StringComparison.Ordinal))
            throw new InvalidOperationException($"text_peer.py {arch} exited {p.ExitCode}: {line} {stderr.Result}");
        return double.Parse(line[3..], CultureInfo.InvariantCulture);
    }
}
