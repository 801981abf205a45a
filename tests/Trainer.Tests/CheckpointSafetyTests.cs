using System.IO.Compression;
using System.Text.Json.Nodes;
using MlNetGuide.Modules;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Training.Tests;

/// <summary>
/// A crafted checkpoint is refused with <see cref="ModelFormatException"/> before anything is applied, and the refusal
/// leaves the model's weights, the data's shuffle state and the trainer's optimizer bit-identical to before the call.
/// Before these checks, a 10-byte or all-zero generator state aborted the process inside libtorch, and huge header
/// numbers made resume run without end.
/// </summary>
public sealed class CheckpointSafetyTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-ckpt-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static Regressor Model()
    {
        using var g = new Generator(7);
        var net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1));
        using (no_grad())
            foreach (var p in net.parameters()) p.copy_(randn(p.shape, generator: g).mul_(0.5));
        return new Regressor(net, lr: 0.1) { OptimizerFactory = (ps, lr) => new Sgd(ps, lr, momentum: 0.9) };
    }

    private static TensorDataModule Data()
    {
        using var g = new Generator(1);
        var x = randn(new long[] { 64, 3 }, generator: g);
        var y = x.sum(1, keepdim: true).sin();
        return new TensorDataModule([x, y], 16, seed: 3);
    }

    private static byte[] OptimizerState(Trainer trainer)
    {
        using var m = new MemoryStream();
        using (var w = new BinaryWriter(m, System.Text.Encoding.UTF8, leaveOpen: true)) ((OptimizerHelper)trainer.Optim!).save_state_dict(w);
        return m.ToArray();
    }

    private static byte[] Weights(nn.Module model)
    {
        using var m = new MemoryStream();
        StateDict.Save(model, m);
        return m.ToArray();
    }

    /// <summary>Each crafted variant: an entry's bytes replaced (or its header edited).</summary>
    public static TheoryData<string> Variants() =>
    [
        "global.rng: 10 bytes", "global.rng: all zero", "global.rng: left 0", "global.rng: left 624 next 624", "data.rng: 10 bytes", "data.rng: all zero",
        "header: SchedulerSteps int.MaxValue", "header: Epoch -1000000", "header: Epoch 99", "header: history null",
        "header: optimizer type", "optimizer.state: garbage", "optimizer.state: empty", "model.weights: garbage",
        "optimizer.state: another net's shapes", "optimizer.state: a 12 TiB momentum buffer",
    ];

    [Theory]
    [MemberData(nameof(Variants))]
    public void ACraftedCheckpointIsRefusedAndChangesNothing(string variant)
    {
        var path = Path.Combine(_dir, "run.ckpt");
        using var model = Model();
        using var data = Data();
        using var trainer = new Trainer(2) { CheckpointPath = path };
        trainer.Fit(model, data); // two epochs: a checkpoint after each
        var crafted = Path.Combine(_dir, "crafted.ckpt");
        Craft(path, crafted, variant);

        var (weights, optimizer, optimizerState, shuffle) = (Weights(model), trainer.Optim, OptimizerState(trainer), data.SaveRandomState());
        using var globalBefore = random.get_rng_state();
        var ex = Assert.Throws<ModelFormatException>(() => trainer.Fit(model, data, crafted));
        Assert.Contains(crafted, ex.Message);
        Assert.Equal(weights, Weights(model));
        Assert.Same(optimizer, trainer.Optim);
        Assert.Equal(optimizerState, OptimizerState(trainer));
        Assert.Equal(shuffle, data.SaveRandomState());
        using var globalAfter = random.get_rng_state();
        Assert.Equal(globalBefore.bytes.ToArray(), globalAfter.bytes.ToArray());

        // The genuine checkpoint still resumes (nothing about the trainer was spoiled by the refusal).
        trainer.Fit(model, data, path);
    }

    private static void Craft(string from, string to, string variant)
    {
        var entries = new Dictionary<string, byte[]>();
        var file = File.ReadAllBytes(from);
        using (var zip = new ZipArchive(new MemoryStream(file, 0, file.Length - TrailerLength), ZipArchiveMode.Read))
            foreach (var e in zip.Entries)
            {
                using var s = e.Open();
                using var m = new MemoryStream();
                s.CopyTo(m);
                entries[e.FullName] = m.ToArray();
            }
        byte[] Rng(string name, Action<byte[]> edit) { var b = (byte[])entries[name].Clone(); edit(b); return b; }
        void Header(Action<JsonObject> edit)
        {
            var json = JsonNode.Parse(entries["checkpoint.json"])!.AsObject();
            edit(json);
            entries["checkpoint.json"] = System.Text.Encoding.UTF8.GetBytes(json.ToJsonString());
        }
        switch (variant)
        {
            case "global.rng: 10 bytes": entries["global.rng"] = new byte[10]; break;
            case "global.rng: all zero": entries["global.rng"] = new byte[entries["global.rng"].Length]; break;
            case "global.rng: left 0": entries["global.rng"] = Rng("global.rng", b => BitConverter.GetBytes(0).CopyTo(b, 8)); break;
            case "global.rng: left 624 next 624": entries["global.rng"] = Rng("global.rng", b => { BitConverter.GetBytes(624).CopyTo(b, 8); BitConverter.GetBytes(624UL).CopyTo(b, 16); }); break;
            case "data.rng: 10 bytes": entries["data.rng"] = new byte[10]; break;
            case "data.rng: all zero": entries["data.rng"] = new byte[entries["data.rng"].Length]; break;
            case "header: SchedulerSteps int.MaxValue": Header(j => j["SchedulerSteps"] = int.MaxValue); break;
            case "header: Epoch -1000000": Header(j => j["Epoch"] = -1000000); break;
            case "header: Epoch 99": Header(j => j["Epoch"] = 99); break;
            case "header: history null": Header(j => j["History"] = null); break;
            case "header: optimizer type": Header(j => j["Optimizer"] = "MlNetGuide.Training.Adam"); break;
            case "optimizer.state: garbage": entries["optimizer.state"] = Enumerable.Range(0, 64).Select(i => (byte)(i * 37)).ToArray(); break;
            case "optimizer.state: empty": entries["optimizer.state"] = []; break;
            case "optimizer.state: another net's shapes": entries["optimizer.state"] = OtherShapesState(); break;
            case "optimizer.state: a 12 TiB momentum buffer":
                // The first buffer's header: present, float32 (6), rank 2, dims 8 and 3; 8 becomes 2^42 (LEB128).
                var state = entries["optimizer.state"];
                int at = IndexOf(state, [1, 6, 2, 8, 3]);
                Assert.True(at >= 0, "the first momentum buffer's header");
                entries["optimizer.state"] = [.. state[..(at + 3)], 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, .. state[(at + 4)..]];
                break;
            case "model.weights: garbage": entries["model.weights"] = Enumerable.Range(0, 256).Select(i => (byte)(i * 11)).ToArray(); break;
            default: throw new ArgumentException(variant);
        }
        // An attacker recomputes the seal (it detects corruption, not intent), so each check must stand on its own.
        using var buffer = new MemoryStream();
        using (var output = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
            foreach (var (name, bytes) in entries)
                using (var s = output.CreateEntry(name).Open()) s.Write(bytes);
        File.WriteAllBytes(to, Sealed(buffer.ToArray()));
    }

    /// <summary>The optimizer state of a net with as many parameters, of other shapes (Linear(3, 5), Linear(5, 1)).</summary>
    private static byte[] OtherShapesState()
    {
        var net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1));
        using var model = new Regressor(net, lr: 0.1) { OptimizerFactory = (ps, lr) => new Sgd(ps, lr, momentum: 0.9) };
        using var data = Data();
        using var trainer = new Trainer(1);
        trainer.Fit(model, data);
        return OptimizerState(trainer);
    }

    private static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
            if (haystack.AsSpan(i, needle.Length).SequenceEqual(needle)) return i;
        return -1;
    }

    // The checkpoint's seal: "MLNGSHA1" and the SHA-256 of every byte before it.
    private const int TrailerLength = 8 + 32;
    private static byte[] Sealed(byte[] zip) => [.. zip, .. "MLNGSHA1"u8, .. System.Security.Cryptography.SHA256.HashData(zip)];

    /// <summary>The whole checkpoint is sealed: a flipped bit or a cut anywhere is refused before anything is applied.</summary>
    [Fact]
    public void EveryFlippedBitAndEveryTruncationIsRefused()
    {
        var path = Path.Combine(_dir, "run.ckpt");
        using var model = Model();
        using var data = Data();
        using var trainer = new Trainer(2) { CheckpointPath = path };
        trainer.Fit(model, data);
        var bytes = File.ReadAllBytes(path);
        var weights = Weights(model);
        var crafted = Path.Combine(_dir, "crafted.ckpt");
        int refused = 0, tried = 0;
        var accepted = new List<string>();
        // 97 offsets spread over the file (headers, every entry's data, the central directory), and 40 lengths.
        var flips = Enumerable.Range(0, 97).Select(i => (long)i * (bytes.Length - 1) / 96).Distinct();
        var cuts = Enumerable.Range(0, 40).Select(i => (long)i * (bytes.Length - 1) / 40).Distinct();
        foreach (var (offset, cut) in flips.Select(o => (o, false)).Concat(cuts.Select(c => (c, true))))
        {
            var b = cut ? bytes[..(int)offset] : (byte[])bytes.Clone();
            if (!cut) b[offset] ^= 0x10;
            File.WriteAllBytes(crafted, b);
            tried++;
            try { trainer.Fit(model, data, crafted); }
            catch (ModelFormatException) { refused++; continue; }
            accepted.Add($"{(cut ? "cut at" : "flip at")} {offset} of {bytes.Length}");
            Assert.Equal(weights, Weights(model));
        }
        Assert.True(tried == refused, string.Join("; ", accepted));
    }
}
