using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Modules;
using MlNetGuide.Modules.Onnx;
using MlNetGuide.Training;

namespace MlNetGuide.Estimators;

/// <summary>
/// A trained network as an ML.NET transformer: adds the task's output columns (Score; Probability and PredictedLabel for
/// classifiers) to every row. <see cref="Transform"/> is lazy and batched; <c>PredictionEngine</c> works through
/// <see cref="GetRowToRowMapper"/>.
/// </summary>
/// <remarks>
/// Save it with <c>mlContext.Model.Save</c>: the network is written as an ONNX model inside the zip, which a plain
/// <c>mlContext.Model.Load</c> reads (with Microsoft.ML.OnnxTransformer and ONNX Runtime, no MlNetGuide) and
/// <see cref="NeuralModel.Load(MLContext, string, out DataViewSchema, LoadLimits)"/> turns back into a trainable TorchSharp
/// module. A network with no ONNX export rule is refused by <c>mlContext.Model.Save</c>; save it with
/// <see cref="NeuralModel.Save(MLContext, ITransformer, DataViewSchema, string)"/>.
/// </remarks>
public sealed class NeuralNetworkTransformer : ISingleFeaturePredictionTransformer<NetworkArchitecture>, IDisposable
{
    private readonly NeuralScorer _scorer; // owns the network: the transformer's only native resource
    private readonly int _scoringBatchSize;

    internal NeuralNetworkTransformer(NeuralScorer scorer, NetworkArchitecture architecture, int scoringBatchSize, History? history = null)
    {
        _scorer = scorer;
        _scoringBatchSize = scoringBatchSize;
        Architecture = architecture;
        History = history;
    }

    /// <summary>The task the network was trained for.</summary>
    public NeuralTask Task => _scorer.Task;

    /// <summary>Width of the feature vector the network takes (for a token column: the slots of <c>MaxTokens</c> ids).</summary>
    public int FeatureCount => _scorer.FeatureCount;

    /// <summary>For a network over a token column, its vocabulary: the key count + 1 (id 0 is padding); 0 for numeric features.</summary>
    public int VocabularySize => _scorer.Vocabulary;

    /// <summary>Outputs per row of the network: classes for multiclass, else 1.</summary>
    public int OutputCount => _scorer.Outputs;

    /// <summary>The architecture the network was built from.</summary>
    public NetworkArchitecture Architecture { get; }

    /// <summary>
    /// ML.NET's view of the trained model (<see cref="IPredictionTransformer{TModel}"/>): the architecture; the weights
    /// live in the transformer. Being a single-feature prediction transformer is what lets ML.NET's
    /// <c>PermutationFeatureImportance</c> permute the feature column's slots and score with <see cref="Transform"/>.
    /// </summary>
    NetworkArchitecture IPredictionTransformer<NetworkArchitecture>.Model => Architecture;

    /// <summary>The feature column the network reads.</summary>
    public string FeatureColumnName => _scorer.FeatureColumn;

    /// <summary>The feature column's type: a vector of <see cref="FeatureCount"/> Single values, or for a token column a vector of keys over the vocabulary.</summary>
    public DataViewType FeatureColumnType => VocabularySize > 0
        ? new VectorDataViewType(new KeyDataViewType(typeof(uint), VocabularySize - 1))
        : new VectorDataViewType(NumberDataViewType.Single, FeatureCount);

    /// <summary>
    /// Per-epoch training metrics (plain numbers: training and validation loss, accuracy, learning rate, time); null for
    /// a model loaded from a file. Draw them with MlNetGuide.Plots' <c>history.SavePng(path)</c>.
    /// </summary>
    public History? History { get; }

    /// <summary>The module tree, parameter names, shapes and counts.</summary>
    public string Summary => ModuleSummary.Describe(Scorer.Module);

    /// <summary>The scorer; throws <see cref="ObjectDisposedException"/> once the transformer is disposed.</summary>
    internal NeuralScorer Scorer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _scorer;
        }
    }

    private bool _disposed;

    /// <summary>A short SHA-256 digest of the trained parameters (identical runs give identical digests).</summary>
    public string WeightsDigest()
    {
        using var stream = new MemoryStream();
        StateDict.Save(Scorer.Module, stream);
        return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(stream.ToArray()))[..16];
    }

    internal int ScoringBatchSize => _scoringBatchSize;

    /// <inheritdoc />
    public bool IsRowToRowMapper => true;

    /// <inheritdoc />
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        var scorer = Scorer;
        ColumnChecks.Features(inputSchema, scorer.FeatureColumn, scorer.FeatureCount, scorer.Vocabulary, scorer.TokenKeys);
        var builder = new DataViewSchema.Builder();
        builder.AddColumns(inputSchema);
        scorer.AddOutputColumns(builder);
        return builder.ToSchema();
    }

    /// <inheritdoc />
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        // A wide column goes in by its non-zeros where the network reads them (SparseInput); read densely otherwise, a
        // batch holds at most 16 M values (64 MB).
        int batch = _scorer.SparseInput ? _scoringBatchSize : Math.Max(1, Math.Min(_scoringBatchSize, (16 << 20) / Math.Max(1, _scorer.FeatureCount)));
        return new ScoredDataView(input, GetOutputSchema(input.Schema), _scorer, batch);
    }

    /// <inheritdoc />
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        return new NeuralRowMapper(inputSchema, GetOutputSchema(inputSchema), _scorer);
    }

    /// <summary>
    /// Writes the network as stock ML.NET transformers (an ONNX model and fixed scorers, see <see cref="NetworkOnnx"/>):
    /// what <c>mlContext.Model.Save</c> calls, so that a plain <c>mlContext.Model.Load</c> reads the zip in any process
    /// with Microsoft.ML.OnnxTransformer and ONNX Runtime, and <see cref="NeuralModel.Load(MLContext, string, out DataViewSchema, LoadLimits)"/>
    /// rebuilds the TorchSharp module from it.
    /// </summary>
    /// <exception cref="OnnxExportException">The module (or a module inside it) has no ONNX export rule; the message names
    /// its type, <c>OnnxExporter.Register</c> and <see cref="NeuralModel.Save(MLContext, ITransformer, DataViewSchema, string)"/>.</exception>
    void ICanSaveModel.Save(ModelSaveContext ctx)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        if (NetworkOnnx.Refusal(this) is { } refusal)
            throw new OnnxExportException($"mlContext.Model.Save cannot write this network as ONNX: {refusal}");
        NetworkOnnx.SaveStockChain(this, ctx);
    }

    /// <summary>
    /// Writes the network as a standalone ONNX model, for scoring outside ML.NET: input [batch, features] named after
    /// the feature column; output Score (softmax probabilities for multiclass, the raw value otherwise) and, for binary,
    /// Probability. A network over a token column is written as its sequence module's graph instead: int64 token ids
    /// [batch, time] in (key k as id k, 0 for padding), logits out. The metadata holds the network's config; the initializers its state dict under its keys.
    /// </summary>
    public void ExportOnnx(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Scorer.Module is TokenIdsInput tokens)
        {
            // A token network: the sequence module's own graph, int64 ids [batch, time] in (0 is padding), logits out.
            MlNetGuide.Modules.Onnx.OnnxExporter.SaveTokenSequences(tokens.Net, path);
            return;
        }
        var bytes = Google.Protobuf.MessageExtensions.ToByteArray(NetworkOnnx.StandaloneGraph(this));
        AtomicFile.Write(path, s => s.Write(bytes));
    }

    /// <summary>Releases the network's native memory. Using the transformer (or a view it returned) afterwards throws <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _scorer.Dispose();
    }
}
