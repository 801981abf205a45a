using System.Text.Json;
using Google.Protobuf;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using MlNetGuide.Modules.Onnx;
using Onnx;

namespace MlNetGuide.Estimators;

/// <summary>
/// A trained network as stock ML.NET transformers, which a plain <c>mlContext.Model.Save</c> writes and a plain
/// <c>mlContext.Model.Load</c> reads back in any process with Microsoft.ML.OnnxTransformer and ONNX Runtime:
/// <code>
/// OnnxTransformer        features → MlNetGuideNetworkOutput (the network; softmax for multiclass; one row per ORT run)
/// *PredictionTransformer identity linear model: Score (and PredictedLabel: the label's key, or Score &gt; 0); binary:
///                        Platt-calibrated (slope -1, offset 0): Probability = sigmoid(Score), as logistic regression gives
/// ColumnCopying/Dropping the caller's column names; MlNetGuideNetworkOutput removed
/// </code>
/// The prediction transformer is there because ML.NET's OnnxTransformer outputs vectors only, and ML.NET's Evaluate
/// needs a scalar Score and a key PredictedLabel. The ONNX model's metadata keeps the network's config
/// (<see cref="ConfigMetadata"/>) and its initializers the state dict, so <see cref="NeuralModel.Load(MLContext, string, out DataViewSchema, MlNetGuide.Modules.LoadLimits)"/>
/// rebuilds the TorchSharp module from such a zip.
/// </summary>
internal static class NetworkOnnx
{
    /// <summary>The ONNX metadata key holding the network's config (JSON).</summary>
    public const string ConfigMetadata = "mlnetguide.network";

    /// <summary>The intermediate column the ONNX model writes (dropped at the end of the chain).</summary>
    public const string OutputColumn = "MlNetGuideNetworkOutput";

    private const string LabelColumn = "Label";

    static NetworkOnnx() => OnnxExporter.Register<TokenIdsInput>(TokenIds);

    /// <summary>Why the network cannot be written as ONNX, naming the module type and the way out; null when it can.</summary>
    public static string? Refusal(NeuralNetworkTransformer t) =>
        t.VocabularySize > 0 && t.Scorer.Text is null
            ? $"The network reads the token column '{t.FeatureColumnName}' (a variable-length vector of keys over {t.VocabularySize - 1:N0} tokens), and ML.NET's " +
              "OnnxTransformer takes only known-size vectors, so the zip must split the text itself, and Fit found no text column that, split on TokenSeparators " +
              "(default a space), gives these tokens. Name the column TokenizeIntoWords read in NeuralNetworkOptions.TextColumnName (and its separators in " +
              "TokenSeparators), or save the model with NeuralModel.Save(mlContext, model, schema, path) and load it with NeuralModel.Load, which rebuilds it bit for bit."
        : t.Scorer.Text is { Words.Length: > TokenText.MaxWords } text
            ? $"The network's key mapping has {text.Words.Length:N0} words; a plain zip's tokenizer holds at most {TokenText.MaxWords:N0} (MapValueToKey's " +
              "maximumNumberOfKeys bounds them). Save it with NeuralModel.Save(mlContext, model, schema, path) instead."
        : OnnxExporter.Refusal(t.Scorer.Module, t.FeatureCount);

    /// <summary>
    /// <see cref="TokenIdsInput"/> as ONNX: the float slots of one row (int64 ids, 0 padding) cut to the row's length (at
    /// least one step), as the module cuts a batch to its longest row, then the sequence module's own rule.
    /// </summary>
    private static string TokenIds(OnnxGraphBuilder g, TokenIdsInput m, string slots)
    {
        var ids = g.Node("Cast", [slots], ("to", (long)TensorProto.Types.DataType.Int64));
        var used = g.Node("Cast", [g.Node("Greater", [ids, g.Int64s("zero", 0)])], ("to", (long)TensorProto.Types.DataType.Int64));
        // Positions 1..time of the slots (a running sum of ones): the last used one is the row's length.
        var ones = g.Node("Add", [g.Node("Mul", [ids, g.Int64s("zero", 0)]), g.Int64s("one", 1)]);
        var positions = g.Node("CumSum", [ones, g.Node("Squeeze", [g.Int64s("time_axis", 1)])]); // CumSum's axis is 0-D
        var length = g.Node("Max", [g.Node("ReduceMax", [g.Node("Mul", [used, positions])], ("keepdims", 0L)), g.Int64s("at_least", 1)]);
        var trimmed = g.Node("Slice", [ids, g.Int64s("starts", 0), length, g.Int64s("axes", 1)]);
        return g.Add(m.Net, trimmed);
    }

    /// <summary>The per-row graph ML.NET runs (see <see cref="ScoringModel"/>), as bytes.</summary>
    public static byte[] ScoringGraph(NeuralNetworkTransformer t) => ScoringModel(t).ToByteArray();

    /// <summary>The per-row graph ML.NET runs: input [features] named after the feature column, output [Width].</summary>
    public static ModelProto ScoringModel(NeuralNetworkTransformer t)
    {
        var s = t.Scorer;
        var g = new OnnxGraphBuilder(s.Module);
        // A token network reads the slots the tokenizer model writes (see TokenizerModel.Write), not the key column.
        var x = g.Input(s.Text is null ? s.FeatureColumn : TokenizerModel.IdsColumn, s.FeatureCount);
        var y = g.Add(s.Module, g.Node("Unsqueeze", [x, g.Int64s("axes", 0)]));
        if (s.Task == NeuralTask.MulticlassClassification) y = g.Node("Softmax", [y], ("axis", -1L));
        y = g.Node("Reshape", [y, g.Int64s("shape", s.Width)]);
        g.Output(OutputColumn, y, TensorProto.Types.DataType.Float, s.Width);
        g.Metadata(ConfigMetadata, JsonSerializer.Serialize(NetworkDescription.Of(t)));
        return g.ToModel();
    }

    /// <summary>
    /// Refuses an ONNX model from a zip unless it is the graph <see cref="ScoringGraph"/> writes for the network rebuilt
    /// from it (its producer version aside): a graph that reads an extra initializer, adds a node or metadata would make
    /// ONNX Runtime (a plain <c>Model.Load</c>) score differently from <see cref="NeuralModel.Load(MLContext, string, out DataViewSchema, MlNetGuide.Modules.LoadLimits)"/>.
    /// </summary>
    public static void CheckScoringGraph(NeuralNetworkTransformer rebuilt, ModelProto file, string source)
    {
        var ours = ScoringModel(rebuilt);
        ours.ProducerVersion = file.ProducerVersion;
        if (ours.Equals(file)) return;
        throw new MlNetGuide.Modules.ModelFormatException(
            $"{source}: its ONNX graph is not the one MlNetGuide writes for the network its metadata describes ({Difference(ours, file)}); " +
            "ONNX Runtime and NeuralModel.Load would run different models. Refused.");
    }

    /// <summary>
    /// Refuses a tokenizer model from a zip unless it is the one <see cref="TokenizerModel.Write"/> writes for the rebuilt token
    /// network (its text column, separators, words and MaxTokens): another would feed ONNX Runtime other ids than the
    /// key column gives <see cref="NeuralModel.Load(MLContext, string, out DataViewSchema, MlNetGuide.Modules.LoadLimits)"/>.
    /// </summary>
    public static void CheckTokenizerGraph(NeuralNetworkTransformer rebuilt, ModelProto file, string source)
    {
        var ours = TokenizerModel.Write(rebuilt.Scorer.Text!, rebuilt.FeatureCount);
        ours.ProducerVersion = file.ProducerVersion;
        if (ours.Equals(file)) return;
        throw new MlNetGuide.Modules.ModelFormatException(
            $"{source}: its tokenizer model is not the one MlNetGuide writes for the text column, words and MaxTokens its network describes ({Difference(ours, file)}); " +
            "ONNX Runtime and NeuralModel.Load would number the words differently. Refused.");
    }

    /// <summary>The first difference between two graphs, in a few words.</summary>
    private static string Difference(ModelProto ours, ModelProto file)
    {
        static string Count(string what, int a, int b) => a == b ? "" : $"{what}: {b} where MlNetGuide writes {a}";
        var (g, f) = (ours.Graph ?? new GraphProto(), file.Graph ?? new GraphProto());
        var counts = new[]
        {
            Count("nodes", g.Node.Count, f.Node.Count), Count("initializers", g.Initializer.Count, f.Initializer.Count),
            Count("inputs", g.Input.Count, f.Input.Count), Count("outputs", g.Output.Count, f.Output.Count),
            Count("metadata entries", ours.MetadataProps.Count, file.MetadataProps.Count),
        }.FirstOrDefault(c => c.Length > 0);
        if (counts is not null) return counts;
        for (int i = 0; i < g.Node.Count; i++)
            if (!g.Node[i].Equals(f.Node[i])) return $"node {i} ({f.Node[i].OpType} '{f.Node[i].Name}') differs";
        for (int i = 0; i < g.Initializer.Count; i++)
            if (!g.Initializer[i].Equals(f.Initializer[i])) return $"initializer '{f.Initializer[i].Name}' differs";
        return "its header, inputs, outputs or metadata differ";
    }

    /// <summary>
    /// A standalone graph for scoring elsewhere: input [batch, features] named after the feature column; outputs named
    /// after the score columns: Score (softmax probabilities for multiclass, the logit for binary) and, for binary,
    /// Probability.
    /// </summary>
    public static ModelProto StandaloneGraph(NeuralNetworkTransformer t)
    {
        var s = t.Scorer;
        var g = new OnnxGraphBuilder(s.Module);
        var x = g.Input(s.FeatureColumn, null, s.FeatureCount);
        var y = g.Node("Reshape", [g.Add(s.Module, x), g.Int64s("shape", -1, s.Width)]);
        if (s.Task == NeuralTask.MulticlassClassification) y = g.Node("Softmax", [y], ("axis", -1L));
        g.Output(s.ScoreColumn, y, TensorProto.Types.DataType.Float, null, s.Width);
        if (s.Task == NeuralTask.BinaryClassification)
            g.Output(s.ProbabilityColumn!, g.Node("Sigmoid", [y]), TensorProto.Types.DataType.Float, null, 1);
        g.Metadata(ConfigMetadata, JsonSerializer.Serialize(NetworkDescription.Of(t)));
        return g.ToModel();
    }

    /// <summary>
    /// Saves the stock chain described above, and releases what building it took: the OnnxTransformer's ONNX Runtime
    /// session and the model file it runs. The file is ours, not ML.NET's: ML.NET 5.0.1's OnnxTransformer, made from a
    /// stream, copies it to a temporary file it never deletes (one file per save).
    /// </summary>
    public static void SaveStockChain(NeuralNetworkTransformer t, ModelSaveContext ctx)
    {
        var modelFile = Path.Combine(Path.GetTempPath(), $"mlnetguide-{Guid.NewGuid():N}.onnx");
        var tokenizerFile = Path.ChangeExtension(modelFile, ".tokenizer.onnx");
        try
        {
            File.WriteAllBytes(modelFile, ScoringGraph(t));
            if (t.Scorer.Text is { } text) File.WriteAllBytes(tokenizerFile, TokenizerModel.Write(text, t.FeatureCount).ToByteArray());
            using var chain = StockChain(t, modelFile, tokenizerFile);
            ((ICanSaveModel)chain).Save(ctx);
        }
        finally
        {
            File.Delete(modelFile);
            File.Delete(tokenizerFile);
        }
    }

    /// <summary>
    /// The stock chain described above, fitted (no data is read: every part is trivial or fixed), running
    /// <paramref name="modelFile"/>; for a token network, <paramref name="tokenizerFile"/> (<see cref="TokenizerModel.Write"/>)
    /// comes first, from the text column to the slots the network reads.
    /// </summary>
    private static TransformerChain<ITransformer> StockChain(NeuralNetworkTransformer t, string modelFile, string tokenizerFile)
    {
        var parts = new List<ITransformer>();
        try
        {
            return StockChain(t, modelFile, tokenizerFile, parts);
        }
        catch
        {
            foreach (var part in parts) (part as IDisposable)?.Dispose(); // the ONNX Runtime sessions made so far
            throw;
        }
    }

    private static TransformerChain<ITransformer> StockChain(NeuralNetworkTransformer t, string modelFile, string tokenizerFile, List<ITransformer> parts)
    {
        var s = t.Scorer;
        var ml = new MLContext();
        IHostEnvironment env = ml;
        var drop = new List<string> { OutputColumn };
        IDataView view;
        string networkInput = s.FeatureColumn;
        if (s.Text is { } text)
        {
            var definition = SchemaDefinition.Create(typeof(TextRow));
            definition[0].ColumnName = text.Column;
            view = ml.Data.LoadFromEnumerable(Array.Empty<TextRow>(), definition);
            var tokenizer = ml.Transforms.ApplyOnnxModel([TokenizerModel.IdsColumn], [text.Column], tokenizerFile).Fit(view);
            parts.Add(tokenizer);
            view = tokenizer.Transform(view);
            networkInput = TokenizerModel.IdsColumn;
            drop.Add(TokenizerModel.IdsColumn);
        }
        else
        {
            var definition = SchemaDefinition.Create(typeof(FeatureRow));
            definition[0].ColumnName = s.FeatureColumn;
            definition[0].ColumnType = new VectorDataViewType(NumberDataViewType.Single, s.FeatureCount);
            view = ml.Data.LoadFromEnumerable(Array.Empty<FeatureRow>(), definition);
        }
        var onnx = ml.Transforms.ApplyOnnxModel([OutputColumn], [networkInput], modelFile).Fit(view);
        parts.Add(onnx);
        view = onnx.Transform(view);
        void Append(ITransformer part)
        {
            parts.Add(part);
            view = part.Transform(view);
        }
        var renames = new List<(string wanted, string stock)>();
        switch (s.Task)
        {
            case NeuralTask.Regression:
                Append(MlNetInternals.RegressionScorer(env, view.Schema, OutputColumn));
                renames.Add((s.ScoreColumn, "Score"));
                break;
            case NeuralTask.BinaryClassification:
                Append(MlNetInternals.BinaryScorer(env, view.Schema, OutputColumn)); // Score, Probability, PredictedLabel
                renames.Add((s.ScoreColumn, "Score"));
                renames.Add((s.ProbabilityColumn!, "Probability"));
                renames.Add((s.PredictedLabelColumn!, "PredictedLabel"));
                break;
            default:
                var schema = view.Schema;
                if (s.KeyValues is { } keyValues)
                {
                    // The prediction transformer takes the PredictedLabel key's values from its training label column.
                    var builder = new DataViewSchema.Builder();
                    builder.AddColumns(view.Schema);
                    var annotations = new DataViewSchema.Annotations.Builder();
                    keyValues.AddTo(annotations);
                    builder.AddColumn(LabelColumn, new KeyDataViewType(typeof(uint), s.Outputs), annotations.ToAnnotations());
                    schema = builder.ToSchema();
                }
                Append(MlNetInternals.MulticlassScorer(env, schema, OutputColumn, s.Outputs, s.KeyValues is null ? null : LabelColumn,
                    s.ScoreColumn, s.PredictedLabelColumn!));
                break;
        }
        foreach (var (wanted, stock) in renames.Where(r => r.wanted != r.stock))
        {
            Append(ml.Transforms.CopyColumns(wanted, stock).Fit(view));
            drop.Add(stock);
        }
        Append(ml.Transforms.DropColumns(drop.ToArray()).Fit(view));
        return new TransformerChain<ITransformer>(parts.ToArray());
    }

    private sealed class FeatureRow
    {
        public float[] Features { get; set; } = [];
    }

    private sealed class TextRow
    {
        public string Text { get; set; } = "";
    }
}
