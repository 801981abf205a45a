using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Training;
using static TorchSharp.torch;

namespace MlNetGuide.Estimators;

/// <summary>
/// Streams an IDataView into training and validation batches of float tensors: rows are read by a cursor into a
/// reused buffer of one batch (or one shuffle window) and copied once into a tensor. Nothing beyond a window is held.
/// </summary>
/// <remarks>
/// Shuffling: when the data view can shuffle (e.g. after <c>AppendCacheCheckpoint</c>) each epoch asks for a cursor
/// shuffled with a seeded <see cref="Random"/>; otherwise rows are shuffled within windows of 16 batches.
/// Validation rows are picked by a seeded hash of the row id, so the split does not depend on row order.
/// </remarks>
internal sealed class DataViewBatchSource
{
    private const int WindowBatches = 16;
    private readonly IDataView _data;
    private readonly DataViewSchema.Column _features, _label;
    private readonly NeuralNetworkOptions _options;
    private readonly int _seed;

    public DataViewBatchSource(IDataView data, NeuralNetworkOptions options, int seed)
    {
        _data = data;
        _options = options;
        _seed = seed;
        (_features, FeatureCount) = ColumnChecks.Features(data.Schema, options.FeatureColumnName);
        _label = ColumnChecks.Label(data.Schema, options.LabelColumnName, options.Task, out int classes);
        ClassCount = classes;
    }

    public int FeatureCount { get; }

    /// <summary>Classes for multiclass (the key count), else 0.</summary>
    public int ClassCount { get; }

    public DataViewSchema.Column LabelColumn => _label;

    public long TrainRows { get; private set; }
    public long ValRows { get; private set; }
    public long SkippedRows { get; private set; }

    /// <summary>One pass that validates every row (labels, finiteness) and counts the training and validation rows.</summary>
    public void Scan()
    {
        long train = 0, val = 0, skipped = 0;
        foreach (var row in Rows(null))
        {
            if (row.Skip) { skipped++; continue; }
            if (row.IsValidation) val++; else train++;
        }
        if (train == 0)
            throw new ArgumentException(
                skipped > 0 ? $"Every one of the {skipped} rows has non-finite features; nothing is left to train on."
                            : "The training data is empty (or the validation fraction took every row).", "data");
        (TrainRows, ValRows, SkippedRows) = (train, val, skipped);
    }

    public int TrainBatches => (int)((TrainRows + _options.BatchSize - 1) / _options.BatchSize);
    public int ValBatches => (int)((ValRows + _options.BatchSize - 1) / _options.BatchSize);

    /// <summary>The training batches of epoch <paramref name="epoch"/>, shuffled.</summary>
    public IEnumerable<Batch> Train(int epoch)
    {
        var random = _data.CanShuffle ? new Random(HashCode32(_seed, epoch)) : null;
        var windowRng = new Random(HashCode32(_seed ^ 0x5bd1e995, epoch));
        int window = _data.CanShuffle ? _options.BatchSize : _options.BatchSize * WindowBatches;
        return Batches(random, validation: false, window, shuffleWindow: !_data.CanShuffle ? windowRng : null);
    }

    /// <summary>The validation batches, in order.</summary>
    public IEnumerable<Batch> Validation() => Batches(null, validation: true, _options.BatchSize, null);

    private IEnumerable<Batch> Batches(Random? cursorRandom, bool validation, int window, Random? shuffleWindow)
    {
        int f = FeatureCount, b = _options.BatchSize;
        var x = new float[window * f];
        var y = new float[window];
        var order = new int[window];
        int filled = 0;
        foreach (var row in Rows(cursorRandom))
        {
            if (row.Skip || row.IsValidation != validation) continue;
            row.Features.CopyTo(x.AsSpan(filled * f, f));
            y[filled] = row.Label;
            if (++filled < window) continue;
            foreach (var batch in Emit(x, y, order, filled, f, b, shuffleWindow)) yield return batch;
            filled = 0;
        }
        if (filled > 0)
            foreach (var batch in Emit(x, y, order, filled, f, b, shuffleWindow)) yield return batch;
    }

    private IEnumerable<Batch> Emit(float[] x, float[] y, int[] order, int count, int f, int b, Random? shuffle)
    {
        for (int i = 0; i < count; i++) order[i] = i;
        if (shuffle is not null) shuffle.Shuffle(order.AsSpan(0, count));
        var bx = new float[Math.Min(b, count) * f];
        var by = new float[Math.Min(b, count)];
        for (int start = 0; start < count; start += b)
        {
            int n = Math.Min(b, count - start);
            if (bx.Length != n * f) { bx = new float[n * f]; by = new float[n]; }
            for (int i = 0; i < n; i++)
            {
                int src = order[start + i];
                Array.Copy(x, src * f, bx, i * f, f);
                by[i] = y[src];
            }
            yield return MakeBatch(bx, by, n, f);
        }
    }

    private Batch MakeBatch(float[] x, float[] y, int n, int f)
    {
        var xt = tensor(x, new long[] { n, f }).DetachFromDisposeScope();
        Tensor yt = _options.Task == NeuralTask.MulticlassClassification
            ? tensor(y, new long[] { n }).to_type(ScalarType.Int64).DetachFromDisposeScope()
            : tensor(y, new long[] { n }).DetachFromDisposeScope();
        return new Batch(xt, yt);
    }

    private readonly record struct Row(float[] Features, float Label, bool IsValidation, bool Skip);

    /// <summary>Every row with its features, label (class index for multiclass), split and skip decision. Validates as it goes.</summary>
    private IEnumerable<Row> Rows(Random? random)
    {
        using var cursor = _data.GetRowCursor([_features, _label], random);
        var features = ColumnChecks.FeatureReader(cursor, _features, FeatureCount);
        var label = ColumnChecks.LabelReader(cursor, _label, _options.Task);
        var id = cursor.GetIdGetter();
        var buffer = new float[FeatureCount];
        DataViewRowId rowId = default;
        double fraction = _options.ValidationFraction;
        while (cursor.MoveNext())
        {
            features(buffer);
            bool finite = true;
            foreach (var v in buffer)
                if (!float.IsFinite(v)) { finite = false; break; }
            if (!finite && _options.NonFiniteFeatures == NonFiniteFeaturePolicy.Throw)
                throw new SchemaMismatchException(_features.Name, "finite feature values (or NonFiniteFeatures = SkipRow)",
                    $"NaN or infinity in row {cursor.Position}");
            float y = label(cursor.Position);
            bool isVal = false;
            if (fraction > 0)
            {
                id(ref rowId);
                isVal = Unit(rowId, _seed) < fraction;
            }
            yield return new Row(buffer, y, isVal, !finite);
        }
    }

    // splitmix64 over the row id and seed: a stable, process-independent uniform number in [0, 1).
    private static double Unit(DataViewRowId id, int seed)
    {
        ulong z = id.Low ^ (id.High * 0x9E3779B97F4A7C15UL) ^ (ulong)(uint)seed * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (z >> 11) * (1.0 / (1UL << 53));
    }

    private static int HashCode32(int a, int b) => unchecked(a * 486187739 + b * 16777619 + 0x2545F491);
}
