using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace MlNetGuide.Tests.Shared;

/// <summary>
/// Builds PyTorch-format files (<c>torch.save</c>'s zip: <c>archive/data.pkl</c> + <c>archive/data/&lt;key&gt;</c>) by
/// hand, honest or hostile, with a small pickle writer of our own. The big ones (bombs) are written streaming, so
/// building them never holds their inflated size in memory.
/// </summary>
internal static class CraftedPyTorchFiles
{
    /// <summary>One <c>_rebuild_tensor_v2</c> entry of a state dict.</summary>
    public sealed record Entry(string Name, string StorageType, string Key, long Numel, long Offset, long[] Size, long[] Stride, bool AsParameter = false);

    /// <summary>Writes raw pickle opcodes; each method emits one opcode (or one argument-carrying opcode).</summary>
    public sealed class PickleWriter
    {
        private readonly MemoryStream _s = new();

        public PickleWriter Op(byte op) { _s.WriteByte(op); return this; }
        public PickleWriter Raw(byte[] bytes) { _s.Write(bytes); return this; }
        public PickleWriter Proto(byte version) => Op(0x80).Op(version);
        public PickleWriter Frame(ulong length) { Op(0x95); Span<byte> b = stackalloc byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b, length); _s.Write(b); return this; }
        public PickleWriter Global(string module, string name) { Op((byte)'c'); _s.Write(Encoding.ASCII.GetBytes($"{module}\n{name}\n")); return this; }
        public PickleWriter StackGlobal(string module, string name) => ShortUnicode(module).ShortUnicode(name).Op(0x93);
        public PickleWriter Mark() => Op((byte)'(');
        public PickleWriter Tuple() => Op((byte)'t');
        public PickleWriter Tuple1() => Op(0x85);
        public PickleWriter EmptyTuple() => Op((byte)')');
        public PickleWriter EmptyDict() => Op((byte)'}');
        public PickleWriter SetItems() => Op((byte)'u');
        public PickleWriter Reduce() => Op((byte)'R');
        public PickleWriter Build() => Op((byte)'b');
        public PickleWriter PersId() => Op((byte)'Q');
        public PickleWriter False() => Op(0x89);
        public PickleWriter None() => Op((byte)'N');
        public PickleWriter Stop() => Op((byte)'.');
        public PickleWriter Put(byte slot) => Op((byte)'q').Op(slot);
        public PickleWriter Get(byte slot) => Op((byte)'h').Op(slot);
        public PickleWriter Memoize() => Op(0x94);

        public PickleWriter Unicode(string s)
        {
            var b = Encoding.UTF8.GetBytes(s);
            Op((byte)'X');
            Span<byte> n = stackalloc byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(n, b.Length);
            _s.Write(n);
            _s.Write(b);
            return this;
        }

        public PickleWriter ShortUnicode(string s)
        {
            var b = Encoding.UTF8.GetBytes(s);
            Op(0x8c).Op(checked((byte)b.Length));
            _s.Write(b);
            return this;
        }

        /// <summary>The shortest of BININT1, BININT2, BININT and LONG1, as Python's pickler chooses.</summary>
        public PickleWriter Int(long v)
        {
            if (v is >= 0 and < 256) return Op((byte)'K').Op((byte)v);
            if (v is >= 0 and < 65536) { Op((byte)'M'); _s.WriteByte((byte)v); _s.WriteByte((byte)(v >> 8)); return this; }
            Span<byte> b = stackalloc byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(b, v);
            if (v is >= int.MinValue and <= int.MaxValue) { Op((byte)'J'); _s.Write(b[..4]); return this; }
            int n = 8;
            while (n > 1 && ((b[n - 1] == 0 && (b[n - 2] & 0x80) == 0) || (b[n - 1] == 0xff && (b[n - 2] & 0x80) != 0))) n--;
            Op(0x8a).Op((byte)n);
            _s.Write(b[..n]);
            return this;
        }

        /// <summary>A tuple of ints, with MARK … TUPLE (Python's pickler uses TUPLE1–3 for short ones; both are valid).</summary>
        public PickleWriter Ints(long[] values)
        {
            Mark();
            foreach (var v in values) Int(v);
            return Tuple();
        }

        /// <summary>
        /// <c>torch._utils._rebuild_tensor_v2(('storage', torch.&lt;type&gt;, key, 'cpu', numel), offset, size, stride,
        /// False, OrderedDict())</c>, optionally wrapped in <c>_rebuild_parameter(…, True, OrderedDict())</c>.
        /// </summary>
        public PickleWriter Tensor(Entry e)
        {
            if (e.AsParameter) Global("torch._utils", "_rebuild_parameter").Mark();
            Global("torch._utils", "_rebuild_tensor_v2").Mark();
            Mark().Unicode("storage").Global("torch", e.StorageType).Unicode(e.Key).Unicode("cpu").Int(e.Numel).Tuple().PersId();
            Int(e.Offset).Ints(e.Size).Ints(e.Stride).False();
            Global("collections", "OrderedDict").EmptyTuple().Reduce();
            Tuple().Reduce();
            if (e.AsParameter) Op(0x88).Global("collections", "OrderedDict").EmptyTuple().Reduce().Tuple().Reduce();
            return this;
        }

        /// <summary>The pickle of a plain dict of <paramref name="entries"/>, as torch.save(dict) writes it.</summary>
        public static byte[] StateDict(IEnumerable<Entry> entries)
        {
            var w = new PickleWriter().Proto(2).EmptyDict().Mark();
            foreach (var e in entries) w.Unicode(e.Name).Tensor(e);
            return w.SetItems().Stop().ToArray();
        }

        public byte[] ToArray() => _s.ToArray();
    }

    /// <summary>Writes a torch.save-style zip: archive/data.pkl, archive/byteorder, archive/data/&lt;key&gt;, archive/version.</summary>
    public static void WriteZip(string path, byte[] pickle, IEnumerable<(string key, byte[] data)> storages, string? byteorder = "little",
        CompressionLevel level = CompressionLevel.NoCompression)
    {
        using var file = File.Create(path);
        using var zip = new ZipArchive(file, ZipArchiveMode.Create);
        void Add(string name, byte[] data)
        {
            using var s = zip.CreateEntry(name, level).Open();
            s.Write(data);
        }
        Add("archive/data.pkl", pickle);
        if (byteorder is not null) Add("archive/byteorder", Encoding.ASCII.GetBytes(byteorder));
        foreach (var (key, data) in storages) Add($"archive/data/{key}", data);
        Add("archive/version", "3\n"u8.ToArray());
    }

    /// <summary>The little-endian bytes of <paramref name="values"/> (a FloatStorage's entry).</summary>
    public static byte[] Floats(params float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        return bytes;
    }

    /// <summary>One float tensor 'w' over a FloatStorage '0' of <paramref name="storage"/>, viewed as given.</summary>
    public static void FloatView(string path, float[] storage, long offset, long[] size, long[] stride, string? byteorder = "little")
    {
        var pickle = PickleWriter.StateDict([new Entry("w", "FloatStorage", "0", storage.Length, offset, size, stride)]);
        WriteZip(path, pickle, [("0", Floats(storage))], byteorder);
    }

    /// <summary>
    /// (a) A storage bomb: data.pkl declares 2^28 floats and archive/data/0 is 1 GiB of zeros, deflated to about 1 MB.
    /// Declared sizes are honest; only the budget stands in the way.
    /// </summary>
    public static void StorageBomb(string path)
    {
        const long numel = 1L << 28;
        var pickle = PickleWriter.StateDict([new Entry("w", "FloatStorage", "0", numel, 0, [numel], [1])]);
        using var file = File.Create(path);
        using var zip = new ZipArchive(file, ZipArchiveMode.Create);
        using (var s = zip.CreateEntry("archive/data.pkl").Open()) s.Write(pickle);
        using (var s = zip.CreateEntry("archive/data/0", CompressionLevel.SmallestSize).Open())
            WriteRepeated(s, 0, numel * 4);
    }

    /// <summary>(b) A tensor of size (<paramref name="length"/>,), stride (1,) over a 6-float (24-byte) storage.</summary>
    public static void HugeShape(string path, long length) =>
        FloatView(path, [1, 2, 3, 4, 5, 6], 0, [length], [1]);

    /// <summary>
    /// A tensor of size (<paramref name="length"/>,) and stride (0,) over one float: every index fits the storage, but
    /// a contiguous copy needs <paramref name="length"/> × 4 bytes.
    /// </summary>
    public static void BroadcastBomb(string path, long length) =>
        FloatView(path, [1], 0, [length], [0]);

    /// <summary>(c) data.pkl is PROTO 2, NONE, then <paramref name="dups"/> DUP opcodes and STOP, deflated and streamed.</summary>
    public static void DupBomb(string path, long dups)
    {
        using var file = File.Create(path);
        using var zip = new ZipArchive(file, ZipArchiveMode.Create);
        using var s = zip.CreateEntry("archive/data.pkl", CompressionLevel.SmallestSize).Open();
        s.Write([0x80, 2, (byte)'N']);
        WriteRepeated(s, (byte)'2', dups);
        s.WriteByte((byte)'.');
    }

    /// <summary>
    /// A valid-looking file whose archive/data/0 (a 6-float storage) is declared as 24 bytes in both the local header
    /// and the central directory, but inflates to <paramref name="actualBytes"/> bytes of zeros.
    /// </summary>
    public static void LyingEntryLength(string path, long actualBytes)
    {
        var pickle = PickleWriter.StateDict([new Entry("w", "FloatStorage", "0", 6, 0, [6], [1])]);
        using (var file = File.Create(path))
        using (var zip = new ZipArchive(file, ZipArchiveMode.Create))
        {
            using (var s = zip.CreateEntry("archive/data.pkl").Open()) s.Write(pickle);
            using (var s = zip.CreateEntry("archive/data/0", CompressionLevel.SmallestSize).Open()) WriteRepeated(s, 0, actualBytes);
        }
        var bytes = File.ReadAllBytes(path);
        int patched = PatchUncompressedSize(bytes, "archive/data/0", 24);
        if (patched != 2) throw new InvalidOperationException($"expected to patch 2 headers, patched {patched}");
        File.WriteAllBytes(path, bytes);
    }

    /// <summary>Sets the uncompressed-size field of <paramref name="name"/>'s local header and central-directory record.</summary>
    private static int PatchUncompressedSize(byte[] zip, string name, uint size)
    {
        var nameBytes = Encoding.ASCII.GetBytes(name);
        int patched = 0;
        for (int i = 0; i + 4 <= zip.Length; i++)
        {
            uint sig = BinaryPrimitives.ReadUInt32LittleEndian(zip.AsSpan(i));
            // Local file header: size at +22, name length at +26, name at +30. Central directory: +24, +28, +46.
            (int sizeAt, int nameLenAt, int nameAt) = sig switch
            {
                0x04034b50 => (22, 26, 30),
                0x02014b50 => (24, 28, 46),
                _ => (-1, -1, -1),
            };
            if (sizeAt < 0 || i + nameAt + nameBytes.Length > zip.Length) continue;
            if (BinaryPrimitives.ReadUInt16LittleEndian(zip.AsSpan(i + nameLenAt)) != nameBytes.Length) continue;
            if (!zip.AsSpan(i + nameAt, nameBytes.Length).SequenceEqual(nameBytes)) continue;
            BinaryPrimitives.WriteUInt32LittleEndian(zip.AsSpan(i + sizeAt), size);
            patched++;
        }
        return patched;
    }

    private static void WriteRepeated(Stream s, byte value, long count)
    {
        var chunk = new byte[1 << 20];
        Array.Fill(chunk, value);
        for (long left = count; left > 0; left -= chunk.Length)
            s.Write(chunk, 0, (int)Math.Min(chunk.Length, left));
    }
}
