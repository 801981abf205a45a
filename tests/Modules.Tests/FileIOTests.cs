using System.Globalization;
using System.IO.Compression;
using MlNetGuide.Tests.Shared;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules.Tests;

/// <summary>6.6 File I/O.</summary>
public sealed class FileIOTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-io-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    private static string TestData(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", "pytorch", name);

    public static TheoryData<TensorFileFormat> Formats => new() { TensorFileFormat.TorchSharp, TensorFileFormat.PyTorch, TensorFileFormat.Safetensors };

    private static List<Tensor> Samples() =>
    [
        arange(4, dtype: ScalarType.Float32),
        tensor(new long[] { 1, -2, long.MaxValue, long.MinValue }).reshape(2, 2),
        tensor(3.5f),                                             // 0-d
        empty(new long[] { 0, 3 }),                                // empty
        tensor(-7L),                                               // 0-d int64
        randn(2, 3, 4),
    ];

    [Theory, MemberData(nameof(Formats))]
    public void TensorListAndDictRoundTripExactly(TensorFileFormat format)
    {
        var samples = Samples();
        var path = PathOf("x-file");
        TensorIO.Save(samples[0], path, format);
        using (var x2 = TensorIO.Load(path)) TensorAssert.Equal(samples[0], x2);

        TensorIO.SaveList(samples, PathOf("x-files"), format);
        var list = TensorIO.LoadList(PathOf("x-files"));
        Assert.Equal(samples.Count, list.Count);
        foreach (var (a, b) in samples.Zip(list)) TensorAssert.Equal(a, b);

        var dict = new Dictionary<string, Tensor> { ["x"] = samples[0], ["y"] = samples[1], ["scalar"] = samples[2], ["empty"] = samples[3] };
        TensorIO.SaveDict(dict, PathOf("mydict"), format);
        var back = TensorIO.LoadDict(PathOf("mydict"));
        Assert.Equal(dict.Keys.Order(), back.Keys.Order());
        foreach (var k in dict.Keys) TensorAssert.Equal(dict[k], back[k]);
        foreach (var t in samples.Concat(list).Concat(back.Values)) t.Dispose();
    }

    [Theory, MemberData(nameof(Formats))]
    public void StreamsRoundTripToo(TensorFileFormat format)
    {
        using var x = randn(3, 2);
        using var ms = new MemoryStream();
        TensorIO.Save(x, ms, format);
        ms.Position = 0;
        using var y = TensorIO.Load(ms);
        TensorAssert.Equal(x, y);
    }

    [Theory, MemberData(nameof(Formats))]
    public void CloneLoadsParametersAndComputesTheSameOutput(TensorFileFormat format)
    {
        using var net = new MLP();
        using var x = randn(2, 20);
        using var y = net.call(x);
        StateDict.Save(net, PathOf("mlp.params"), format);
        using var clone = new MLP();
        StateDict.Load(clone, PathOf("mlp.params"));  // also materializes the clone's lazy layers
        clone.eval();
        using var yClone = clone.call(x);
        Assert.True(yClone.equal(y).all().item<bool>());  // Y_clone == Y
    }

    [Fact]
    public void CloneBuiltInAnotherProcessComputesTheSameOutput()
    {
        using var net = ProbeNets.Mlp();
        net.ApplyInit(InitScheme.Xavier.WithSeed(9));
        var path = PathOf("probe.params");
        StateDict.Save(net, path);
        using var x = ProbeNets.Input();
        using var y = net.call(x);
        var expected = string.Join(" ", y.data<float>().ToArray().Select(v => BitConverter.SingleToInt32Bits(v).ToString("x8", CultureInfo.InvariantCulture)));
        Assert.Equal(expected, ChildProcess.RunProbe("mlp-forward", path));
    }

    [Fact]
    public void ReadsPyTorchStateDictWrittenByPyTorch()
    {
        // Sequential(lin1: Linear(5, 1, bias=False), lin2: Linear(1, 2, bias=False)), all weights 1.
        using var net = nn.Sequential(("lin1", nn.Linear(5, 1, hasBias: false)), ("lin2", nn.Linear(1, 2, hasBias: false)));
        StateDict.Load(net, TestData("module_load.pth"));
        using var y = net.call(ones(1, 5));
        Assert.Equal(new float[] { 5, 5 }, TensorAssert.Values(y));
    }

    [Fact]
    public void ReadsSafetensorsWrittenByPyTorch()
    {
        using var net = nn.Sequential(("lin1", nn.Linear(5, 2, hasBias: false)), ("lin2", nn.Linear(2, 2, hasBias: false)));
        StateDict.Load(net, TestData("module_load.safetensors"));
        using var y = net.call(full(1, 5, 11f));
        Assert.Equal(new float[] { 220, 220 }, TensorAssert.Values(y));
    }

    [Theory]
    [InlineData("tensors.pth")]
    [InlineData("tensors.safetensors")]
    public void ReadsInt64TensorsWrittenByPyTorch(string file)
    {
        var dict = TensorIO.LoadDict(TestData(file));
        Assert.Equal(ScalarType.Int64, dict["arr"].dtype);
        Assert.Equal(new long[] { 1, 2, 3, 4, 5, 6 }, dict["arr"].data<long>().ToArray());
        Assert.Equal(new long[] { 2, 3 }, dict["arr_2d"].shape);
        Assert.Equal(new long[] { 1, 2, 3, 4, 5, 6 }, dict["arr_2d"].data<long>().ToArray());
        foreach (var t in dict.Values) t.Dispose();
    }

    [Fact]
    public void ReadsTheChaptersTensorAndListWrittenByPyTorch()
    {
        // Written by PyTorch 1.13.1: torch.save(torch.arange(4), 'x-file.pth'); torch.save([x, torch.zeros(4)], 'x-files.pth').
        // Their pickles hold a bare tensor and a list, not a dict; we read them as keys "0", "1".
        using var x = TensorIO.Load(TestData("x-file.pth"));
        Assert.Equal(ScalarType.Int64, x.dtype);
        Assert.Equal(new long[] { 0, 1, 2, 3 }, x.data<long>().ToArray());
        var list = TensorIO.LoadList(TestData("x-files.pth"));
        Assert.Equal(2, list.Count);
        Assert.Equal(new long[] { 0, 1, 2, 3 }, list[0].data<long>().ToArray());
        Assert.Equal(new float[] { 0, 0, 0, 0 }, list[1].data<float>().ToArray());
        foreach (var t in list) t.Dispose();
    }

    [Fact]
    public void PyTorchFilesWeWriteAreStructurallyValid()
    {
        var shared = nn.Linear(2, 2);
        using var net = nn.Sequential(nn.Linear(3, 2), shared, shared);
        var path = PathOf("net.pth");
        StateDict.Save(net, path, TensorFileFormat.PyTorch);
        using (var zip = ZipFile.OpenRead(path))
        {
            var names = zip.Entries.Select(e => e.FullName).ToList();
            Assert.Contains(names, n => n.EndsWith("/data.pkl", StringComparison.Ordinal));
            Assert.Contains(names, n => n.EndsWith("/version", StringComparison.Ordinal));
            Assert.Contains(names, n => n.Contains("/data/0", StringComparison.Ordinal));
            var pkl = zip.Entries.First(e => e.FullName.EndsWith("/data.pkl", StringComparison.Ordinal));
            using var s = pkl.Open();
            Assert.Equal(0x80, s.ReadByte()); // pickle PROTO opcode
        }
        // PyTorch-style: the tied tensor appears under both names, as torch.save(net.state_dict()) writes it.
        var dict = TensorIO.LoadDict(path);
        try
        {
            Assert.Equal(new[] { "0.bias", "0.weight", "1.bias", "1.weight", "2.bias", "2.weight" }, dict.Keys.Order());
            // Every value is the module's, bit for bit, and the tied pair holds the shared layer's values under both names.
            var first = (Linear)net[0];
            TensorAssert.Equal(first.weight!, dict["0.weight"]);
            TensorAssert.Equal(first.bias!, dict["0.bias"]);
            foreach (var name in new[] { "1", "2" })
            {
                TensorAssert.Equal(shared.weight!, dict[$"{name}.weight"]);
                TensorAssert.Equal(shared.bias!, dict[$"{name}.bias"]);
            }
            using var z = ZipFile.OpenRead(path);
            // The storage entry holds the raw little-endian floats of a tensor (what torch.load maps back), not a re-encoding.
            var storages = z.Entries.Where(e => e.FullName.Contains("/data/", StringComparison.Ordinal)).Select(e => ReadAllBytes(e)).ToList();
            var expectedBytes = first.weight!.contiguous().bytes.ToArray();
            Assert.Contains(storages, b => b.AsSpan().SequenceEqual(expectedBytes));
            var version = z.Entries.First(e => e.FullName.EndsWith("/version", StringComparison.Ordinal));
            Assert.Equal("3", System.Text.Encoding.ASCII.GetString(ReadAllBytes(version)).Trim());
        }
        finally
        {
            foreach (var t in dict.Values) t.Dispose();
        }
    }

    private static byte[] ReadAllBytes(ZipArchiveEntry entry)
    {
        using var s = entry.Open();
        using var m = new MemoryStream();
        s.CopyTo(m);
        return m.ToArray();
    }

    [Fact]
    public void LoadingIntoAnUninitializedLazyNetMaterializesItWithTheSavedShapes()
    {
        using var source = nn.Sequential(new LazyLinear(16), nn.ReLU(), new LazyLinear(3));
        using (var x = rand(2, 7)) source.call(x).Dispose();
        StateDict.Save(source, PathOf("lazy.params"));
        using var target = nn.Sequential(new LazyLinear(16), nn.ReLU(), new LazyLinear(3));
        StateDict.Load(target, PathOf("lazy.params"));
        Assert.Equal(new long[] { 16, 7 }, ((LazyLinear)target[0]).weight.shape);
        TensorAssert.Equal(((LazyLinear)source[2]).weight, ((LazyLinear)target[2]).weight);
    }

    [Fact]
    public void MissingAndUnexpectedKeysAreListedAndNothingIsLoaded()
    {
        using var net = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1));
        var before = TensorAssert.Values(((Linear)net[0]).weight);
        using var w = zeros(2, 3);
        using var extra = zeros(1);
        var ex = Assert.Throws<StateDictMismatchException>(() =>
            StateDict.Load(net, new Dictionary<string, Tensor> { ["0.weight"] = w, ["2.weight"] = extra }));
        Assert.Equal(new[] { "0.bias", "1.weight", "1.bias" }, ex.MissingKeys);
        Assert.Equal(new[] { "2.weight" }, ex.UnexpectedKeys);
        Assert.Contains("missing keys: 0.bias, 1.weight, 1.bias", ex.Message);
        Assert.Equal(before, TensorAssert.Values(((Linear)net[0]).weight)); // all or nothing
    }

    [Fact]
    public void AThousandUnexpectedKeysAreNamedFiveInTheMessageAndAllInTheException()
    {
        using var net = nn.Sequential(nn.Linear(3, 2));
        using var w = zeros(2, 3);
        using var b = zeros(2);
        using var extra = zeros(1);
        var dict = new Dictionary<string, Tensor> { ["0.weight"] = w, ["0.bias"] = b };
        for (int i = 0; i < 1000; i++) dict[$"x{i}"] = extra;
        var ex = Assert.Throws<StateDictMismatchException>(() => StateDict.Load(net, dict));
        Assert.Equal(1000, ex.UnexpectedKeys.Count);
        Assert.Contains("unexpected keys: x0, x1, x10, x100, x101 and 995 more", ex.Message);
        Assert.True(ex.Message.Length < 200, ex.Message);
    }

    [Fact]
    public void ShapeAndDtypeMismatchesNameTheKeyAndBothShapes()
    {
        using var net = nn.Sequential(nn.Linear(3, 2));
        var before = TensorAssert.Values(((Linear)net[0]).bias!);
        using var w = zeros(2, 4);
        using var b = zeros(new long[] { 2 }, dtype: ScalarType.Float64);
        var ex = Assert.Throws<StateDictMismatchException>(() =>
            StateDict.Load(net, new Dictionary<string, Tensor> { ["0.weight"] = w, ["0.bias"] = b }));
        Assert.Contains("'0.weight': expected shape [2, 3], found [2, 4]", ex.Message);
        Assert.Contains("'0.bias': expected dtype Float32, found Float64", ex.Message);
        Assert.Equal(before, TensorAssert.Values(((Linear)net[0]).bias!));
    }

    [Fact]
    public void LazyNetLoadRejectsWrongShapesWithoutMaterializing()
    {
        using var net = nn.Sequential(new LazyLinear(4));
        using var w = zeros(5, 3);
        using var b = zeros(4);
        var ex = Assert.Throws<StateDictMismatchException>(() =>
            StateDict.Load(net, new Dictionary<string, Tensor> { ["0.weight"] = w, ["0.bias"] = b }));
        Assert.Contains("expected shape [4, in_features], found [5, 3]", ex.Message);
        Assert.False(((LazyLinear)net[0]).IsInitialized);
    }

    [Theory, MemberData(nameof(Formats))]
    public void TruncatedFilesFailCleanly(TensorFileFormat format)
    {
        using var net = nn.Sequential(nn.Linear(30, 20), nn.Linear(20, 2));
        var path = PathOf("net.bin");
        StateDict.Save(net, path, format);
        var bytes = File.ReadAllBytes(path);
        var before = TensorAssert.Values(((Linear)net[0]).weight);
        foreach (var cut in new[] { 0, 1, 8, 17, bytes.Length / 3, bytes.Length / 2, bytes.Length - 1 })
        {
            File.WriteAllBytes(path, bytes[..cut]);
            var ex = Assert.Throws<ModelFormatException>(() => StateDict.Load(net, path, format));
            Assert.Contains(path, ex.Message);
        }
        Assert.Equal(before, TensorAssert.Values(((Linear)net[0]).weight));
    }

    [Fact]
    public void MissingFileAndWrongFormatGiveTypedErrors()
    {
        using var net = nn.Sequential(nn.Linear(3, 2));
        Assert.Throws<FileNotFoundException>(() => StateDict.Load(net, PathOf("nope.pth")));
        var text = PathOf("notes.txt");
        File.WriteAllText(text, "this is not a model");
        Assert.Throws<ModelFormatException>(() => StateDict.Load(net, text));
        StateDict.Save(net, PathOf("native.bin"));
        Assert.Throws<ModelFormatException>(() => StateDict.Load(net, PathOf("native.bin"), TensorFileFormat.PyTorch));
        Assert.Throws<ModelFormatException>(() => TensorIO.LoadList(PathOf("native.bin"))); // a dict, not a list
    }

    [Fact]
    public void SavingIsAtomicAndLeavesNoTemporaryFiles()
    {
        var path = PathOf("atomic.bin");
        using var x = ones(3);
        TensorIO.Save(x, path);
        using var y = zeros(3);
        // A save that fails half way (a null tensor in the list) leaves the old file as it was.
        Assert.Throws<ArgumentNullException>(() => TensorIO.SaveList([y, null!], path));
        using (var back = TensorIO.Load(path)) TensorAssert.Equal(x, back);
        TensorIO.Save(y, path);
        using (var back = TensorIO.Load(path)) TensorAssert.Equal(y, back);
        Assert.Equal(new[] { "atomic.bin" }, Directory.GetFiles(_dir).Select(Path.GetFileName));
    }

    [Fact]
    public void TorchSharpsOwnLoaderReadsOurSealedFiles()
    {
        // Our TorchSharp-format files end with a SHA-256 trailer; TorchSharp's module.load stops before it.
        using var net = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1));
        var path = PathOf("sealed.bin");
        StateDict.Save(net, path);
        using var other = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1));
        other.load(path);
        TensorAssert.Equal(((Linear)net[0]).weight, ((Linear)other[0]).weight);
        // And we read files TorchSharp wrote itself (no trailer).
        var plain = PathOf("plain.bin");
        net.save(plain);
        using var third = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1));
        StateDict.Load(third, plain);
        TensorAssert.Equal(((Linear)net[2]).weight, ((Linear)third[2]).weight);
    }

    [Theory, MemberData(nameof(Formats))]
    public void AFlippedBitInOurFilesIsCaughtByTheSeal(TensorFileFormat format)
    {
        using var net = nn.Sequential(nn.Linear(30, 20), nn.Linear(20, 2));
        var path = PathOf("sealed." + format);
        StateDict.Save(net, path, format);
        var bytes = File.ReadAllBytes(path);
        var before = TensorAssert.Values(((Linear)net[0]).weight);
        // Flip a bit inside a weight's bytes where they are stored raw (native, safetensors); PyBridge deflates its
        // zip entries, so there flip a bit in the middle of the file.
        int at = bytes.AsSpan().LastIndexOf(BitConverter.GetBytes(((Linear)net[0]).weight.data<float>()[100]));
        if (format == TensorFileFormat.PyTorch) at = bytes.Length / 2;
        Assert.True(at > 0);
        bytes[at] ^= 0x01;
        File.WriteAllBytes(path, bytes);
        var ex = Assert.Throws<ModelFormatException>(() => StateDict.Load(net, path));
        if (format != TensorFileFormat.PyTorch) Assert.Contains("SHA-256", ex.Message);
        Assert.Equal(before, TensorAssert.Values(((Linear)net[0]).weight));
    }

    [Fact]
    public void KilledSaveLeavesThePreviousFileIntact()
    {
        var path = PathOf("big.bin");
        using var x = arange(10, dtype: ScalarType.Float32);
        TensorIO.Save(x, path);
        using var probe = ChildProcess.StartProbe("slow-save", path, "400");
        Assert.Equal("saving", probe.StandardOutput.ReadLine());
        // Kill it once its temporary file has data in it: the save is then certainly under way.
        ChildProcess.WaitWhileRunning(probe, () => Directory.GetFiles(_dir, ".big.bin.*.tmp").Any(f => new FileInfo(f).Length > 0), "its temporary file had data");
        probe.Kill(entireProcessTree: true);
        probe.WaitForExit();
        using var back = TensorIO.Load(path);
        TensorAssert.Equal(x, back);
    }
}
