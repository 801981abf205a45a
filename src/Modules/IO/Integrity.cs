using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace MlNetGuide.Modules;

/// <summary>
/// SHA-256 seals on the files we write, so that a flipped bit anywhere is caught at load instead of becoming a
/// silently different weight. Each seal is invisible to the format's other readers:
/// <list type="bullet">
/// <item>TorchSharp format: a 40-byte trailer ("MLNGSHA1" + hash of everything before it); TorchSharp's own
/// <c>module.load</c> stops after the last entry and never reads it.</item>
/// <item>Zips (PyTorch's format, our model zips): an extra entry <c>…/mlnetguide.sha256</c> with the hash of every other
/// entry; PyTorch and PyBridge read only the records they need.</item>
/// <item>safetensors: <c>"__metadata__": {"mlnetguide.seal": …}</c> over the header (without the seal) and the data
/// section, as the format allows.</item>
/// </list>
/// Files without a seal (written by PyTorch or TorchSharp) load as before, with structural checks only.
/// <para>A seal detects corruption (a flipped bit, a truncated copy, an edited header). It is not a signature: anyone who
/// can edit a file can recompute its seal, or remove it. Treat a model file from an untrusted source as untrusted
/// whatever its seal says; the loaders' size checks and budget (<see cref="LoadLimits"/>) are what protect a process
/// from a crafted file.</para>
/// </summary>
internal static class Integrity
{
    private static readonly byte[] TrailerMagic = "MLNGSHA1"u8.ToArray();
    private const int TrailerLength = 8 + 32;
    private const string ZipSealName = "mlnetguide.sha256";
    private const string SafetensorsKey = "mlnetguide.seal";           // SHA-256 over the header (without it) and the data
    private const string LegacySafetensorsKey = "mlnetguide.sha256";   // earlier builds: SHA-256 over the data only

    /// <summary>Payload + trailer.</summary>
    internal static byte[] SealNative(byte[] payload)
    {
        var sealedBytes = new byte[payload.Length + TrailerLength];
        payload.CopyTo(sealedBytes, 0);
        TrailerMagic.CopyTo(sealedBytes, payload.Length);
        SHA256.HashData(payload, sealedBytes.AsSpan(payload.Length + 8));
        return sealedBytes;
    }

    /// <summary>The payload of a TorchSharp-format file, its trailer checked and removed when present.</summary>
    internal static ReadOnlyMemory<byte> OpenNative(byte[] bytes, string source)
    {
        if (bytes.Length < TrailerLength || !bytes.AsSpan(bytes.Length - TrailerLength, 8).SequenceEqual(TrailerMagic))
            return bytes;
        var payload = bytes.AsMemory(0, bytes.Length - TrailerLength);
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(payload.Span, hash);
        if (!hash.SequenceEqual(bytes.AsSpan(bytes.Length - 32)))
            throw new ModelFormatException($"{source} is corrupt: its SHA-256 seal does not match its contents.");
        return payload;
    }

    /// <summary>Adds the seal entry to a zip held in <paramref name="zip"/> (next to the first entry's folder).</summary>
    public static void SealZip(MemoryStream zip)
    {
        ArgumentNullException.ThrowIfNull(zip);
        using var archive = new ZipArchive(zip, ZipArchiveMode.Update, leaveOpen: true);
        var hashes = HashEntries(archive, out var folder);
        var entry = archive.CreateEntry(folder + ZipSealName, CompressionLevel.NoCompression);
        using var s = entry.Open();
        JsonSerializer.Serialize(s, hashes);
    }

    /// <summary>Checks a zip's seal, if it has one. Throws <see cref="ModelFormatException"/> on any mismatch.</summary>
    /// <remarks>Entry sizes are checked against <see cref="LoadLimits.Default"/>'s budget for the stream's length first,
    /// so a zip bomb is refused before any entry is inflated.</remarks>
    public static void VerifyZip(Stream zip, string source)
    {
        ArgumentNullException.ThrowIfNull(zip);
        VerifyZip(zip, source, LoadLimits.Default.BudgetFor(zip.CanSeek ? zip.Length : 0));
    }

    /// <summary>Checks a zip's seal, if it has one, after checking every entry's declared size against <paramref name="budget"/>.</summary>
    public static void VerifyZip(Stream zip, string source, long budget)
    {
        ArgumentNullException.ThrowIfNull(zip);
        long start = zip.Position;
        try
        {
            using var archive = new ZipArchive(zip, ZipArchiveMode.Read, leaveOpen: true);
            ZipBounds.Check(archive, budget, source);
            var seal = archive.Entries.FirstOrDefault(e => e.Name == ZipSealName);
            if (seal is null) return;
            if (seal.Length > MaxSealLength)
                throw new ModelFormatException($"{source}: its seal entry {seal.FullName} is {seal.Length} bytes; a seal is at most {MaxSealLength}.");
            Dictionary<string, string>? expected;
            using (var s = seal.Open()) expected = JsonSerializer.Deserialize<Dictionary<string, string>>(s);
            var actual = HashEntries(archive, out _);
            if (expected is null || expected.Count != actual.Count || expected.Any(kv => !actual.TryGetValue(kv.Key, out var h) || h != kv.Value))
            {
                var bad = actual.Keys.Union(expected?.Keys ?? Enumerable.Empty<string>()).Where(k => expected?.GetValueOrDefault(k) != actual.GetValueOrDefault(k)).Take(3);
                throw new ModelFormatException($"{source} is corrupt: its SHA-256 seal does not match entries {string.Join(", ", bad)}.");
            }
        }
        catch (Exception ex) when (ex is InvalidDataException or JsonException or IOException and not ModelFormatException)
        {
            throw new ModelFormatException($"{source} is not a readable zip: {ex.Message}", ex);
        }
        finally
        {
            zip.Position = start;
        }
    }

    // A seal lists one 64-character hash per entry; ZipBounds allows at most MaxEntries of them.
    private const long MaxSealLength = 256L * ZipBounds.MaxEntries;

    private static Dictionary<string, string> HashEntries(ZipArchive archive, out string folder)
    {
        var hashes = new Dictionary<string, string>(StringComparer.Ordinal);
        folder = "";
        foreach (var entry in archive.Entries)
        {
            if (entry.Name == ZipSealName) continue;
            if (hashes.Count == 0 && entry.FullName.IndexOf('/') is > 0 and var slash) folder = entry.FullName[..(slash + 1)];
            using var s = entry.Open();
            hashes[entry.FullName] = Convert.ToHexString(SHA256.HashData(s));
        }
        return hashes;
    }

    /// <summary>Adds a hash of the header (without the seal) and the data section to a safetensors file's header.</summary>
    internal static byte[] SealSafetensors(byte[] file)
    {
        var (header, dataStart) = ReadSafetensorsHeader(file, "safetensors output");
        var meta = header["__metadata__"] as JsonObject ?? [];
        meta[SafetensorsKey] = SafetensorsHash(header, file.AsSpan(dataStart));
        header["__metadata__"] = meta;
        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        int padded = (json.Length + 7) / 8 * 8; // the spec pads the header with spaces to 8 bytes
        var result = new byte[8 + padded + (file.Length - dataStart)];
        BitConverter.TryWriteBytes(result.AsSpan(0, 8), (ulong)padded);
        json.CopyTo(result, 8);
        result.AsSpan(8 + json.Length, padded - json.Length).Fill((byte)' ');
        file.AsSpan(dataStart).CopyTo(result.AsSpan(8 + padded));
        return result;
    }

    /// <summary>
    /// SHA-256 of the header as it reads without our seal (re-serialized, so whitespace does not matter) followed by the
    /// data section: swapping two tensors' offsets, renaming a key or changing a shape breaks the seal as surely as a
    /// flipped data bit.
    /// </summary>
    private static string SafetensorsHash(JsonObject header, ReadOnlySpan<byte> data)
    {
        var canonical = (JsonObject)header.DeepClone();
        if (canonical["__metadata__"] is JsonObject meta)
        {
            meta.Remove(SafetensorsKey);
            meta.Remove(LegacySafetensorsKey);
            if (meta.Count == 0) canonical.Remove("__metadata__");
        }
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes(canonical.ToJsonString()));
        hash.AppendData(data);
        return Convert.ToHexString(hash.GetHashAndReset());
    }

    /// <summary>
    /// Validates a safetensors file before any tensor is allocated — every entry's dtype, shape and byte range must
    /// fit the data section, no two ranges may overlap, and the total must fit <paramref name="budget"/> — and checks
    /// our seal when present.
    /// </summary>
    internal static void VerifySafetensors(byte[] file, string source, long budget = long.MaxValue)
    {
        var (header, dataStart) = ReadSafetensorsHeader(file, source);
        long dataLength = file.Length - dataStart;
        var ranges = new List<(long begin, long end, string name)>();
        long total = 0;
        foreach (var (name, node) in header)
        {
            if (name == "__metadata__") continue;
            if (node is not JsonObject entry || entry["dtype"]?.GetValue<string>() is not { } dtype || entry["shape"] is not JsonArray shape || entry["data_offsets"] is not JsonArray offsets || offsets.Count != 2)
                throw new ModelFormatException($"{source}: header entry '{name}' is malformed.");
            int size = dtype switch { "F64" or "I64" => 8, "F32" or "I32" => 4, "F16" or "BF16" or "I16" => 2, "I8" or "U8" or "BOOL" => 1, _ => 0 };
            if (size == 0) throw new ModelFormatException($"{source}: '{name}' has unsupported dtype '{dtype}'.");
            long begin = offsets[0]!.GetValue<long>(), end = offsets[1]!.GetValue<long>();
            long elements = 1;
            foreach (var d in shape)
            {
                long dim = d!.GetValue<long>();
                if (dim < 0 || (dim > 0 && elements > dataLength / dim)) throw new ModelFormatException($"{source}: '{name}' has an impossible shape.");
                elements *= dim;
            }
            if (begin < 0 || end < begin || end > dataLength || end - begin != elements * size)
                throw new ModelFormatException($"{source}: '{name}' claims bytes {begin}..{end} for {elements} x {dtype}, but the data section has {dataLength} bytes.");
            total += end - begin;
            if (total > budget)
                throw new ModelFormatException($"{source}: its tensors need more than the load budget of {budget} bytes (at '{name}'); raise LoadLimits.MaxLoadBytes if the file is trusted.");
            if (end > begin) ranges.Add((begin, end, name));
        }
        ranges.Sort((a, b) => a.begin.CompareTo(b.begin));
        for (int i = 1; i < ranges.Count; i++)
            if (ranges[i].begin < ranges[i - 1].end)
                throw new ModelFormatException(
                    $"{source}: '{ranges[i - 1].name}' (bytes {ranges[i - 1].begin}..{ranges[i - 1].end}) and '{ranges[i].name}' (bytes {ranges[i].begin}..{ranges[i].end}) overlap.");
        if ((header["__metadata__"] as JsonObject)?[SafetensorsKey]?.GetValue<string>() is { } expected
            && expected != SafetensorsHash(header, file.AsSpan(dataStart)))
            throw new ModelFormatException($"{source} is corrupt: its SHA-256 seal does not match its header and data.");
        if ((header["__metadata__"] as JsonObject)?[LegacySafetensorsKey]?.GetValue<string>() is { } legacy
            && legacy != Convert.ToHexString(SHA256.HashData(file.AsSpan(dataStart))))
            throw new ModelFormatException($"{source} is corrupt: its SHA-256 seal does not match its data.");
    }

    private static (JsonObject header, int dataStart) ReadSafetensorsHeader(byte[] file, string source)
    {
        if (file.Length < 8) throw new ModelFormatException($"{source} is too short to be safetensors.");
        ulong length = BitConverter.ToUInt64(file, 0);
        if (length > (ulong)(file.Length - 8)) throw new ModelFormatException($"{source}: header length {length} exceeds the file.");
        try
        {
            var header = JsonNode.Parse(file.AsSpan(8, (int)length)) as JsonObject
                ?? throw new ModelFormatException($"{source}: the header is not a JSON object.");
            return (header, 8 + (int)length);
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or FormatException)
        {
            throw new ModelFormatException($"{source}: the header is not valid JSON ({ex.Message}).", ex);
        }
    }
}
