using Microsoft.ML;
using MlNetGuide.Estimators;
using MlNetGuide.Modules;
using TorchSharp;
using TorchSharp.Modules;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MlNetGuide.EndToEnd.Tests.Reliability;

/// <summary>
/// Truncated and bit-flipped files, seeded: every load either succeeds with identical values or fails with a typed
/// error, leaving the target untouched — no crash, no hang, no partially loaded module.
/// </summary>
public sealed class CorruptFileTests(ITestOutputHelper output) : IDisposable
{
    private const int VariantsPerKind = 120;
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-corrupt-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private static readonly Type[] CleanFailures = [typeof(ModelFormatException), typeof(StateDictMismatchException)];

    private (int identical, int rejected) Torture(string name, byte[] original, Func<string, bool> loadAndCompare, int seed)
    {
        var rng = new Random(seed);
        int identical = 0, rejected = 0;
        for (int v = 0; v < VariantsPerKind; v++)
        {
            var bytes = (byte[])original.Clone();
            string what;
            if (v % 2 == 0)
            {
                int cut = rng.Next(0, bytes.Length);
                bytes = bytes[..cut];
                what = $"truncated to {cut} bytes";
            }
            else
            {
                int flips = 1 + rng.Next(3);
                var positions = Enumerable.Range(0, flips).Select(_ => rng.Next(bytes.Length)).ToArray();
                foreach (var p in positions) bytes[p] ^= (byte)(1 << rng.Next(8));
                what = $"bits flipped at {string.Join(", ", positions)}";
            }
            var path = Path.Combine(_dir, $"{name}-{v}");
            File.WriteAllBytes(path, bytes);
            var attempt = Task.Run(() => loadAndCompare(path));
            Assert.True(Task.WaitAny([attempt], TimeSpan.FromMinutes(10)) == 0, $"{name}: load hung (a hang guard, not a time limit) ({what})");
            if (attempt.IsFaulted)
            {
                var ex = attempt.Exception!.InnerException!;
                Assert.True(CleanFailures.Any(t => t.IsInstanceOfType(ex)), $"{name} {what}: {ex.GetType().Name}: {ex.Message}");
                rejected++;
            }
            else
            {
                Assert.True(attempt.Result, $"{name} {what}: loaded with different values");
                identical++;
            }
            File.Delete(path);
        }
        output.WriteLine($"{name}: {VariantsPerKind} variants, {identical} loaded identical, {rejected} rejected cleanly");
        return (identical, rejected);
    }

    [Theory]
    [InlineData(TensorFileFormat.TorchSharp)]
    [InlineData(TensorFileFormat.PyTorch)]
    [InlineData(TensorFileFormat.Safetensors)]
    public void CorruptStateDictsLoadIdenticallyOrFailCleanlyLeavingTheModuleUntouched(TensorFileFormat format)
    {
        using var source = nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 5));
        var path = Path.Combine(_dir, "good");
        StateDict.Save(source, path, format);
        var expected = StateDict.Get(source).ToDictionary(kv => kv.Key, kv => kv.Value.clone().DetachFromDisposeScope());
        using var target = nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 5));
        var before = StateDict.Get(target).ToDictionary(kv => kv.Key, kv => kv.Value.clone().DetachFromDisposeScope());
        var result = Torture($"state dict ({format})", File.ReadAllBytes(path), p =>
        {
            try
            {
                StateDict.Load(target, p, format);
            }
            catch
            {
                // All or nothing: a failed load leaves every value as it was.
                Assert.All(StateDict.Get(target), kv => Assert.True(kv.Value.equal(before[kv.Key]).all().item<bool>(), $"{kv.Key} was partly loaded"));
                throw;
            }
            bool same = StateDict.Get(target).All(kv => kv.Value.equal(expected[kv.Key]).all().item<bool>());
            StateDict.Load(target, before); // reset for the next variant
            return same;
        }, seed: 100 + (int)format);
        Assert.Equal(VariantsPerKind, result.identical + result.rejected);
        foreach (var t in expected.Values.Concat(before.Values)) t.Dispose();
    }

    [Fact]
    public void CorruptTensorListsLoadIdenticallyOrFailCleanly()
    {
        var tensors = new[] { arange(100, dtype: ScalarType.Float32), tensor(new long[] { 1, 2, 3 }), tensor(2.5f) };
        var path = Path.Combine(_dir, "list");
        TensorIO.SaveList(tensors, path);
        Torture("tensor list (TorchSharp)", File.ReadAllBytes(path), p =>
        {
            var back = TensorIO.LoadList(p);
            bool same = back.Count == tensors.Length && back.Zip(tensors).All(t => t.First.dtype == t.Second.dtype && t.First.equal(t.Second).all().item<bool>());
            foreach (var t in back) t.Dispose();
            return same;
        }, seed: 7);
    }

    [Fact]
    public void CorruptModelZipsLoadIdenticallyOrFailCleanly()
    {
        var ml = new MLContext(seed: 1);
        var data = Fixtures.Keyed(ml, Fixtures.Rows(100));
        using var model = Fixtures.Train(ml, data, epochs: 1);
        var path = Path.Combine(_dir, "model.zip");
        NeuralModel.Save(ml, model, data.Schema, path);
        var expected = Fixtures.Scores(model, data);
        var result = Torture("model zip (NeuralModel)", File.ReadAllBytes(path), p =>
        {
            var loaded = NeuralModel.Load(new MLContext(), p, out _);
            var scores = Fixtures.Scores(loaded, data);
            return scores.Length == expected.Length && scores.Zip(expected).All(s => s.First.AsSpan().SequenceEqual(s.Second));
        }, seed: 11);
        Assert.True(result.rejected > VariantsPerKind / 2);
    }
}
