using Microsoft.ML;
using Microsoft.ML.Data;
using System.Runtime.InteropServices;
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

    /// <summary>
    /// Counts the training and validation rows. A pass over the data is needed only when rows are split off for
    /// validation, when non-finite rows are skipped, or when the data view does not know its row count; otherwise
    /// every row is validated as it streams through the first epoch (errors still surface inside Fit).
    /// </summary>
    public void Scan()
    {
        bool skip = _options.NonFiniteFeatures == NonFiniteFeaturePolicy.SkipRow;
        if (!skip && _options.ValidationFraction == 0 && _data.GetRowCount() is long known)
        {
            if (known == 0) throw new ArgumentException("The training data is empty.", "data");
            (TrainRows, ValRows, SkippedRows) = (known, 0, 0);
            return;
        }
        long train = 0, val = 0, skipped = 0;
        var scratch = skip ? new float[FeatureCount] : [];
        using var rows = new RowReader(this, null, readFeatures: skip);
        while (rows.MoveNext())
        {
            if (skip && !rows.ReadFeatures(scratch)) { skipped++; continue; }
            if (rows.IsValidation) val++; else train++;
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
    public IEnumerable<Batch> Train(int epoch) =>
        _data.CanShuffle
            ? Direct(new Random(HashCode32(_seed, epoch)), validation: false)
            : Windowed(new Random(HashCode32(_seed ^ 0x5bd1e995, epoch)));

    /// <summary>The validation batches, in order.</summary>
    public IEnumerable<Batch> Validation() => Direct(null, validation: true);

    /// <summary>Rows go from the cursor straight into the batch tensor's memory (the data view shuffles, if asked).</summary>
    private IEnumerable<Batch> Direct(Random? random, bool validation)
    {
        int f = FeatureCount, b = _options.BatchSize;
        using var rows = new RowReader(this, random, readFeatures: true);
        while (true)
        {
            var x = empty(b, f).DetachFromDisposeScope();
            var y = new float[b];
            var positions = new long[b];
            int n = 0;
            try
            {
                var memory = MemoryMarshal.Cast<byte, float>(x.bytes);
                while (n < b && rows.MoveNext())
                {
                    if (rows.IsValidation != validation) continue;
                    if (!rows.ReadFeatures(memory.Slice(n * f, f))) continue; // skipped (SkipRow policy)
                    positions[n] = rows.Position;
                    y[n++] = rows.Label;
                }
                CheckFinite(x, n, positions);
            }
            catch
            {
                x.Dispose();
                throw;
            }
            if (n == 0) { x.Dispose(); yield break; }
            yield return MakeBatch(x, y, n);
            if (n < b) yield break;
        }
    }

    /// <summary>Rows are read into a window of 16 batches, then gathered in a shuffled order into the batch tensors.</summary>
    private IEnumerable<Batch> Windowed(Random shuffle)
    {
        int f = FeatureCount, b = _options.BatchSize, window = b * WindowBatches;
        var rowsX = new float[window * f];
        var rowsY = new float[window];
        var rowsAt = new long[window];
        var order = new int[window];
        using var rows = new RowReader(this, null, readFeatures: true);
        bool more = true;
        while (more)
        {
            int filled = 0;
            while (filled < window && (more = rows.MoveNext()))
            {
                if (rows.IsValidation) continue;
                if (!rows.ReadFeatures(rowsX.AsSpan(filled * f, f))) continue;
                rowsAt[filled] = rows.Position;
                rowsY[filled++] = rows.Label;
            }
            for (int i = 0; i < filled; i++) order[i] = i;
            shuffle.Shuffle(order.AsSpan(0, filled));
            for (int start = 0; start < filled; start += b)
            {
                int n = Math.Min(b, filled - start);
                var x = empty(n, f).DetachFromDisposeScope();
                var memory = MemoryMarshal.Cast<byte, float>(x.bytes);
                var y = new float[n];
                var positions = new long[n];
                for (int i = 0; i < n; i++)
                {
                    int src = order[start + i];
                    rowsX.AsSpan(src * f, f).CopyTo(memory.Slice(i * f, f));
                    y[i] = rowsY[src];
                    positions[i] = rowsAt[src];
                }
                try { CheckFinite(x, n, positions); }
                catch { x.Dispose(); throw; }
                yield return MakeBatch(x, y, n);
            }
        }
    }

    /// <summary>
    /// With the Throw policy rows are read unchecked and each batch is checked in one SIMD pass; only a batch
    /// holding a NaN or infinity is scanned row by row, to name the first offending row.
    /// </summary>
    private void CheckFinite(Tensor x, int n, long[] positions)
    {
        if (n == 0 || _options.NonFiniteFeatures != NonFiniteFeaturePolicy.Throw) return;
        var memory = MemoryMarshal.Cast<byte, float>(x.bytes);
        if (FiniteCheck.All(memory[..(n * FeatureCount)])) return;
        long first = long.MaxValue;
        for (int r = 0; r < n; r++)
            foreach (var v in memory.Slice(r * FeatureCount, FeatureCount))
                if (!float.IsFinite(v)) { first = Math.Min(first, positions[r]); break; }
        throw new SchemaMismatchException(_features.Name, "finite feature values (or NonFiniteFeatures = SkipRow)", $"NaN or infinity in row {first}");
    }

    private Batch MakeBatch(Tensor x, float[] y, int n)
    {
        if (n < x.shape[0])
        {
            var view = x.narrow(0, 0, n).DetachFromDisposeScope(); // keeps the storage alive
            x.Dispose();
            x = view;
        }
        Tensor yt;
        if (_options.Task == NeuralTask.MulticlassClassification)
        {
            var classes = new long[n];
            for (int i = 0; i < n; i++) classes[i] = (long)y[i];
            yt = tensor(classes, new long[] { n }).DetachFromDisposeScope();
        }
        else
            yt = tensor(n == y.Length ? y : y[..n], new long[] { n }).DetachFromDisposeScope();
        return new Batch(x, yt);
    }

    /// <summary>A cursor over features and labels that validates each row as it is read.</summary>
    private sealed class RowReader : IDisposable
    {
        private readonly DataViewBatchSource _source;
        private readonly DataViewRowCursor _cursor;
        private readonly ColumnChecks.FeatureRead? _features;
        private readonly Func<long, float> _label;
        private readonly ValueGetter<DataViewRowId> _id;
        private DataViewRowId _rowId;

        public RowReader(DataViewBatchSource source, Random? random, bool readFeatures)
        {
            _source = source;
            var columns = readFeatures ? new[] { source._features, source._label } : [source._label];
            _cursor = source._data.GetRowCursor(columns, random);
            _features = readFeatures ? ColumnChecks.FeatureReader(_cursor, source._features, source.FeatureCount) : null;
            _label = ColumnChecks.LabelReader(_cursor, source._label, source._options.Task);
            _id = _cursor.GetIdGetter();
        }

        public float Label { get; private set; }

        public long Position => _cursor.Position;

        public bool IsValidation { get; private set; }

        public bool MoveNext()
        {
            if (!_cursor.MoveNext()) return false;
            Label = _label(_cursor.Position);
            double fraction = _source._options.ValidationFraction;
            if (fraction > 0)
            {
                _id(ref _rowId);
                IsValidation = Unit(_rowId, _source._seed) < fraction;
            }
            return true;
        }

        /// <summary>
        /// Reads the current row's features. With the SkipRow policy, returns false for a row with a non-finite value;
        /// with Throw, the caller checks whole batches (see CheckFinite).
        /// </summary>
        public bool ReadFeatures(Span<float> destination)
        {
            _features!(destination);
            if (_source._options.NonFiniteFeatures == NonFiniteFeaturePolicy.Throw) return true;
            foreach (var v in destination)
            {
                if (float.IsFinite(v)) continue;
                if (_source._options.NonFiniteFeatures == NonFiniteFeaturePolicy.SkipRow) return false;
                throw new SchemaMismatchException(_source._features.Name, "finite feature values (or NonFiniteFeatures = SkipRow)",
                    $"NaN or infinity in row {_cursor.Position}");
            }
            return true;
        }

        public void Dispose() => _cursor.Dispose();
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
