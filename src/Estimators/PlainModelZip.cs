using System.IO.Compression;
using System.Text.Json;
using Google.Protobuf;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Onnx;
using MlNetGuide.Modules;
using MlNetGuide.Modules.Onnx;
using Onnx;
using static TorchSharp.torch;

namespace MlNetGuide.Estimators;

/// <summary>
/// Loads a plain ML.NET zip (written by <c>mlContext.Model.Save</c>) back into trainable networks: each stock chain
/// that <see cref="NetworkOnnx.SaveStockChain"/> wrote is replaced by a <see cref="NeuralNetworkTransformer"/> rebuilt from
/// the ONNX model's metadata (architecture) and initializers (state dict, bit for bit).
/// </summary>
internal static class PlainModelZip
{
    private const int MaxOnnxModels = 256;

    public static ITransformer Load(MLContext ml, MemoryStream file, ZipArchive zip, out DataViewSchema inputSchema, string source,
        Device device, LoadBudget budget)
    {
        // ML.NET inflates every entry itself: bound them all first.
        budget.Charge(ZipBounds.Check(zip, budget.Left, source), "the zip's entries");
        // ML.NET writes an OnnxTransformer's model to <its folder>/OnnxModel; path order is the transformers' order.
        var entries = zip.Entries.Where(e => e.Name == "OnnxModel").OrderBy(e => e.FullName, TransformerPathOrder.Instance).ToList();
        if (entries.Count > MaxOnnxModels)
            throw new ModelFormatException($"{source} holds {entries.Count} ONNX models; at most {MaxOnnxModels} are accepted.");
        var graphs = entries.Select(e => ReadGraph(e, source)).ToList();
        if (graphs.All(g => g is null))
            throw new ModelFormatException(
                $"{source} holds no MlNetGuide network: it was saved neither by NeuralModel.Save nor by mlContext.Model.Save of a pipeline with a network. Load it with mlContext.Model.Load.");

        // Our networks are checked and rebuilt before ML.NET (and ONNX Runtime) see the file's bytes.
        var networks = new List<NeuralNetworkTransformer?>();
        var result = new List<ITransformer>();
        ITransformer? loaded = null;
        try
        {
            for (int i = 0; i < graphs.Count; i++)
            {
                var graph = graphs[i];
                if (graph is null || IsTokenizer(graph))
                {
                    networks.Add(null);
                    continue;
                }
                var network = Network(graph, source, device, budget);
                networks.Add(network);
                // Both loaders must run one function: ONNX Runtime (a plain Model.Load) runs the graph, we run the config.
                // The comparison re-exports the network (a graph as large as this one): it counts against the budget too.
                budget.Charge(graph.CalculateSize(), "the graph re-exported for comparison");
                NetworkOnnx.CheckScoringGraph(network, graph, source);
                // A token network's tokenizer model comes right before it, and must be the one its words and text column make.
                var tokenizer = i > 0 && graphs[i - 1] is { } before && IsTokenizer(before) ? before : null;
                if ((network.Scorer.Text is null) != (tokenizer is null))
                    throw new ModelFormatException(network.Scorer.Text is null
                        ? $"{source}: a tokenizer model comes before a network that reads no text column. Refused."
                        : $"{source}: the network reads text column '{network.Scorer.Text.Column}', but no MlNetGuide tokenizer model comes before it. Refused.");
                if (tokenizer is not null)
                {
                    budget.Charge(tokenizer.CalculateSize(), "the tokenizer re-exported for comparison");
                    NetworkOnnx.CheckTokenizerGraph(network, tokenizer, source);
                }
            }
            for (int i = 0; i < graphs.Count; i++)
                if (graphs[i] is { } g && IsTokenizer(g) && (i + 1 == graphs.Count || networks[i + 1] is null))
                    throw new ModelFormatException($"{source}: a tokenizer model is not followed by the network that reads it. Refused.");
            loaded = ml.Model.Load(new MemoryStream(file.GetBuffer(), 0, (int)file.Length, writable: false), out inputSchema);
            int index = 0;
            Walk(loaded, result, networks, ref index);
            if (index != graphs.Count)
                throw new ModelFormatException($"{source}: {graphs.Count} ONNX models in the zip but {index} ONNX transformers in its pipeline.");
            if (networks.Any(n => n is not null && !result.Contains(n)))
                throw new ModelFormatException($"{source}: a network's ONNX model is not where its chain of stock transformers begins. Refused.");
            return new TransformerChain<ITransformer>(result.ToArray());
        }
        catch
        {
            foreach (var t in result) (t as IDisposable)?.Dispose();
            foreach (var n in networks) if (n is not null && !result.Contains(n)) n.Dispose();
            (loaded as IDisposable)?.Dispose();
            throw;
        }
    }

    private static void Walk(ITransformer t, List<ITransformer> output, List<NeuralNetworkTransformer?> networks, ref int index)
    {
        if (t.GetType().IsGenericType && t.GetType().GetGenericTypeDefinition() == typeof(TransformerChain<>))
        {
            var children = ((IEnumerable<ITransformer>)t).ToList();
            // A network's stock chain starts with its ONNX model, or with the tokenizer model before it (a token network).
            int models = index < networks.Count && networks[index] is not null ? 1
                : index + 1 < networks.Count && networks[index + 1] is { Scorer.Text: not null } ? 2 : 0;
            if (children.Count >= models && models > 0 && children.Take(models).All(c => c is OnnxTransformer) && networks[index + models - 1] is { } network)
            {
                index += models;
                output.Add(network);
                foreach (var c in children) (c as IDisposable)?.Dispose();
                return;
            }
            foreach (var c in children) Walk(c, output, networks, ref index);
        }
        else
        {
            if (t is OnnxTransformer)
            {
                // Someone else's ONNX model is kept as it is; one of ours outside its network's own chain is refused.
                if (index < networks.Count && networks[index] is not null || index + 1 < networks.Count && networks[index + 1] is { Scorer.Text: not null })
                    throw new ModelFormatException("an MlNetGuide ONNX model stands outside its network's chain of stock transformers. Refused.");
                index++;
            }
            output.Add(t);
        }
    }

    private static NeuralNetworkTransformer Network(ModelProto graph, string source, Device device, LoadBudget budget)
    {
        var config = NetworkDescription.Parse(OnnxStateDict.Metadata(graph, NetworkOnnx.ConfigMetadata)!, $"the network config in the ONNX metadata", source);
        long weightBytes = graph.Graph.Initializer.Sum(i => (long)i.RawData.Length);
        return config.Build($"the ONNX metadata '{NetworkOnnx.ConfigMetadata}'", "the ONNX initializers", weightBytes,
            source, device, budget, module =>
            {
                var state = OnnxStateDict.Read(graph, weightBytes, source);
                try
                {
                    StateDict.Load(module, state);
                }
                finally
                {
                    foreach (var tensor in state.Values) tensor.Dispose();
                }
            });
    }

    private static bool IsTokenizer(ModelProto graph) => OnnxStateDict.Metadata(graph, TokenizerModel.Metadata) is not null;

    /// <summary>The ONNX model in an OnnxModel entry (an int32 length, then the bytes) if MlNetGuide exported it; else null.</summary>
    private static ModelProto? ReadGraph(ZipArchiveEntry entry, string source)
    {
        var bytes = ZipBounds.ReadAll(entry, entry.Length, source);
        if (bytes.Length < 4 || BitConverter.ToInt32(bytes, 0) != bytes.Length - 4)
            throw new ModelFormatException($"{source}: {entry.FullName} is not an ML.NET ONNX model entry (its length prefix does not match its {bytes.Length:N0} bytes).");
        // Every ONNX model in the zip, ours or not: bounded element counts, and no external data (ONNX Runtime would open
        // files next to the temporary copy ML.NET writes), before Google.Protobuf or ONNX Runtime sees the bytes.
        OnnxWireBounds.Check(bytes.AsSpan(4), $"{source}: {entry.FullName}");
        ModelProto model;
        try
        {
            model = ModelProto.Parser.ParseFrom(bytes, 4, bytes.Length - 4);
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw new ModelFormatException($"{source}: {entry.FullName} is not a valid ONNX model ({ex.Message}).", ex);
        }
        return OnnxStateDict.Metadata(model, NetworkOnnx.ConfigMetadata) is null && !IsTokenizer(model) ? null : model;
    }

    /// <summary>Orders ML.NET's entry paths depth first, reading "TransformerN" folders by their number (Transformer10 after Transformer9).</summary>
    private sealed class TransformerPathOrder : IComparer<string>
    {
        public static readonly TransformerPathOrder Instance = new();

        public int Compare(string? a, string? b)
        {
            var x = (a ?? "").Split('/');
            var y = (b ?? "").Split('/');
            for (int i = 0; i < Math.Min(x.Length, y.Length); i++)
            {
                int c = Number(x[i]) is long nx && Number(y[i]) is long ny ? nx.CompareTo(ny) : string.CompareOrdinal(x[i], y[i]);
                if (c != 0) return c;
            }
            return x.Length.CompareTo(y.Length);
        }

        private static long? Number(string segment) =>
            segment.StartsWith("Transformer", StringComparison.Ordinal) && long.TryParse(segment.AsSpan("Transformer".Length), out var n) ? n : null;
    }
}
