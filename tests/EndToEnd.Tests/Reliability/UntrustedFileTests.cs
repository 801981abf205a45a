using System.Globalization;
using Microsoft.ML;
using MlNetGuide.Estimators;
using MlNetGuide.Tests.Shared;
using Xunit.Abstractions;

namespace MlNetGuide.EndToEnd.Tests.Reliability;

/// <summary>A legitimate multiclass model zip the crafted files start from (built once per test run).</summary>
public sealed class BaseModelFixture : IDisposable
{
    public BaseModelFixture()
    {
        Directory.CreateDirectory(Folder);
        var ml = new MLContext(seed: 1);
        var data = Fixtures.Keyed(ml, Fixtures.Rows(200));
        using var model = Fixtures.Train(ml, data, epochs: 1);
        NeuralModel.Save(ml, model, data.Schema, ModelPath);
    }

    public string Folder { get; } = Path.Combine(Path.GetTempPath(), $"mlnetguide-untrusted-{Guid.NewGuid():N}");

    public string ModelPath => Path.Combine(Folder, "base.zip");

    public void Dispose() => Directory.Delete(Folder, recursive: true);
}

/// <summary>
/// Crafted files that try to make a loader allocate far more than the file justifies. Each is loaded in a child
/// process, which must refuse it with <see cref="Modules.ModelFormatException"/> while its peak resident memory
/// (VmHWM) stays under 300 MB.
/// </summary>
public sealed class UntrustedFileTests(BaseModelFixture fixture, ITestOutputHelper output) : IClassFixture<BaseModelFixture>
{
    private const long PeakLimitKb = 300 * 1024;

    public static TheoryData<string> ModelAttacks => new(CraftedModelFiles.All.Select(a => a.Name));

    [Theory]
    [MemberData(nameof(ModelAttacks))]
    public void CraftedModelZipIsRefusedWithBoundedMemory(string name)
    {
        var (_, build, mentions) = CraftedModelFiles.All.Single(a => a.Name == name);
        var path = Path.Combine(fixture.Folder, name + ".zip");
        build(fixture.ModelPath, path);
        var (outcome, peakKb) = LoadInChild("model", path);
        output.WriteLine($"{name}: {new FileInfo(path).Length:N0} bytes on disk; {outcome}; peak {peakKb / 1024} MB");
        Assert.StartsWith("refused ModelFormatException", outcome);
        Assert.Contains(mentions, outcome);
        Assert.True(peakKb < PeakLimitKb, $"peak resident memory {peakKb / 1024} MB while refusing {name}");
    }

    /// <summary>PyTorch-format attacks (tests/Shared/CraftedPyTorchFiles.cs), loaded as a tensor dict and as a state dict.</summary>
    public static readonly (string Name, Action<string> Build, string Mentions)[] PyTorchAttacks =
    [
        ("pth-storage-bomb", CraftedPyTorchFiles.StorageBomb, "budget"),
        ("pth-shape-2^32", p => CraftedPyTorchFiles.HugeShape(p, 1L << 32), "has 6 elements"),
        ("pth-shape-2^34", p => CraftedPyTorchFiles.HugeShape(p, 1L << 34), "has 6 elements"),
        ("pth-stride-0-2^34", p => CraftedPyTorchFiles.BroadcastBomb(p, 1L << 34), "budget"),
        ("pth-billion-dups", p => CraftedPyTorchFiles.DupBomb(p, 1_000_000_000), "data.pkl"),
        ("pth-lying-entry-length", p => CraftedPyTorchFiles.LyingEntryLength(p, 1L << 30), "CRC"),
    ];

    public static TheoryData<string, string> PyTorchCases
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (var (name, _, _) in PyTorchAttacks)
                foreach (var kind in new[] { "tensors", "state-dict" })
                    data.Add(name, kind);
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(PyTorchCases))]
    public void CraftedPyTorchFileIsRefusedWithBoundedMemory(string name, string kind)
    {
        var (_, build, mentions) = PyTorchAttacks.Single(a => a.Name == name);
        var path = Path.Combine(fixture.Folder, $"{name}-{kind}.pth");
        build(path);
        var (outcome, peakKb) = LoadInChild(kind, path);
        output.WriteLine($"{name} as {kind}: {new FileInfo(path).Length:N0} bytes on disk; {outcome}; peak {peakKb / 1024} MB");
        Assert.StartsWith("refused ModelFormatException", outcome);
        Assert.Contains(mentions, outcome);
        Assert.True(peakKb < PeakLimitKb, $"peak resident memory {peakKb / 1024} MB while refusing {name}");
    }

    [Fact]
    public void TheLegitimateBaseModelLoadsInTheSameProbe()
    {
        var (outcome, peakKb) = LoadInChild("model", fixture.ModelPath);
        output.WriteLine($"base model: {outcome}; peak {peakKb / 1024} MB");
        Assert.Equal("loaded", outcome);
    }

    internal static (string outcome, long peakKb) LoadInChild(string kind, string path)
    {
        var lines = ChildProcess.RunProbe("load-untrusted", kind, path).Split('\n', StringSplitOptions.TrimEntries);
        var peak = lines.Single(l => l.StartsWith("vmhwm ", StringComparison.Ordinal));
        return (lines[0], long.Parse(peak["vmhwm ".Length..], CultureInfo.InvariantCulture));
    }
}
