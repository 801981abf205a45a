using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Modules;
using MlNetGuide.Training;

namespace MlNetGuide.Estimators;

/// <summary>
/// A trained network as an ML.NET transformer: adds the task's output columns (Score; Probability and PredictedLabel for
/// classifiers) to every row. <see cref="Transform"/> is lazy and batched; <c>PredictionEngine</c> works through
/// <see cref="GetRowToRowMapper"/>.
/// </summary>
/// <remarks>
/// Save it with <see cref="NeuralModel.Save(MLContext, ITransformer, DataViewSchema, string)"/> and load it with
/// <see cref="NeuralModel.Load(MLContext, string, out DataViewSchema, LoadLimits)"/>: ML.NET keeps the API a transformer needs to
/// write into its model zip internal, so a plain <c>mlContext.Model.Save</c> refuses (naming that call) rather than
/// silently dropping the weights.
/// </remarks>
public sealed class NeuralNetworkTransformer : ITransformer, IDisposable
{
    private readonly NeuralScorer _scorer;
    private readonly int _scoringBatchSize;
    private readonly TrainableModule? _trainable;

    internal NeuralNetworkTransformer(NeuralScorer scorer, NetworkArchitecture architecture, int scoringBatchSize,
        TrainableModule? trainable = null, History? history = null)
    {
        _scorer = scorer;
        _scoringBatchSize = scoringBatchSize;
        _trainable = trainable;
        Architecture = architecture;
        History = history;
    }

    /// <summary>The task the network was trained for.</summary>
    public NeuralTask Task => _scorer.Task;

    /// <summary>Width of the feature vector the network takes.</summary>
    public int FeatureCount => _scorer.FeatureCount;

    /// <summary>Outputs per row of the network: classes for multiclass, else 1.</summary>
    public int OutputCount => _scorer.Outputs;

    /// <summary>The architecture the network was built from.</summary>
    public NetworkArchitecture Architecture { get; }

    /// <summary>Per-epoch training metrics; null for a model loaded from a file.</summary>
    public History? History { get; }

    /// <summary>The training curve (d2l's ProgressBoard); null for a model loaded from a file.</summary>
    public ProgressBoard? Board => _trainable?.Board;

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
        ColumnChecks.Features(inputSchema, scorer.FeatureColumn, scorer.FeatureCount);
        var builder = new DataViewSchema.Builder();
        builder.AddColumns(inputSchema);
        scorer.AddOutputColumns(builder);
        return builder.ToSchema();
    }

    /// <inheritdoc />
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return new ScoredDataView(input, GetOutputSchema(input.Schema), _scorer, _scoringBatchSize);
    }

    /// <inheritdoc />
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        return new NeuralRowMapper(inputSchema, GetOutputSchema(inputSchema), _scorer);
    }

    void ICanSaveModel.Save(ModelSaveContext ctx) =>
        throw new NotSupportedException(
            "A NeuralNetworkTransformer's weights cannot be written through mlContext.Model.Save (ML.NET keeps that API internal). " +
            "Save the model with MlNetGuide.Estimators.NeuralModel.Save(mlContext, model, schema, path) and load it with NeuralModel.Load(mlContext, path, out schema).");

    /// <summary>Releases the network's native memory. Using the transformer (or a view it returned) afterwards throws <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _scorer.MarkDisposed();
        if (_trainable is not null) _trainable.Dispose(); // owns the net
        else _scorer.Dispose();
    }
}
