using System.Text;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// Reads and writes an ordered name → tensor dictionary in each <see cref="TensorFileFormat"/>. Every reader turns
/// any failure into <see cref="ModelFormatException"/> and disposes what it had read, so callers never see a half
/// result.
/// </summary>
internal static class TensorDictCodec
{
    public static void Write(Stream stream, IReadOnlyList<KeyValuePair<string, Tensor>> entries, TensorFileFormat format)
    {
        using var buffer = new MemoryStream();
        WriteUnsealed(buffer, entries, format);
        byte[] bytes;
        switch (format)
        {
            case TensorFileFormat.PyTorch:
                Integrity.SealZip(buffer);
                bytes = buffer.ToArray();
                break;
            case TensorFileFormat.Safetensors:
                bytes = Integrity.SealSafetensors(buffer.ToArray());
                break;
            default:
                bytes = Integrity.SealNative(buffer.ToArray());
                break;
        }
        stream.Write(bytes);
        stream.Flush();
    }

    private static void WriteUnsealed(Stream stream, IReadOnlyList<KeyValuePair<string, Tensor>> entries, TensorFileFormat format)
    {
        switch (format)
        {
            case TensorFileFormat.Auto:
            case TensorFileFormat.TorchSharp:
                using (var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
                {
                    WriteLeb(writer, entries.Count);
                    foreach (var (key, tensor) in entries)
                    {
                        writer.Write(key);
                        using var cpu = tensor.detach().cpu().contiguous();
                        cpu.Save(writer);
                    }
                }
                break;
            case TensorFileFormat.PyTorch:
            {
                using var scope = NewDisposeScope();
                var dict = new System.Collections.Specialized.OrderedDictionary();
                foreach (var (key, tensor) in entries) dict.Add(key, tensor.detach().cpu().contiguous());
                PyTorchPickler.PickleStateDict(stream, dict, leaveOpen: true);
                break;
            }
            case TensorFileFormat.Safetensors:
            {
                using var scope = NewDisposeScope();
                var dict = new Dictionary<string, Tensor>();
                foreach (var (key, tensor) in entries) dict.Add(key, tensor.detach().cpu().contiguous());
                Safetensors.SaveStateDict(stream, dict, leaveOpen: true);
                break;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(format), format, "unknown format");
        }
    }

    /// <summary>
    /// Reads every entry; the caller owns (and must dispose) the returned tensors. What the file describes must fit
    /// <paramref name="limits"/>' budget for its length, or nothing is allocated.
    /// </summary>
    public static List<KeyValuePair<string, Tensor>> Read(Stream input, TensorFileFormat format, string source, LoadLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        // Read it all first: the seal is checked, and every size validated, before a tensor is allocated.
        byte[] bytes;
        using (var all = new MemoryStream())
        {
            input.CopyTo(all);
            bytes = all.ToArray();
        }
        using var stream = new MemoryStream(bytes, writable: false);
        long budget = limits.BudgetFor(bytes.Length);
        if (format == TensorFileFormat.Auto) format = Detect(stream, source);
        var result = new List<KeyValuePair<string, Tensor>>();
        try
        {
            switch (format)
            {
                case TensorFileFormat.TorchSharp:
                    using (var payload = new MemoryStream(Integrity.OpenNative(bytes, source).ToArray(), writable: false))
                        ReadNative(payload, result, budget);
                    break;
                case TensorFileFormat.PyTorch:
                {
                    // The reader checks the declared sizes before the seal check inflates (and hashes) every entry.
                    PyTorchZipReader.Read(stream, budget, zip => Integrity.VerifyZip(zip, source), result);
                    break;
                }
                case TensorFileFormat.Safetensors:
                    Integrity.VerifySafetensors(bytes, source);
                    // Entries may overlap, so the data section's length alone does not bound what they allocate.
                    if (SafetensorsTensorBytes(bytes) is var needed && needed > budget)
                        throw new InvalidDataException($"its tensors need {needed} bytes, more than the load budget of {budget} bytes (LoadLimits.MaxLoadBytes)");
                    foreach (var (key, t) in Safetensors.LoadStateDict(stream, leaveOpen: true))
                        result.Add(new(key, t.DetachFromDisposeScope()));
                    break;
                default:
                    throw new ArgumentOutOfRangeException(nameof(format), format, "unknown format");
            }
            return result;
        }
        catch (Exception ex) when (ex is not ModelFormatException and not ArgumentOutOfRangeException)
        {
            foreach (var (_, t) in result) t.Dispose();
            throw new ModelFormatException($"{source} is not a readable {format} tensor file: {ex.Message}", ex);
        }
        catch
        {
            foreach (var (_, t) in result) t.Dispose();
            throw;
        }
    }

    /// <summary>Zip ("PK\x03\x04") is PyTorch; an 8-byte header length followed by '{' is safetensors; else native.</summary>
    public static TensorFileFormat Detect(Stream stream, string source)
    {
        if (!stream.CanSeek)
            throw new ArgumentException($"Cannot detect the format of {source}: the stream is not seekable. Pass the format explicitly.");
        long start = stream.Position;
        Span<byte> head = stackalloc byte[9];
        int n = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        stream.Position = start;
        if (n == 0) throw new ModelFormatException($"{source} is empty.");
        if (n >= 4 && head[0] == (byte)'P' && head[1] == (byte)'K' && head[2] == 3 && head[3] == 4)
            return TensorFileFormat.PyTorch;
        if (n == 9 && head[8] == (byte)'{' && BitConverter.ToUInt64(head[..8]) < (ulong)Math.Max(0, stream.Length - start))
            return TensorFileFormat.Safetensors;
        return TensorFileFormat.TorchSharp;
    }

    // Hand-written rather than TorchSharp's Tensor.Load: that one trusts the header and allocates whatever shape a
    // corrupt file claims. Here every count and size is checked against the bytes left before anything is allocated.
    private static void ReadNative(Stream stream, List<KeyValuePair<string, Tensor>> result, long budget)
    {
        long total = 0;
        using var reader = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
        long remaining() => stream.CanSeek ? stream.Length - stream.Position : long.MaxValue;
        long count = ReadLeb(reader);
        if (count < 0 || count > remaining())
            throw new InvalidDataException($"entry count {count} does not fit the file");
        var keys = new HashSet<string>();
        for (long i = 0; i < count; i++)
        {
            string key = reader.ReadString();
            if (!keys.Add(key)) throw new InvalidDataException($"duplicate key '{key}'");
            var dtype = (ScalarType)ReadLeb(reader);
            int elementSize = ElementSize(dtype) ?? throw new InvalidDataException($"unsupported dtype code {(long)dtype} for '{key}'");
            long rank = ReadLeb(reader);
            if (rank is < 0 or > 64) throw new InvalidDataException($"rank {rank} for '{key}'");
            var shape = new long[rank];
            long elements = 1;
            for (int d = 0; d < rank; d++)
            {
                shape[d] = ReadLeb(reader);
                if (shape[d] < 0) throw new InvalidDataException($"negative dimension for '{key}'");
                elements = shape[d] == 0 ? 0 : checked(elements * shape[d]);
                if (elements > remaining()) throw new InvalidDataException($"shape [{string.Join(", ", shape.Take(d + 1))}…] of '{key}' is larger than the file");
            }
            long byteCount = checked(elements * elementSize);
            if (byteCount > remaining())
                throw new InvalidDataException($"'{key}' needs {byteCount} bytes, the file has {remaining()} left (truncated?)");
            total += byteCount; // both are at most the file's length: no overflow
            if (total > budget)
                throw new InvalidDataException($"'{key}' brings the tensors to {total} bytes, more than the load budget of {budget} bytes (LoadLimits.MaxLoadBytes)");
            var tensor = empty(shape, dtype: dtype);
            result.Add(new(key, tensor.DetachFromDisposeScope()));
            if (byteCount > 0)
            {
                var span = tensor.bytes;
                stream.ReadExactly(span);
            }
        }
        if (stream.CanSeek && remaining() != 0)
            throw new InvalidDataException($"{remaining()} unexpected bytes after the last entry");
    }

    // Called after Integrity.VerifySafetensors, which has checked every entry's offsets against the data section.
    private static long SafetensorsTensorBytes(byte[] file)
    {
        int length = (int)BitConverter.ToUInt64(file, 0);
        var header = System.Text.Json.Nodes.JsonNode.Parse(file.AsSpan(8, length))!.AsObject();
        long total = 0;
        foreach (var (name, node) in header)
        {
            if (name == "__metadata__") continue;
            var offsets = node!["data_offsets"]!.AsArray();
            total = checked(total + (offsets[1]!.GetValue<long>() - offsets[0]!.GetValue<long>()));
        }
        return total;
    }

    // TorchSharp's LEB128 codec is internal; this is the same unsigned encoding its module.save writes.
    private static void WriteLeb(BinaryWriter writer, long value)
    {
        do
        {
            byte b = (byte)(value & 0x7f);
            value >>= 7;
            writer.Write(value != 0 ? (byte)(b | 0x80) : b);
        } while (value != 0);
    }

    /// <summary>Reads one number of TorchSharp's LEB128 encoding (at most 10 bytes); also used for optimizer states.</summary>
    internal static long ReadLeb(BinaryReader reader)
    {
        long result = 0;
        for (int i = 0; i < 10; i++)
        {
            long b = reader.ReadByte();
            result |= (b & 0x7f) << (i * 7);
            if ((b & 0x80) == 0) return result;
        }
        throw new InvalidDataException("malformed variable-length integer");
    }

    internal static int? ElementSize(ScalarType dtype) => dtype switch
    {
        ScalarType.Byte or ScalarType.Int8 or ScalarType.Bool => 1,
        ScalarType.Int16 or ScalarType.Float16 or ScalarType.BFloat16 => 2,
        ScalarType.Int32 or ScalarType.Float32 => 4,
        ScalarType.Int64 or ScalarType.Float64 or ScalarType.ComplexFloat32 => 8,
        ScalarType.ComplexFloat64 => 16,
        _ => null,
    };
}
