using MlNetGuide.Tests.Shared;
using TorchSharp;
using static MlNetGuide.Tests.Shared.CraftedPyTorchFiles;
using static TorchSharp.torch;

namespace MlNetGuide.Modules.Tests;

/// <summary>The big hostile files, built once (each is about 1 MB on disk and never inflated by the tests).</summary>
public sealed class BombFiles : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-bombs-").FullName;

    public BombFiles()
    {
        StorageBomb(StorageBombPath);
        DupBomb(DupBombPath, 1_000_000_000);
        LyingEntryLength(LyingEntryPath, 256L << 20);
    }

    public string StorageBombPath => Path.Combine(_dir, "storage-bomb.pth");
    public string DupBombPath => Path.Combine(_dir, "dup-bomb.pth");
    public string LyingEntryPath => Path.Combine(_dir, "lying-entry.pth");

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

/// <summary>
/// PyTorch files are untrusted input: every size a file declares is checked against its entries and the
/// <see cref="LoadLimits"/> budget before a tensor is allocated, and the pickle inside is evaluated without executing
/// anything. Each hostile file is refused by both <see cref="TensorIO"/> and <see cref="StateDict"/>.
/// </summary>
public sealed class PyTorchFileLimitsTests(BombFiles bombs) : IClassFixture<BombFiles>, IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-pth-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    private static string TestData(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", "pytorch", name);

    /// <summary>Both loaders refuse the file with the same typed error, and nothing is left allocated.</summary>
    private static string Refused(string path, LoadLimits? limits = null)
    {
        long live = TensorAssert.LiveTensors;
        var ex = Assert.Throws<ModelFormatException>(() => TensorIO.LoadDict(path, limits: limits));
        Assert.Equal(live, TensorAssert.LiveTensors);
        using var net = nn.Sequential(("w", nn.Linear(1, 1)));
        var viaModule = Assert.Throws<ModelFormatException>(() => StateDict.Load(net, path, limits: limits));
        Assert.Equal(ex.Message, viaModule.Message);
        Assert.Contains(path, ex.Message);
        return ex.Message;
    }

    // --- hostile files ---

    [Fact]
    public void StorageBombIsRefusedByItsDeclaredSize()
    {
        // 1 GiB of zeros deflated to about 1 MB: the default budget for it is the 64 MiB floor.
        Assert.InRange(new FileInfo(bombs.StorageBombPath).Length, 1, 8 << 20);
        var message = Refused(bombs.StorageBombPath);
        Assert.Contains("'archive/data/0' declares 1073741824 bytes", message);
        Assert.Contains("load budget of 67108864 bytes", message);
    }

    [Theory]
    [InlineData(1L << 32, 4294967295L)]
    [InlineData(1L << 34, 17179869183L)]
    public void HugeShapeOverASixFloatStorageIsRefused(long length, long lastElement)
    {
        var path = PathOf("huge.pth");
        HugeShape(path, length);
        var message = Refused(path);
        Assert.Contains($"'w': size ({length}), stride (1), offset 0 reaches element {lastElement}, but storage '0' has 6 elements", message);
    }

    [Fact]
    public void StrideZeroViewWhoseCopyExceedsTheBudgetIsRefused()
    {
        // (2^34,) with stride 0 reads only element 0 of a 1-float storage, but its own contiguous copy is 64 GiB.
        var path = PathOf("broadcast.pth");
        BroadcastBomb(path, 1L << 34);
        var message = Refused(path);
        Assert.Contains("the tensors need 68719476740 bytes (4 in 1 storages, 68719476736 in copies)", message);

        // (2^40, 2^40) of stride (0, 0): 2^80 elements, more than a 64-bit count.
        FloatView(path, [1], 0, [1L << 40, 1L << 40], [0, 0]);
        Assert.Contains("the tensors need over 2^63 bytes (4 in 1 storages, over 2^63 in copies)", Refused(path));
    }

    [Fact]
    public void BillionDupPickleIsRefusedByItsDeclaredSize()
    {
        Assert.InRange(new FileInfo(bombs.DupBombPath).Length, 1, 8 << 20);
        var message = Refused(bombs.DupBombPath);
        Assert.Contains("'archive/data.pkl' declares 1000000004 bytes, more than the 67108864 bytes a pickle may have", message);
    }

    [Fact]
    public void DupPickleWithinTheSizeCapIsStoppedByTheStackCap()
    {
        // 4 MiB of DUP opcodes passes the size cap; the 2^20-value stack cap stops it (after 1 + 2^20 - 1 DUPs).
        var path = PathOf("dups.pth");
        DupBomb(path, 4L << 20);
        var message = Refused(path);
        Assert.Contains("more than 1048576 values on the pickle stack", message);
    }

    [Fact]
    public void EntryThatInflatesPastItsDeclaredLengthIsRefused()
    {
        // data/0 claims 24 bytes (the 6 floats the pickle wants) and holds 256 MiB of zeros. .NET stops reading at the
        // claimed 24, so nothing big is inflated; the lie shows in the checksum. Python: zlib.crc32(bytes(24)) is
        // 0xa3c1ca20; the header keeps the CRC of all 256 MiB, 0x2a0e7dbb.
        var message = Refused(bombs.LyingEntryPath);
        Assert.Contains("zip entry 'archive/data/0': the first 24 bytes (its declared size) have CRC-32 a3c1ca20, its header says 2a0e7dbb", message);
    }

    [Fact]
    public void StorageOverAnExplicitBudgetIsRefusedAndLoadsWithTheDefault()
    {
        var path = PathOf("ten-mb.pth");
        const int numel = 2_500_000; // 10 MB of float32
        var values = new float[numel];
        values[^1] = 7;
        var pickle = PickleWriter.StateDict([new Entry("w", "FloatStorage", "0", numel, 0, [numel], [1])]);
        WriteZip(path, pickle, [("0", Floats(values))]);

        var message = Refused(path, new LoadLimits { MaxLoadBytes = 1 << 20 });
        Assert.Contains("'archive/data/0' declares 10000000 bytes", message);
        Assert.Contains("load budget of 1048576 bytes", message);

        var dict = TensorIO.LoadDict(path);
        using var w = dict["w"];
        Assert.Equal(new long[] { numel }, w.shape);
        Assert.Equal(7f, w[numel - 1].item<float>());
        Assert.Equal(7.0, w.sum().item<float>());
    }

    [Theory]
    [InlineData(TensorFileFormat.TorchSharp, "'w' brings the tensors to 10000000 bytes, more than the load budget of 1048576 bytes")]
    [InlineData(TensorFileFormat.Safetensors, "its tensors need 10000000 bytes, more than the load budget of 1048576 bytes")]
    public void OtherFormatsRefuseTensorsOverAnExplicitBudget(TensorFileFormat format, string expected)
    {
        var path = PathOf("ten-mb." + format);
        using (var w = zeros(2_500_000)) TensorIO.SaveDict(new Dictionary<string, Tensor> { ["w"] = w }, path, format);
        Assert.Contains(expected, Refused(path, new LoadLimits { MaxLoadBytes = 1 << 20 }));
        var dict = TensorIO.LoadDict(path);
        using var loaded = dict["w"];
        Assert.Equal(new long[] { 2_500_000 }, loaded.shape);
    }

    [Fact]
    public void UnknownOpcodeIsRefusedWithItsByteAndOffset()
    {
        // INST ('i', 0x69) would import and call a class: not something torch.save writes.
        var path = PathOf("inst.pth");
        WriteZip(path, new PickleWriter().Proto(2).Op((byte)'i').ToArray(), []);
        Assert.Contains("unsupported pickle opcode 0x69 ('i') at byte 2 of the pickle", Refused(path));
    }

    [Fact]
    public void GlobalAndReduceStayInertAndAreNotATensor()
    {
        // {'w': os.system('touch pwned')}: the call is only recorded, then refused as not a tensor.
        var marker = PathOf("pwned");
        var pickle = new PickleWriter().Proto(2).EmptyDict().Mark().Unicode("w")
            .Global("os", "system").Unicode($"touch {marker}").Tuple1().Reduce()
            .SetItems().Stop().ToArray();
        var path = PathOf("os-system.pth");
        WriteZip(path, pickle, []);
        var message = Refused(path);
        Assert.Contains("'w' is a call to os.system, not a tensor", message);
        Assert.False(File.Exists(marker));
    }

    [Fact]
    public void MissingStorageEntryIsRefused()
    {
        var path = PathOf("missing.pth");
        WriteZip(path, PickleWriter.StateDict([new Entry("w", "FloatStorage", "0", 6, 0, [6], [1])]), []);
        Assert.Contains("'w': storage '0' has no entry 'archive/data/0' in the zip", Refused(path));
    }

    [Fact]
    public void StorageShorterThanItsElementCountIsRefused()
    {
        var path = PathOf("short.pth");
        WriteZip(path, PickleWriter.StateDict([new Entry("w", "FloatStorage", "0", 6, 0, [6], [1])]), [("0", Floats(1, 2, 3))]);
        Assert.Contains("'w': storage '0' is 6 x FloatStorage (24 bytes), but its entry 'archive/data/0' holds 12 bytes", Refused(path));
    }

    [Fact]
    public void StorageOffsetBeyondTheStorageIsRefused()
    {
        // Elements 5 and 6 of a 6-element storage: the last one does not exist.
        var path = PathOf("offset.pth");
        FloatView(path, [1, 2, 3, 4, 5, 6], offset: 5, size: [2], stride: [1]);
        Assert.Contains("'w': size (2), stride (1), offset 5 reaches element 6, but storage '0' has 6 elements", Refused(path));
    }

    [Fact]
    public void NegativeSizeIsRefused()
    {
        var path = PathOf("negative.pth");
        FloatView(path, [1, 2, 3, 4, 5, 6], offset: 0, size: [-1], stride: [1]);
        Assert.Contains("'w': size[0] is -1 (expected a non-negative integer)", Refused(path));
    }

    [Fact]
    public void BigEndianFilesAreRefused()
    {
        var path = PathOf("big-endian.pth");
        FloatView(path, [1, 2, 3, 4, 5, 6], offset: 0, size: [6], stride: [1], byteorder: "big");
        Assert.Contains("byteorder is 'big'; only little-endian files can be read", Refused(path));
    }

    // --- honest files ---

    [Fact]
    public void NonContiguousViewLoadsWithTheValuesItNames()
    {
        // Storage [1..7]; offset 1, size (3, 2), stride (1, 3): w[i, j] = storage[1 + i + 3j] = [[2, 5], [3, 6], [4, 7]]
        // (a transposed 2x3 view). Written the way protocol 4 writes it: FRAME, STACK_GLOBAL, MEMOIZE, SHORT_BINUNICODE.
        var body = new PickleWriter().EmptyDict().Memoize().Mark()
            .ShortUnicode("w").Memoize()
            .StackGlobal("torch._utils", "_rebuild_tensor_v2").Memoize()
            .Mark().Mark().ShortUnicode("storage").StackGlobal("torch", "FloatStorage").ShortUnicode("0").ShortUnicode("cpu").Int(7).Tuple().PersId()
            .Int(1).Ints([3, 2]).Ints([1, 3]).False()
            .StackGlobal("collections", "OrderedDict").Memoize().EmptyTuple().Reduce()
            .Tuple().Reduce().Memoize()
            .SetItems().Stop().ToArray();
        var p = new PickleWriter().Proto(4).Frame((ulong)body.Length).Raw(body).ToArray();
        var path = PathOf("view.pth");
        WriteZip(path, p, [("0", Floats(1, 2, 3, 4, 5, 6, 7))]);

        using var w = TensorIO.LoadDict(path)["w"];
        Assert.Equal(new long[] { 3, 2 }, w.shape);
        Assert.True(w.is_contiguous());
        Assert.Equal(new float[] { 2, 5, 3, 6, 4, 7 }, w.data<float>().ToArray());
    }

    [Fact]
    public void AliasesOfOneStorageEachGetTheirOwnTensor()
    {
        // 'a' and 'b' name the same 2x3 storage, as torch.save writes tied parameters.
        var pickle = PickleWriter.StateDict(
        [
            new Entry("a", "FloatStorage", "0", 6, 0, [2, 3], [3, 1]),
            new Entry("b", "FloatStorage", "0", 6, 0, [2, 3], [3, 1], AsParameter: true),
        ]);
        var path = PathOf("tied.pth");
        WriteZip(path, pickle, [("0", Floats(1, 2, 3, 4, 5, 6))]);

        var dict = TensorIO.LoadDict(path);
        using var a = dict["a"];
        using var b = dict["b"];
        Assert.Equal(new[] { "a", "b" }, dict.Keys);
        Assert.Equal(new float[] { 1, 2, 3, 4, 5, 6 }, b.data<float>().ToArray());
        a.add_(10); // owned separately: changing one alias leaves the other as it was read
        Assert.Equal(new float[] { 1, 2, 3, 4, 5, 6 }, b.data<float>().ToArray());
    }

    [Fact]
    public void TiedParameterModuleRoundTripsThroughPyTorchFormat()
    {
        var shared = nn.Linear(2, 2);
        using var net = nn.Sequential(nn.Linear(3, 2), shared, shared);
        var path = PathOf("tied-net.pth");
        StateDict.Save(net, path, TensorFileFormat.PyTorch);

        var shared2 = nn.Linear(2, 2);
        using var clone = nn.Sequential(nn.Linear(3, 2), shared2, shared2);
        StateDict.Load(clone, path);
        using var x = tensor(new float[] { 1, -2, 3 }).reshape(1, 3);
        using var y = net.call(x);
        using var yClone = clone.call(x);
        TensorAssert.Equal(y, yClone);
        TensorAssert.Equal(shared.weight!, shared2.weight!);
    }

    [Fact]
    public void RealPyTorchFilesKeepTheirOrderAndValues()
    {
        // module_load.pth: OrderedDict with _metadata (BUILD state), lin1.weight 1x5 and lin2.weight 2x1, all ones.
        var module = TensorIO.LoadDict(TestData("module_load.pth"));
        Assert.Equal(new[] { "lin1.weight", "lin2.weight" }, module.Keys);
        Assert.Equal(new long[] { 1, 5 }, module["lin1.weight"].shape);
        Assert.Equal(new float[] { 1, 1 }, module["lin2.weight"].data<float>().ToArray());
        // tensors.pth: plain dict, byteorder 'little', int64 arr = [1..6] and arr_2d = the same six as 2x3.
        var tensors = TensorIO.LoadDict(TestData("tensors.pth"));
        Assert.Equal(new[] { "arr", "arr_2d" }, tensors.Keys);
        Assert.Equal(new long[] { 1, 2, 3, 4, 5, 6 }, tensors["arr_2d"].data<long>().ToArray());
        Assert.Equal(4L, tensors["arr_2d"][1, 0].item<long>());
        foreach (var t in module.Values.Concat(tensors.Values)) t.Dispose();
    }
}
