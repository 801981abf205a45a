using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// 6.6 Save and load a tensor, a list of tensors, or a name → tensor dictionary, to a file or a stream.
/// Round trips are exact (dtype, shape, values). Saving to a path is atomic. Loaded tensors are on the CPU and owned
/// by the caller.
/// </summary>
/// <remarks>A single tensor is stored as a one-entry dictionary with key "0"; a list as keys "0", "1", ….</remarks>
public static class TensorIO
{
    /// <summary>Saves one tensor (the chapter's <c>torch.save(x, 'x-file')</c>).</summary>
    public static void Save(Tensor tensor, string path, TensorFileFormat format = TensorFileFormat.TorchSharp) =>
        SaveList([tensor ?? throw new ArgumentNullException(nameof(tensor))], path, format);

    /// <summary>Saves one tensor to a stream.</summary>
    public static void Save(Tensor tensor, Stream stream, TensorFileFormat format = TensorFileFormat.TorchSharp) =>
        SaveList([tensor ?? throw new ArgumentNullException(nameof(tensor))], stream, format);

    /// <summary>Saves a list of tensors (the chapter's <c>torch.save([x, y], 'x-files')</c>).</summary>
    public static void SaveList(IReadOnlyList<Tensor> tensors, string path, TensorFileFormat format = TensorFileFormat.TorchSharp)
    {
        var entries = ListEntries(tensors);
        AtomicFile.Write(path, s => TensorDictCodec.Write(s, entries, format));
    }

    /// <summary>Saves a list of tensors to a stream.</summary>
    public static void SaveList(IReadOnlyList<Tensor> tensors, Stream stream, TensorFileFormat format = TensorFileFormat.TorchSharp)
    {
        ArgumentNullException.ThrowIfNull(stream);
        TensorDictCodec.Write(stream, ListEntries(tensors), format);
    }

    /// <summary>Saves a dictionary of tensors (the chapter's <c>torch.save({'x': x, 'y': y}, 'mydict')</c>).</summary>
    public static void SaveDict(IReadOnlyDictionary<string, Tensor> tensors, string path, TensorFileFormat format = TensorFileFormat.TorchSharp)
    {
        var entries = DictEntries(tensors);
        AtomicFile.Write(path, s => TensorDictCodec.Write(s, entries, format));
    }

    /// <summary>Saves a dictionary of tensors to a stream.</summary>
    public static void SaveDict(IReadOnlyDictionary<string, Tensor> tensors, Stream stream, TensorFileFormat format = TensorFileFormat.TorchSharp)
    {
        ArgumentNullException.ThrowIfNull(stream);
        TensorDictCodec.Write(stream, DictEntries(tensors), format);
    }

    /// <summary>Loads the single tensor a file holds.</summary>
    /// <param name="path">The file.</param>
    /// <param name="format">The file's format; detected by default.</param>
    /// <param name="limits">How much the file may make us allocate; null is <see cref="LoadLimits.Default"/>.</param>
    public static Tensor Load(string path, TensorFileFormat format = TensorFileFormat.Auto, LoadLimits? limits = null)
    {
        var list = LoadList(path, format, limits);
        return Single(list, path);
    }

    /// <summary>Loads the single tensor a stream holds.</summary>
    public static Tensor Load(Stream stream, TensorFileFormat format = TensorFileFormat.Auto, LoadLimits? limits = null) =>
        Single(LoadList(stream, format, limits), "stream");

    /// <summary>Loads a list saved by <see cref="SaveList(IReadOnlyList{Tensor}, string, TensorFileFormat)"/>.</summary>
    public static IReadOnlyList<Tensor> LoadList(string path, TensorFileFormat format = TensorFileFormat.Auto, LoadLimits? limits = null) =>
        ToList(LoadEntries(path, format, limits), path);

    /// <summary>Loads a list from a stream.</summary>
    public static IReadOnlyList<Tensor> LoadList(Stream stream, TensorFileFormat format = TensorFileFormat.Auto, LoadLimits? limits = null) =>
        ToList(LoadEntries(stream, format, limits), "stream");

    /// <summary>Loads a name → tensor dictionary.</summary>
    public static Dictionary<string, Tensor> LoadDict(string path, TensorFileFormat format = TensorFileFormat.Auto, LoadLimits? limits = null) =>
        LoadEntries(path, format, limits).ToDictionary(e => e.Key, e => e.Value);

    /// <summary>Loads a name → tensor dictionary from a stream.</summary>
    public static Dictionary<string, Tensor> LoadDict(Stream stream, TensorFileFormat format = TensorFileFormat.Auto, LoadLimits? limits = null) =>
        LoadEntries(stream, format, limits).ToDictionary(e => e.Key, e => e.Value);

    internal static List<KeyValuePair<string, Tensor>> LoadEntries(string path, TensorFileFormat format, LoadLimits? limits)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"No tensor file at {Path.GetFullPath(path)}.", path);
        using var stream = File.OpenRead(path);
        return TensorDictCodec.Read(stream, format, path, limits ?? LoadLimits.Default);
    }

    internal static List<KeyValuePair<string, Tensor>> LoadEntries(Stream stream, TensorFileFormat format, LoadLimits? limits) =>
        TensorDictCodec.Read(stream ?? throw new ArgumentNullException(nameof(stream)), format, "stream", limits ?? LoadLimits.Default);

    private static List<KeyValuePair<string, Tensor>> ListEntries(IReadOnlyList<Tensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var entries = new List<KeyValuePair<string, Tensor>>(tensors.Count);
        for (int i = 0; i < tensors.Count; i++)
            entries.Add(new(i.ToString(System.Globalization.CultureInfo.InvariantCulture),
                tensors[i] ?? throw new ArgumentNullException(nameof(tensors), $"tensor {i} is null")));
        return entries;
    }

    private static List<KeyValuePair<string, Tensor>> DictEntries(IReadOnlyDictionary<string, Tensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        return tensors.Select(kv => new KeyValuePair<string, Tensor>(kv.Key,
            kv.Value ?? throw new ArgumentNullException(nameof(tensors), $"tensor '{kv.Key}' is null"))).ToList();
    }

    private static List<Tensor> ToList(List<KeyValuePair<string, Tensor>> entries, string source)
    {
        var byIndex = new Tensor?[entries.Count];
        foreach (var (key, t) in entries)
        {
            if (!int.TryParse(key, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int i)
                || i >= entries.Count || byIndex[i] is not null)
            {
                foreach (var (_, d) in entries) d.Dispose();
                throw new ModelFormatException($"{source} holds a dictionary (key '{key}'), not a list of tensors: use LoadDict.");
            }
            byIndex[i] = t;
        }
        return byIndex.Select(t => t!).ToList();
    }

    private static Tensor Single(IReadOnlyList<Tensor> list, string source)
    {
        if (list.Count == 1) return list[0];
        foreach (var t in list) t.Dispose();
        throw new ModelFormatException($"{source} holds {list.Count} tensors, not one: use LoadList.");
    }
}
