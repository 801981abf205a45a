using System.IO.Compression;
using System.IO.Hashing;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// Reads a state dict from PyTorch's zip format (<c>torch.save</c>: <c>&lt;folder&gt;/data.pkl</c> plus one raw entry
/// <c>&lt;folder&gt;/data/&lt;key&gt;</c> per storage) without trusting it. The pickle is evaluated by
/// <see cref="PickleReader"/>, which executes nothing; the result must be a dict of name → tensor (or a tensor, or a list of
/// tensors, read as "0", "1", …); and every storage,
/// shape, stride and offset is checked against the zip's entries and the byte budget before the first tensor is
/// allocated. Only then is one tensor per storage read straight from its entry, and each name gets its own contiguous
/// tensor.
/// </summary>
/// <remarks>Zip entry names are only looked up, never turned into file paths.</remarks>
internal static class PyTorchZipReader
{
    /// <summary>The most a data.pkl may inflate to, whatever the budget: a state dict's pickle is kilobytes per tensor.</summary>
    public const long MaxPickleBytes = 64L << 20;

    private const string PickleName = "/data.pkl";

    // Reading a storage through Span<byte> needs pieces under 2 GiB; 1 GiB keeps every piece's byte count an int.
    private const long ChunkBytes = 1L << 30;

    private static readonly Dictionary<string, (ScalarType dtype, int size)> StorageTypes = new(StringComparer.Ordinal)
    {
        ["DoubleStorage"] = (ScalarType.Float64, 8),
        ["FloatStorage"] = (ScalarType.Float32, 4),
        ["HalfStorage"] = (ScalarType.Float16, 2),
        ["BFloat16Storage"] = (ScalarType.BFloat16, 2),
        ["LongStorage"] = (ScalarType.Int64, 8),
        ["IntStorage"] = (ScalarType.Int32, 4),
        ["ShortStorage"] = (ScalarType.Int16, 2),
        ["CharStorage"] = (ScalarType.Int8, 1),
        ["ByteStorage"] = (ScalarType.Byte, 1),
        ["BoolStorage"] = (ScalarType.Bool, 1),
        // PyBridge writes complex tensors too; keep reading what we write.
        ["ComplexFloatStorage"] = (ScalarType.ComplexFloat32, 8),
        ["ComplexDoubleStorage"] = (ScalarType.ComplexFloat64, 16),
    };

    private sealed record StorageRef(string Key, string TypeName, ScalarType Dtype, int ElementSize, long Numel, ZipArchiveEntry Entry)
    {
        public long Bytes => checked(Numel * ElementSize);
    }

    private sealed record TensorRef(string Name, StorageRef Storage, long Offset, long[] Size, long[] Stride);

    /// <summary>
    /// Reads the state dict into <paramref name="result"/> (in the dict's order); on failure nothing is left allocated.
    /// <paramref name="verifySeal"/> runs once the entries' declared sizes are known to fit the budget, before the
    /// pickle is read.
    /// </summary>
    public static void Read(Stream zip, long budget, Action<Stream> verifySeal, List<KeyValuePair<string, Tensor>> result)
    {
        long start = zip.Position;
        try
        {
            using (var archive = new ZipArchive(zip, ZipArchiveMode.Read, leaveOpen: true))
                CheckDeclaredSizes(archive, budget);
            zip.Position = start;
            verifySeal(zip);
            zip.Position = start;
            using (var archive = new ZipArchive(zip, ZipArchiveMode.Read, leaveOpen: true))
                Allocate(Parse(archive, budget), result);
        }
        finally
        {
            zip.Position = start;
        }
    }

    /// <summary>
    /// The sizes the zip declares must fit the budget together, before anything inflates an entry (the seal check
    /// hashes them all). That bounds every later read: .NET's entry stream stops at the declared size, and our own
    /// reads also check the size and CRC-32 of what they get, so a header that lies is refused, not believed.
    /// </summary>
    private static void CheckDeclaredSizes(ZipArchive archive, long budget)
    {
        long total = 0;
        foreach (var entry in archive.Entries)
        {
            if (entry.Length < 0) throw new InvalidDataException($"zip entry '{entry.FullName}' declares {entry.Length} bytes");
            if (entry.FullName.EndsWith(PickleName, StringComparison.Ordinal) && entry.Length > Math.Min(budget, MaxPickleBytes))
                throw new InvalidDataException(
                    $"'{entry.FullName}' declares {entry.Length} bytes, more than the {Math.Min(budget, MaxPickleBytes)} bytes a pickle may have");
            total = AddWithin(total, entry.Length);
            if (total > budget)
                throw new InvalidDataException(
                    $"zip entry '{entry.FullName}' declares {entry.Length} bytes, which (with the entries before it) is more than the load budget of {budget} bytes (LoadLimits.MaxLoadBytes)");
        }
    }

    private static List<TensorRef> Parse(ZipArchive archive, long budget)
    {
        var pickles = archive.Entries.Where(e => e.FullName.EndsWith(PickleName, StringComparison.Ordinal)
            && e.FullName.IndexOf('/') == e.FullName.Length - PickleName.Length && e.FullName.Length > PickleName.Length).ToList();
        if (pickles.Count != 1)
            throw new InvalidDataException($"expected one '<folder>/data.pkl' entry, found {pickles.Count}");
        var pkl = pickles[0];
        string folder = pkl.FullName[..^PickleName.Length];

        if (archive.GetEntry(folder + "/byteorder") is { } order)
        {
            var text = System.Text.Encoding.ASCII.GetString(ReadEntry(order, 16)).Trim();
            if (text != "little")
                throw new InvalidDataException($"byteorder is '{text}'; only little-endian files can be read");
        }

        long cap = Math.Min(budget, MaxPickleBytes);
        if (pkl.Length > cap)
            throw new InvalidDataException($"'{pkl.FullName}' declares {pkl.Length} bytes, more than the {cap} bytes a pickle may have");
        var root = PickleReader.Evaluate(ReadEntry(pkl, cap));

        // torch.save(x) and torch.save([x, y]) pickle a bare tensor and a list: read them as keys "0", "1", …, the
        // layout TensorIO.Load and LoadList expect (and TensorIO.Save and SaveList write).
        var items = root switch
        {
            PyDict d => d.Items,
            PyList l => Indexed(l.Items),
            PyTuple t => Indexed(t.Items),
            PyCall { Callable: PyGlobal { Module: "torch._utils", Name: "_rebuild_tensor_v2" or "_rebuild_parameter" } } => Indexed([root]),
            _ => throw new InvalidDataException($"the pickle holds {PickleReader.Describe(root)}, not a dict of name → tensor (a state dict), a tensor or a list of tensors"),
        };
        var storages = new Dictionary<string, StorageRef>(StringComparer.Ordinal);
        var names = new HashSet<string>(StringComparer.Ordinal);
        var tensors = new List<TensorRef>(items.Count);
        foreach (var (k, v) in items)
        {
            if (k is not string name)
                throw new InvalidDataException($"a key is {PickleReader.Describe(k)}, not a string (a state dict is keyed by name)");
            if (!names.Add(name)) throw new InvalidDataException($"duplicate key '{name}'");
            var tensor = ParseTensor(name, v, archive, folder, storages);
            CheckExtent(tensor);
            tensors.Add(tensor);
        }

        // Peak memory: every storage, plus a copy for each name that cannot simply keep its storage.
        long storageBytes = 0, copyBytes = 0;
        foreach (var s in storages.Values) storageBytes = AddWithin(storageBytes, s.Bytes);
        var uses = Uses(tensors);
        foreach (var t in tensors)
            if (!KeepsStorage(t, uses)) copyBytes = AddWithin(copyBytes, CopyBytes(t));
        static string Bytes(long n) => n == long.MaxValue ? "over 2^63" : n.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (AddWithin(storageBytes, copyBytes) > budget)
            throw new InvalidDataException(
                $"the tensors need {Bytes(AddWithin(storageBytes, copyBytes))} bytes ({storageBytes} in {storages.Count} storages, {Bytes(copyBytes)} in copies), more than the load budget of {budget} bytes (LoadLimits.MaxLoadBytes)");
        return tensors;
    }

    private static List<KeyValuePair<object?, object?>> Indexed(IReadOnlyList<object?> values) =>
        values.Select((v, i) => new KeyValuePair<object?, object?>(i.ToString(System.Globalization.CultureInfo.InvariantCulture), v)).ToList();

    private static TensorRef ParseTensor(string name, object? value, ZipArchive archive, string folder, Dictionary<string, StorageRef> storages)
    {
        // A Parameter is pickled as _rebuild_parameter(tensor, requires_grad, hooks); the tensor inside is what we need.
        if (value is PyCall { Callable: PyGlobal { Module: "torch._utils", Name: "_rebuild_parameter" } } parameter)
        {
            if (parameter.Args.Items.Length != 3)
                throw new InvalidDataException($"'{name}': _rebuild_parameter has {parameter.Args.Items.Length} arguments (expected 3)");
            value = parameter.Args.Items[0];
        }
        if (value is not PyCall { Callable: PyGlobal { Module: "torch._utils", Name: "_rebuild_tensor_v2" } } call)
            throw new InvalidDataException($"'{name}' is {PickleReader.Describe(value)}, not a tensor (expected torch._utils._rebuild_tensor_v2)");
        var args = call.Args.Items;
        if (args.Length is not (6 or 7))
            throw new InvalidDataException($"'{name}': _rebuild_tensor_v2 has {args.Length} arguments (expected 6 or 7)");
        if (args[0] is not PyPersistent { Id: PyTuple pid })
            throw new InvalidDataException($"'{name}': the storage is {PickleReader.Describe(args[0])}, not a persistent storage record");
        var storage = ParseStorage(name, pid, archive, folder, storages);
        if (args[1] is not long offset)
            throw new InvalidDataException($"'{name}': storage_offset is {PickleReader.Describe(args[1])}, not an integer");
        var size = Longs(name, "size", args[2]);
        var stride = Longs(name, "stride", args[3]);
        if (size.Length != stride.Length)
            throw new InvalidDataException($"'{name}': size has {size.Length} dimensions, stride {stride.Length}");
        if (args[4] is not bool)
            throw new InvalidDataException($"'{name}': requires_grad is {PickleReader.Describe(args[4])}, not a bool");
        return new TensorRef(name, storage, offset, size, stride);
    }

    private static StorageRef ParseStorage(string name, PyTuple pid, ZipArchive archive, string folder, Dictionary<string, StorageRef> storages)
    {
        var p = pid.Items;
        if (p.Length != 5 || p[0] is not "storage" || p[1] is not PyGlobal type || p[2] is not string key || p[3] is not string || p[4] is not long numel)
            throw new InvalidDataException($"'{name}': the storage record is not ('storage', type, key, location, numel)");
        if (type.Module != "torch" || !StorageTypes.TryGetValue(type.Name, out var kind))
            throw new InvalidDataException($"'{name}': unsupported storage type {type.Module}.{type.Name}");
        if (key.Length is 0 or > 64 || !key.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
            throw new InvalidDataException($"'{name}': storage key '{PickleReader.Describe(key)}' is not a plain name");
        if (numel < 0) throw new InvalidDataException($"'{name}': storage '{key}' has {numel} elements");
        if (storages.TryGetValue(key, out var known))
        {
            if (known.TypeName != type.Name || known.Numel != numel)
                throw new InvalidDataException(
                    $"'{name}': storage '{key}' is {type.Name} of {numel} elements here but {known.TypeName} of {known.Numel} elsewhere");
            return known;
        }
        string entryName = $"{folder}/data/{key}";
        var entry = archive.GetEntry(entryName)
            ?? throw new InvalidDataException($"'{name}': storage '{key}' has no entry '{entryName}' in the zip");
        var storage = new StorageRef(key, type.Name, kind.dtype, kind.size, numel, entry);
        long bytes = numel > long.MaxValue / kind.size ? -1 : storage.Bytes;
        if (entry.Length != bytes)
            throw new InvalidDataException(
                $"'{name}': storage '{key}' is {numel} x {type.Name} ({(bytes < 0 ? "overflow" : bytes.ToString(System.Globalization.CultureInfo.InvariantCulture))} bytes), but its entry '{entryName}' holds {entry.Length} bytes");
        storages.Add(key, storage);
        return storage;
    }

    private static long[] Longs(string name, string what, object? value)
    {
        if (value is not PyTuple { Items: var items } || items.Length > 64)
            throw new InvalidDataException($"'{name}': {what} is {PickleReader.Describe(value)}, not a tuple of at most 64 integers");
        var result = new long[items.Length];
        for (int i = 0; i < items.Length; i++)
        {
            if (items[i] is not long v || v < 0)
                throw new InvalidDataException($"'{name}': {what}[{i}] is {PickleReader.Describe(items[i])} (expected a non-negative integer)");
            result[i] = v;
        }
        return result;
    }

    // The last element a view touches is offset + Σ (size[i] − 1)·stride[i]; it must lie inside the storage.
    private static void CheckExtent(TensorRef t)
    {
        string Shape() => $"size ({string.Join(", ", t.Size)}), stride ({string.Join(", ", t.Stride)}), offset {t.Offset}";
        if (t.Offset < 0) throw new InvalidDataException($"'{t.Name}': negative storage offset {t.Offset}");
        if (t.Size.Contains(0)) return;
        long extent = t.Offset;
        try
        {
            for (int i = 0; i < t.Size.Length; i++) extent = checked(extent + (t.Size[i] - 1) * t.Stride[i]);
            extent = checked(extent + 1);
        }
        catch (OverflowException)
        {
            throw new InvalidDataException($"'{t.Name}': {Shape()} overflows a 64-bit index");
        }
        if (extent > t.Storage.Numel)
            throw new InvalidDataException(
                $"'{t.Name}': {Shape()} reaches element {extent - 1}, but storage '{t.Storage.Key}' has {t.Storage.Numel} elements");
    }

    private static long Elements(long[] size)
    {
        long n = 1;
        foreach (var d in size) n = d == 0 ? 0 : checked(n * d);
        return n;
    }

    // A stride-0 view can name far more elements than its storage holds; saturate rather than overflow.
    private static long CopyBytes(TensorRef t)
    {
        try { return checked(Elements(t.Size) * t.Storage.ElementSize); }
        catch (OverflowException) { return long.MaxValue; }
    }

    private static long AddWithin(long a, long b) => b > long.MaxValue - a ? long.MaxValue : a + b;

    // A name may keep its storage's tensor (no copy) when it alone uses the storage and covers it in order.
    private static bool KeepsStorage(TensorRef t, Dictionary<StorageRef, int> uses)
    {
        if (t.Offset != 0 || uses[t.Storage] != 1) return false;
        long elements;
        try { elements = Elements(t.Size); }
        catch (OverflowException) { return false; }
        if (elements != t.Storage.Numel || elements == 0) return false;
        long expected = 1;
        for (int i = t.Size.Length - 1; i >= 0; i--)
        {
            if (t.Size[i] == 1) continue;
            if (t.Stride[i] != expected) return false;
            expected *= t.Size[i];
        }
        return true;
    }

    private static Dictionary<StorageRef, int> Uses(List<TensorRef> tensors)
    {
        var uses = new Dictionary<StorageRef, int>(ReferenceEqualityComparer.Instance);
        foreach (var t in tensors) uses[t.Storage] = uses.GetValueOrDefault(t.Storage) + 1;
        return uses;
    }

    private static void Allocate(List<TensorRef> tensors, List<KeyValuePair<string, Tensor>> result)
    {
        // Storages and views die with the scope; only the results are detached from it, at the very end.
        using var scope = NewDisposeScope();
        var uses = Uses(tensors);
        var loaded = new Dictionary<StorageRef, Tensor>(ReferenceEqualityComparer.Instance);
        foreach (var storage in uses.Keys)
        {
            var tensor = empty([storage.Numel], dtype: storage.Dtype);
            loaded.Add(storage, tensor);
            using var s = storage.Entry.Open();
            var crc = new Crc32();
            long done = 0, chunk = ChunkBytes / storage.ElementSize;
            for (long at = 0; at < storage.Numel; at += chunk)
            {
                using var piece = tensor.narrow(0, at, Math.Min(chunk, storage.Numel - at));
                Fill(s, piece.bytes, storage.Entry, ref done, crc);
            }
            Finish(s, storage.Entry, crc);
        }
        var made = new List<KeyValuePair<string, Tensor>>(tensors.Count);
        foreach (var t in tensors)
        {
            var storage = loaded[t.Storage];
            Tensor value;
            if (KeepsStorage(t, uses))
                value = storage.as_strided(t.Size, t.Stride, 0);
            else
            {
                // Its own memory: a tied tensor's aliases must not share it, and a view must not pin a larger storage.
                value = empty(t.Size, dtype: t.Storage.Dtype);
                if (Elements(t.Size) > 0)
                    using (var view = storage.as_strided(t.Size, t.Stride, t.Offset))
                        value.copy_(view);
            }
            made.Add(new(t.Name, value));
        }
        foreach (var (name, value) in made) result.Add(new(name, value.DetachFromDisposeScope()));
    }

    /// <summary>An entry's bytes, refused if it declares more than <paramref name="cap"/> or inflates to other than it declares.</summary>
    private static byte[] ReadEntry(ZipArchiveEntry entry, long cap)
    {
        if (entry.Length > cap)
            throw new InvalidDataException($"'{entry.FullName}' declares {entry.Length} bytes, more than the {cap} expected");
        var bytes = new byte[entry.Length];
        using var s = entry.Open();
        var crc = new Crc32();
        long done = 0;
        Fill(s, bytes, entry, ref done, crc);
        Finish(s, entry, crc);
        return bytes;
    }

    private static void Fill(Stream s, Span<byte> into, ZipArchiveEntry entry, ref long done, Crc32 crc)
    {
        while (into.Length > 0)
        {
            int n = s.Read(into);
            if (n == 0)
                throw new InvalidDataException($"zip entry '{entry.FullName}' inflates to {done} bytes, but its header declares {entry.Length}");
            crc.Append(into[..n]);
            into = into[n..];
            done += n;
        }
    }

    // The declared size is only a claim. One byte more than declared means it lied (should .NET ever read past it);
    // a CRC-32 that differs means the bytes are not the ones the header describes (.NET stops at the declared size).
    private static void Finish(Stream s, ZipArchiveEntry entry, Crc32 crc)
    {
        Span<byte> one = stackalloc byte[1];
        if (s.Read(one) != 0)
            throw new InvalidDataException($"zip entry '{entry.FullName}' inflates to more than the {entry.Length} bytes its header declares");
        uint actual = crc.GetCurrentHashAsUInt32(); // the zip format's CRC-32 (IEEE 802.3), as System.IO.Hashing computes it
        if (actual != entry.Crc32)
            throw new InvalidDataException(
                $"zip entry '{entry.FullName}': the first {entry.Length} bytes (its declared size) have CRC-32 {actual:x8}, its header says {entry.Crc32:x8}; the declared size or the data is wrong");
    }
}
