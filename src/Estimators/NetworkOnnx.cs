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

    /// <summary>Why the network cannot be written as ONNX, naming the module type and the way out; null when it can.</summary>
    public static string? Refusal(NeuralNetworkTransformer t) => t.VocabularySize > 0
        ? $"The network reads the token column '{t.FeatureColumnName}' (a variable-length vector of keys over {t.VocabularySize - 1:N0} tokens), and ML.NET's " +
          "OnnxTransformer takes only known-size vectors, so mlContext.Model.Save cannot write it as a plain ML.NET zip yet. " +
          "Save it with NeuralModel.Save(mlContext, model, schema, path) and load it with NeuralModel.Load, which rebuilds it bit for bit."
        : OnnxExporter.Refusal(t.Scorer.Module, t.FeatureCount);

    /// <summary>The per-row graph ML.NET runs (see <see cref="ScoringModel"/>), as bytes.</summary>
    public static byte[] ScoringGraph(NeuralNetworkTransformer t) => ScoringModel(t).ToByteArray();

    /// <summary>The per-row graph ML.NET runs: input [features] named after the feature column, output [Width].</summary>
    public static ModelProto ScoringModel(NeuralNetworkTransformer t)
    {
        var s = t.Scorer;
        var g = new OnnxGraphBuilder(s.Module);
        var x = g.Input(s.FeatureColumn, s.FeatureCount);
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
        try
        {
            File.WriteAllBytes(modelFile, ScoringGraph(t));
            using var chain = StockChain(t, modelFile);
            ((ICanSaveModel)chain).Save(ctx);
        }
        finally
        {
            File.Delete(modelFile);
        }
    }

    /// <summary>The stock chain described above, fitted (no data is read: every part is trivial or fixed), running <paramref name="modelFile"/>.</summary>
    private static TransformerChain<ITransformer> StockChain(NeuralNetworkTransformer t, string modelFile)
    {
        var s = t.Scorer;
        var ml = new MLContext();
        IHostEnvironment env = ml;
        var definition = SchemaDefinition.Create(typeof(FeatureRow));
        definition[0].ColumnName = s.FeatureColumn;
        definition[0].ColumnType = new VectorDataViewType(NumberDataViewType.Single, s.FeatureCount);
        var empty = ml.Data.LoadFromEnumerable(Array.Empty<FeatureRow>(), definition);
        var onnx = ml.Transforms.ApplyOnnxModel([OutputColumn], [s.FeatureColumn], modelFile).Fit(empty);
        var parts = new List<ITransformer> { onnx };
        var view = onnx.Transform(empty);
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
        var drop = new List<string> { OutputColumn };
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
}
