using System.ComponentModel;
using TorchSharp;
using System.IO.Compression;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms;
using MlNetGuide.Modules;
using MlNetGuide.Training;
using static TorchSharp.torch;

namespace MlNetGuide.Estimators;

/// <summary>
/// Saves and loads ML.NET models that contain neural networks, weights included, in one ML.NET model zip.
/// </summary>
/// <remarks>
/// <para>Zip layout: the usual ML.NET entries hold a placeholder model, so that a plain <c>mlContext.Model.Load</c> fails
/// at once with a message naming <see cref="Load(MLContext, string, out DataViewSchema, LoadLimits)"/> (it cannot rebuild a
/// network: ML.NET keeps its loader API internal). Under <c>MlNetGuide/</c>: <c>manifest.json</c> lists the pipeline's
/// parts in order; each run of ordinary ML.NET transformers is a nested ML.NET model (<c>partN.zip</c>, saved with
/// <c>mlContext.Model.Save</c>); each network is <c>partN.json</c> (task, columns, architecture, key values) and
/// <c>partN.weights</c> (its state dict in TorchSharp's format).</para>
/// <para>Loading builds each network afresh from its architecture — built-ins need nothing, a user-defined module must be
/// registered under its name with <see cref="NeuralModuleRegistry"/> — and loads the weights strictly: a file whose
/// weights do not fit the architecture is rejected with a <see cref="ModelFormatException"/> naming the keys and shapes.</para>
/// </remarks>
public static class NeuralModel
{
    /// <summary>The contract name of the placeholder: what a plain <c>mlContext.Model.Load</c> reports.</summary>
    public const string ContractName =
        "MlNetGuide.NeuralNetwork (this model holds MlNetGuide neural networks: load it with MlNetGuide.Estimators.NeuralModel.Load(mlContext, path, out schema))";

    private const string Prefix = "MlNetGuide/";
    private const string ManifestEntry = Prefix + "manifest.json";
    private const int FormatVersion = 1;
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    /// <summary>Saves <paramref name="model"/> (any ML.NET transformer or chain containing networks) to <paramref name="path"/>, atomically.</summary>
    public static void Save(MLContext mlContext, ITransformer model, DataViewSchema inputSchema, string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var bytes = SaveToBytes(mlContext, model, inputSchema);
        AtomicFile.Write(path, s => s.Write(bytes));
    }

    /// <summary>Saves <paramref name="model"/> to a stream.</summary>
    public static void Save(MLContext mlContext, ITransformer model, DataViewSchema inputSchema, Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        stream.Write(SaveToBytes(mlContext, model, inputSchema));
    }

    /// <summary>Loads a model saved by <see cref="Save(MLContext, ITransformer, DataViewSchema, string)"/>.</summary>
    /// <param name="mlContext">The context; its <c>GpuDeviceId</c> picks the device the networks are loaded on.</param>
    /// <param name="path">The model zip.</param>
    /// <param name="inputSchema">The schema of the data the model was fitted on.</param>
    /// <param name="limits">The memory budget for what the file describes (default: derived from the file's length).</param>
    /// <exception cref="FileNotFoundException">No file at <paramref name="path"/>.</exception>
    /// <exception cref="ModelFormatException">Not such a model, corrupt, over the budget, or its weights do not fit its architecture.</exception>
    public static ITransformer Load(MLContext mlContext, string path, out DataViewSchema inputSchema, LoadLimits? limits = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"No model file at {Path.GetFullPath(path)}.", path);
        using var stream = File.OpenRead(path);
        return Load(mlContext, stream, out inputSchema, path, limits ?? LoadLimits.Default);
    }

    /// <summary>Loads a model from a stream.</summary>
    public static ITransformer Load(MLContext mlContext, Stream stream, out DataViewSchema inputSchema, LoadLimits? limits = null) =>
        Load(mlContext, stream, out inputSchema, "stream", limits ?? LoadLimits.Default);

    private static byte[] SaveToBytes(MLContext ml, ITransformer model, DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(ml);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputSchema);
        using var ms = new MemoryStream();
        ml.Model.Save(Placeholder(ml), inputSchema, ms);
        using (var zip = new ZipArchive(ms, ZipArchiveMode.Update, leaveOpen: true))
        {
            var manifest = new Manifest { Version = FormatVersion };
            var pending = new List<ITransformer>();
            var schema = inputSchema;
            var pendingSchema = inputSchema;
            void Flush(bool always)
            {
                if (pending.Count == 0 && !always) return;
                var entry = $"{Prefix}part{manifest.Parts.Count}.zip";
                using (var s = zip.CreateEntry(entry, CompressionLevel.NoCompression).Open())
                using (var buffer = new MemoryStream())
                {
                    ml.Model.Save(new TransformerChain<ITransformer>(pending.ToArray()), pendingSchema, buffer);
                    buffer.Position = 0;
                    buffer.CopyTo(s);
                }
                manifest.Parts.Add(new Part { Kind = "mlnet", Entry = entry });
                pending.Clear();
            }
            Flush(always: true); // part 0 always exists: it carries the input schema
            foreach (var t in Flatten(model))
            {
                if (t is NeuralNetworkTransformer neural)
                {
                    Flush(always: false);
                    int index = manifest.Parts.Count;
                    var config = NetworkDescription.Of(neural);
                    WriteEntry(zip, $"{Prefix}part{index}.json", s => JsonSerializer.Serialize(s, config, Json));
                    WriteEntry(zip, $"{Prefix}part{index}.weights", s => StateDict.Save(neural.Scorer.Module, s));
                    manifest.Parts.Add(new Part { Kind = "neural", Entry = $"{Prefix}part{index}" });
                    schema = neural.GetOutputSchema(schema);
                    pendingSchema = schema;
                }
                else
                {
                    pending.Add(t);
                    schema = t.GetOutputSchema(schema);
                }
            }
            Flush(always: false);
            WriteEntry(zip, ManifestEntry, s => JsonSerializer.Serialize(s, manifest, Json));
        }
        Integrity.SealZip(ms); // a flipped bit anywhere in the zip fails the load instead of changing a weight
        return ms.ToArray();
    }

    // What a manifest, a config or a seal may reasonably be: JSON documents of a few kilobytes.
    private const long MaxJsonBytes = 1 << 20;
    private const int MaxParts = 256;

    private static ITransformer Load(MLContext ml, Stream stream, out DataViewSchema inputSchema, string source, LoadLimits limits)
    {
        ArgumentNullException.ThrowIfNull(ml);
        ArgumentNullException.ThrowIfNull(stream);
        TorchSharpRuntime.EnsureLoaded();
        var device = LoadDevice(ml);
        var loaded = new List<ITransformer>();
        try
        {
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            copy.Position = 0;
            // Every size below is checked against this budget before anything it describes is inflated or allocated.
            var budget = new LoadBudget(limits.BudgetFor(copy.Length), source);
            Integrity.VerifyZip(copy, source, budget.Total);
            using var zip = new ZipArchive(copy, ZipArchiveMode.Read);
            var manifestEntry = zip.GetEntry(ManifestEntry);
            if (manifestEntry is null)
                return PlainModelZip.Load(ml, copy, zip, out inputSchema, source, device, budget);
            var manifest = ReadJson<Manifest>(manifestEntry, source);
            if (manifest.Version != FormatVersion)
                throw new ModelFormatException($"{source} has MlNetGuide model format {manifest.Version}; this version reads format {FormatVersion}.");
            if (manifest.Parts is not { Count: > 0 } parts || parts[0].Kind != "mlnet")
                throw new ModelFormatException($"{source}: the manifest does not start with the input-schema part.");
            if (parts.Count > MaxParts)
                throw new ModelFormatException($"{source}: the manifest lists {parts.Count} parts; at most {MaxParts} are accepted.");
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var part in parts)
                if (!seen.Add(part.Entry))
                    throw new ModelFormatException($"{source}: the manifest lists part '{part.Entry}' more than once.");
            DataViewSchema? schema = null;
            foreach (var part in parts)
            {
                switch (part.Kind)
                {
                    case "mlnet":
                    {
                        var entry = Entry(zip, part.Entry, source);
                        budget.Charge(entry.Length, entry.FullName);
                        var bytes = ZipBounds.ReadAll(entry, budget.Total, source);
                        // ML.NET reads the nested zip itself: bound what it may inflate there too.
                        using (var nested = new ZipArchive(new MemoryStream(bytes, writable: false), ZipArchiveMode.Read))
                            budget.Charge(ZipBounds.Check(nested, budget.Left, $"{source}:{entry.FullName}"), entry.FullName);
                        var t = ml.Model.Load(new MemoryStream(bytes, writable: false), out var partSchema);
                        schema ??= partSchema;
                        loaded.AddRange(Flatten(t));
                        break;
                    }
                    case "neural":
                        loaded.Add(LoadNeural(zip, part.Entry, source, device, budget));
                        break;
                    default:
                        throw new ModelFormatException($"{source}: unknown part kind '{part.Kind}'.");
                }
            }
            inputSchema = schema!;
            return new TransformerChain<ITransformer>(loaded.ToArray());
        }
        catch (Exception ex) when (ex is not (ModelFormatException or ModuleNotRegisteredException))
        {
            foreach (var t in loaded) (t as IDisposable)?.Dispose();
            throw new ModelFormatException($"{source} is not a readable MlNetGuide model: {ex.Message}", ex);
        }
        catch
        {
            foreach (var t in loaded) (t as IDisposable)?.Dispose();
            throw;
        }
    }

    private static NeuralNetworkTransformer LoadNeural(ZipArchive zip, string entry, string source, Device device, LoadBudget budget)
    {
        var config = ReadJson<NetworkDescription>(Entry(zip, entry + ".json", source), source);
        var weightsEntry = Entry(zip, entry + ".weights", source);
        return config.Build($"{entry}.json", weightsEntry.FullName, weightsEntry.Length, source, device, budget, module =>
        {
            using var weights = new MemoryStream(ZipBounds.ReadAll(weightsEntry, weightsEntry.Length, source), writable: false);
            StateDict.Load(module, weights, TensorFileFormat.TorchSharp);
        });
    }

    private static Device LoadDevice(MLContext ml) => MlNetDevices.ForScoring(ml);

    /// <summary>Every transformer of a (possibly nested) chain, in order.</summary>
    internal static IEnumerable<ITransformer> Flatten(ITransformer t)
    {
        if (t.GetType().IsGenericType && t.GetType().GetGenericTypeDefinition() == typeof(TransformerChain<>))
        {
            foreach (var inner in (IEnumerable<ITransformer>)t)
                foreach (var leaf in Flatten(inner))
                    yield return leaf;
        }
        else
            yield return t;
    }

    private static ITransformer Placeholder(MLContext ml)
    {
        var empty = ml.Data.LoadFromEnumerable(Array.Empty<NeuralModelPlaceholderInput>());
        return ml.Transforms.CustomMapping<NeuralModelPlaceholderInput, NeuralModelPlaceholderOutput>((_, _) => { }, ContractName).Fit(empty);
    }

    private static ZipArchiveEntry Entry(ZipArchive zip, string name, string source) =>
        zip.GetEntry(name) ?? throw new ModelFormatException($"{source} lacks the entry {name}: the file is incomplete.");

    private static void WriteEntry(ZipArchive zip, string name, Action<Stream> write)
    {
        using var s = zip.CreateEntry(name, CompressionLevel.Fastest).Open();
        write(s);
    }

    private static T ReadJson<T>(ZipArchiveEntry entry, string source)
    {
        try
        {
            return JsonSerializer.Deserialize<T>(ZipBounds.ReadAll(entry, MaxJsonBytes, source), Json)
                ?? throw new ModelFormatException($"{source}: {entry.FullName} is empty.");
        }
        catch (JsonException ex)
        {
            throw new ModelFormatException($"{source}: {entry.FullName} is not valid JSON ({ex.Message}).", ex);
        }
    }

    private sealed class Manifest
    {
        public int Version { get; set; }
        public List<Part> Parts { get; set; } = [];
    }

    private sealed class Part
    {
        public string Kind { get; set; } = "";
        public string Entry { get; set; } = "";
    }

}

/// <summary>Input row of the placeholder a saved model's ML.NET entries hold (not for direct use).</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class NeuralModelPlaceholderInput
{
    /// <summary>Unused.</summary>
    public float MlNetGuidePlaceholder { get; set; }
}

/// <summary>Output row of the placeholder (not for direct use).</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class NeuralModelPlaceholderOutput
{
    /// <summary>Unused.</summary>
    public float MlNetGuidePlaceholderOutput { get; set; }
}

/// <summary>
/// Found only when a user registers this assembly with <c>mlContext.ComponentCatalog.RegisterAssembly</c>; a plain
/// <c>mlContext.Model.Load</c> of a NeuralModel zip then fails here, at once, naming the call to use.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
[CustomMappingFactoryAttribute(NeuralModel.ContractName)]
public sealed class NeuralModelPlaceholderFactory : CustomMappingFactory<NeuralModelPlaceholderInput, NeuralModelPlaceholderOutput>
{
    /// <inheritdoc />
    public override Action<NeuralModelPlaceholderInput, NeuralModelPlaceholderOutput> GetMapping() =>
        throw new InvalidOperationException(
            "This model holds MlNetGuide neural networks, which mlContext.Model.Load cannot rebuild. Load it with MlNetGuide.Estimators.NeuralModel.Load(mlContext, path, out schema).");
}
