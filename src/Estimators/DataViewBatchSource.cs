using Microsoft.ML;
using Microsoft.ML.Data;
using System.Runtime.InteropServices;
using MlNetGuide.Modules;
using MlNetGuide.Training;
using static TorchSharp.torch;

namespace MlNetGuide.Estimators;

/// <summary>
/// Feeds an IDataView to the Trainer as batches of float tensors, in one of two ways. Data that fits the in-memory
/// limit is read once, in order, straight into one feature tensor (and a label tensor), which a
/// <see cref="TensorDataModule"/> then shuffles every epoch, as the hand-written loop does. Larger data streams: every
/// epoch a cursor reads rows straight into each batch tensor's memory, and nothing beyond a batch (or a shuffle window)
/// is held.
/// </summary>
/// <remarks>
/// Streaming shuffles with the data view when it can (e.g. after <c>AppendCacheCheckpoint</c>), each epoch asking for a
/// cursor shuffled with a seeded <see cref="Random"/>; otherwise rows are shuffled within windows of 16 batches.
/// Validation rows are picked by a seeded hash of the row id, so the split does not depend on row order or on the mode.
/// With several ranks (<see cref="RowShard"/>), each rank keeps the rows a second seeded hash of the id gives it, reads
/// nothing of the others' but their ids, and batches <c>BatchSize / ranks</c> rows at a time.
/// </remarks>
internal sealed class DataViewBatchSource : IDisposable
{
    private const int WindowBatches = 16;

    /// <summary>Feature widths from which a column is held by its non-zeros (<see cref="SparseRows"/>) for a network whose first layer is linear.</summary>
    public const int SparseWidth = 4096;
    private readonly IDataView _data;
    private readonly DataViewSchema.Column _features, _label;
    private readonly NeuralNetworkOptions _options;
    private readonly int _seed;
    private readonly double _validationFraction;
    private readonly RowShard _shard;
    private readonly int _batchSize; // this rank's share of a step's BatchSize rows

    /// <param name="data">The rows.</param>
    /// <param name="options">Columns, task, batch size, validation fraction, non-finite policy.</param>
    /// <param name="seed">Shuffling and validation-split seed.</param>
    /// <param name="splitValidation">False for a data view that is validation data itself: no row is split off.</param>
    /// <param name="shard">This rank's share of the rows; null: all of them.</param>
    public DataViewBatchSource(IDataView data, NeuralNetworkOptions options, int seed, bool splitValidation = true, RowShard? shard = null)
    {
        _data = data;
        _options = options;
        _seed = seed;
        _shard = shard ?? RowShard.All;
        _batchSize = _shard.BatchSize(options.BatchSize);
        _validationFraction = splitValidation ? options.ValidationFraction : 0;
        (_features, FeatureCount, Vocabulary) = ColumnChecks.Features(data.Schema, options.FeatureColumnName, options.MaxTokens);
        _label = ColumnChecks.Label(data.Schema, options.LabelColumnName, options.Task, out int classes);
        ClassCount = classes;
        // With several GPUs the batch is split across replicas, which sparse tensors cannot be (no views): dense then.
        TokenKeys = ReadsTokens ? KeyValues.From(_features)?.Digest : null; // read once: it walks every key value
        Sparse = !ReadsTokens && FeatureCount >= SparseWidth && _features.Type is VectorDataViewType && options.Architecture.ReadsSparse && options.NumGpus <= 1;
    }

    /// <summary>Values per row: the feature width, or for a token column <c>MaxTokens</c> id slots.</summary>
    public int FeatureCount { get; }

    /// <summary>For a token column, the ids (the key count + 1, 0 being padding); 0 for numbers.</summary>
    public int Vocabulary { get; }

    /// <summary>Whether the feature column holds tokens (a vector of keys).</summary>
    public bool ReadsTokens => Vocabulary > 0;

    /// <summary>
    /// Whether rows are read as their non-zeros: a feature column of at least <see cref="SparseWidth"/> values (as ML.NET's
    /// FeaturizeText and one-hot encodings write) for an MLP, whose first <c>nn.Linear</c> multiplies sparse batches.
    /// </summary>
    public bool Sparse { get; }

    /// <summary>The training rows as non-zeros when <see cref="Prepare"/> held them so; else null.</summary>
    public SparseRows? SparseTrain { get; private set; }

    /// <summary>The validation rows as non-zeros, when there are any; else null.</summary>
    public SparseRows? SparseVal { get; private set; }

    /// <summary>Classes for multiclass (the key count), else 0.</summary>
    public int ClassCount { get; }

    public DataViewSchema.Column LabelColumn => _label;

    /// <summary>For a token column, the digest of its key values (<see cref="KeyValues.Digest"/>); else null.</summary>
    public string? TokenKeys { get; }

    /// <summary>The rows the data view says it has (all ranks'), or null when it does not know.</summary>
    public long? ViewRowCount => _data.GetRowCount();

    public long TrainRows { get; private set; }
    public long ValRows { get; private set; }
    public long SkippedRows { get; private set; }

    /// <summary>The training rows (features, labels) when <see cref="Prepare"/> loaded them into memory; else null.</summary>
    public Tensor[]? MemoryTrain { get; private set; }

    /// <summary>The validation rows when loaded into memory and there are any; else null.</summary>
    public Tensor[]? MemoryVal { get; private set; }

    /// <summary>True when the rows are held in memory (see <see cref="MemoryTrain"/>).</summary>
    public bool InMemory => MemoryTrain is not null;

    /// <summary>Bytes the in-memory rows take (0 when streaming).</summary>
    public long MemoryBytes => (MemoryTrain ?? []).Concat(MemoryVal ?? []).Sum(t => t.NumberOfElements * t.ElementSize);

    /// <summary>Bytes one row takes in memory: float32 features and a float32 (or int64 class) label.</summary>
    private long RowBytes => FeatureCount * (long)sizeof(float) + (_options.Task == NeuralTask.MulticlassClassification ? sizeof(long) : sizeof(float));

    /// <summary>
    /// Loads the rows into memory when they fit <paramref name="limitBytes"/> — a row count the view knows is checked
    /// before reading, an unknown one while reading (the rows read so far are dropped once it is exceeded) — and
    /// otherwise counts them for streaming (see <see cref="Scan"/>). In memory, every row has been checked when this
    /// returns, so bad input fails before any training.
    /// </summary>
    public void Prepare(long limitBytes)
    {
        if (Sparse && limitBytes > 0)
        {
            LoadSparse(limitBytes); // over the limit, it counts the rest, and the rows stream by their non-zeros batch by batch
            return;
        }
        if (limitBytes > 0 && (_data.GetRowCount() is not long known || known / _shard.Size * RowBytes <= limitBytes))
        {
            Load(limitBytes);
            return;
        }
        Scan();
    }

    /// <summary>
    /// Reads the rows into memory when they fit. When the limit is reached midway (a view that does not know its row
    /// count), the stored rows are released and the same pass goes on counting, as <see cref="Scan"/> would, so nothing
    /// is read twice.
    /// </summary>
    private void Load(long limitBytes)
    {
        long? known = _data.GetRowCount() / _shard.Size;
        double fraction = _validationFraction;
        long maxRows = Math.Min(limitBytes / RowBytes, Array.MaxLength); // rows are counted in an int, labels in an array
        long Estimate(double share) => known is long n ? Math.Min(maxRows, (long)(n * share * 1.05) + 16) : 4096;
        using var train = new RowStore(FeatureCount, Estimate(1 - fraction), maxRows);
        using var val = fraction > 0 ? new RowStore(FeatureCount, Estimate(fraction), maxRows) : null;
        long skipped = 0;
        using (var rows = new RowReader(this, null, readFeatures: true))
        {
            while (rows.MoveNext())
            {
                if ((rows.Position & 4095) == 0) _options.CancellationToken.ThrowIfCancellationRequested();
                if (train.Count + (val?.Count ?? 0) >= maxRows)
                {
                    // Over the limit: release the rows and count this one and the rest, as Scan would.
                    var (kept, keptVal) = (train.Count, val?.Count ?? 0);
                    train.Dispose();
                    val?.Dispose();
                    Count(rows, current: true, kept, keptVal, skipped);
                    return;
                }
                var store = rows.IsValidation ? val! : train;
                if (!rows.ReadFeatures(store.NextRow())) { skipped++; continue; }
                store.Commit(rows.Label);
            }
        }
        if (train.Count == 0) throw Empty(skipped);
        bool multiclass = _options.Task == NeuralTask.MulticlassClassification;
        MemoryTrain = train.Finish(multiclass);
        MemoryVal = val is { Count: > 0 } ? val.Finish(multiclass) : null;
        (TrainRows, ValRows, SkippedRows) = (MemoryTrain[0].shape[0], MemoryVal?[0].shape[0] ?? 0, skipped);
    }

    /// <summary>
    /// Reads the rows as their non-zeros while they fit <paramref name="limitBytes"/> (8 bytes a non-zero); past it the
    /// rows are released and the same pass counts the rest, as <see cref="Scan"/> would, for dense streaming.
    /// </summary>
    private void LoadSparse(long limitBytes)
    {
        bool multiclass = _options.Task == NeuralTask.MulticlassClassification;
        var train = new SparseRows(FeatureCount, multiclass);
        var val = _validationFraction > 0 ? new SparseRows(FeatureCount, multiclass) : null;
        long skipped = 0;
        bool skip = _options.NonFiniteFeatures == NonFiniteFeaturePolicy.SkipRow; // Count's pass past the limit reads rows to skip them
        using (var rows = new RowReader(this, null, readFeatures: skip, readVectors: true))
        {
            while (rows.MoveNext())
            {
                if ((rows.Position & 4095) == 0) _options.CancellationToken.ThrowIfCancellationRequested();
                var store = rows.IsValidation ? val! : train;
                if (!store.Add(rows.ReadVector(), rows.Label))
                {
                    if (_options.NonFiniteFeatures == NonFiniteFeaturePolicy.SkipRow) { skipped++; continue; }
                    throw NonFinite(rows.Position);
                }
                if (train.Bytes + (val?.Bytes ?? 0) > limitBytes || train.NonZeros + (val?.NonZeros ?? 0) > SparseRows.MaxNonZeros)
                {
                    Count(rows, current: false, train.Count, val?.Count ?? 0, skipped);
                    return;
                }
            }
        }
        if (train.Count == 0) throw Empty(skipped);
        (SparseTrain, SparseVal) = (train, val is { Count: > 0 } ? val : null);
        (TrainRows, ValRows, SkippedRows) = (train.Count, val?.Count ?? 0, skipped);
    }

    /// <summary>Bytes the sparse rows take (0 unless held so).</summary>
    public long SparseBytes => (SparseTrain?.Bytes ?? 0) + (SparseVal?.Bytes ?? 0);

    /// <summary>
    /// Counts the training and validation rows for streaming. A pass over the data is needed only when rows are split
    /// off for validation, when non-finite rows are skipped, or when the data view does not know its row count;
    /// otherwise every row is validated as it streams through the first epoch (errors still surface inside Fit).
    /// </summary>
    public void Scan()
    {
        bool skip = _options.NonFiniteFeatures == NonFiniteFeaturePolicy.SkipRow;
        if (!skip && _validationFraction == 0 && _shard.Size == 1 && _data.GetRowCount() is long known)
        {
            if (known == 0) throw Empty(0);
            (TrainRows, ValRows, SkippedRows) = (known, 0, 0);
            return;
        }
        using var rows = new RowReader(this, null, readFeatures: skip);
        Count(rows, current: false, 0, 0, 0);
    }

    /// <summary>
    /// Counts the training, validation and (SkipRow) skipped rows from the reader's position on — its current row too
    /// when <paramref name="current"/> — on top of those given, and records them.
    /// </summary>
    private void Count(RowReader rows, bool current, long train, long val, long skipped)
    {
        bool skip = _options.NonFiniteFeatures == NonFiniteFeaturePolicy.SkipRow;
        var scratch = skip ? new float[FeatureCount] : [];
        for (bool has = current || rows.MoveNext(); has; has = rows.MoveNext())
        {
            if ((rows.Position & 4095) == 0) _options.CancellationToken.ThrowIfCancellationRequested();
            if (skip && !rows.ReadFeatures(scratch)) { skipped++; continue; }
            if (rows.IsValidation) val++; else train++;
        }
        if (train == 0) throw Empty(skipped);
        (TrainRows, ValRows, SkippedRows) = (train, val, skipped);
    }

    private ArgumentException Empty(long skipped) => new(
        _shard.Size > 1 ? $"Rank {_shard.Rank} of {_shard.Size} received no training row (rows are shared among ranks by a hash of their id{(skipped > 0 ? $"; {skipped} of its rows had non-finite features" : "")}): the data is too small for {_shard.Size} ranks; use fewer."
        : skipped > 0 ? $"Every one of the {skipped} rows has non-finite features; nothing is left to train on."
                    : "The training data is empty (or the validation fraction took every row).", "data");

    private SchemaMismatchException NonFinite(long position) =>
        new(_features.Name, "finite feature values (or NonFiniteFeatures = SkipRow)", $"NaN or infinity in row {position}");

    /// <summary>Releases the in-memory rows.</summary>
    public void Dispose()
    {
        foreach (var t in (MemoryTrain ?? []).Concat(MemoryVal ?? [])) t.Dispose();
        (MemoryTrain, MemoryVal) = (null, null);
    }

    /// <summary>Rows per batch on this rank: BatchSize, or this rank's share of it.</summary>
    public int BatchSize => _batchSize;

    public int TrainBatches => (int)((TrainRows + _batchSize - 1) / _batchSize);
    public int ValBatches => (int)((ValRows + _batchSize - 1) / _batchSize);

    /// <summary>The training batches of epoch <paramref name="epoch"/>, shuffled.</summary>
    public IEnumerable<Batch> Train(int epoch) =>
        _data.CanShuffle
            ? Direct(new Random(HashCode32(_seed, epoch)), validation: false)
            : Windowed(new Random(HashCode32(_seed ^ 0x5bd1e995, epoch)));

    /// <summary>The validation batches, in order.</summary>
    public IEnumerable<Batch> Validation() => Direct(null, validation: true);

    /// <summary>Every (training) row in order: what a data view of validation rows streams each epoch.</summary>
    public IEnumerable<Batch> InOrder() => Direct(null, validation: false);

    /// <summary>Rows go from the cursor straight into the batch tensor's memory (the data view shuffles, if asked).</summary>
    private IEnumerable<Batch> Direct(Random? random, bool validation)
    {
        if (Sparse) return SparseStream(random, null, validation, windowBatches: 1);
        return DenseDirect(random, validation);
    }

    private IEnumerable<Batch> DenseDirect(Random? random, bool validation)
    {
        int f = FeatureCount, b = _batchSize;
        using var rows = new RowReader(this, random, readFeatures: true);
        while (true)
        {
            var x = empty(b, f).DetachFromDisposeScope();
            var y = new double[b];
            int n = 0;
            try
            {
                var memory = MemoryMarshal.Cast<byte, float>(x.bytes);
                while (n < b && rows.MoveNext())
                {
                    if (rows.IsValidation != validation) continue;
                    if (!rows.ReadFeatures(memory.Slice(n * f, f))) continue; // skipped (SkipRow policy)
                    y[n++] = rows.Label;
                }
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
        if (Sparse) return SparseStream(null, shuffle, validation: false, WindowBatches);
        return DenseWindowed(shuffle);
    }

    /// <summary>
    /// Wide sparse rows over InMemoryLimitMB, streamed as they are stored: read by their non-zeros into a store of
    /// <paramref name="windowBatches"/> batches at a time (the view shuffling them if <paramref name="cursorShuffle"/>
    /// is given, else the store, with <paramref name="windowShuffle"/>), then handed out as sparse batches.
    /// </summary>
    private IEnumerable<Batch> SparseStream(Random? cursorShuffle, Random? windowShuffle, bool validation, int windowBatches)
    {
        bool multiclass = _options.Task == NeuralTask.MulticlassClassification;
        int capacity = _batchSize * windowBatches;
        using var rows = new RowReader(this, cursorShuffle, readFeatures: false, readVectors: true);
        bool more = true;
        while (more)
        {
            var store = new SparseRows(FeatureCount, multiclass);
            while (store.Count < capacity && (more = rows.MoveNext()))
            {
                if (rows.IsValidation != validation) continue;
                if (store.Add(rows.ReadVector(), rows.Label)) continue;
                if (_options.NonFiniteFeatures != NonFiniteFeaturePolicy.SkipRow) throw NonFinite(rows.Position); // skipped under SkipRow
            }
            if (store.Count == 0) yield break;
            foreach (var batch in windowShuffle is null ? store.InOrder(_batchSize) : store.Shuffled(_batchSize, windowShuffle.Next(), 0))
                yield return batch;
        }
    }

    private IEnumerable<Batch> DenseWindowed(Random shuffle)
    {
        int f = FeatureCount, b = _batchSize, window = b * WindowBatches;
        var rowsX = new float[window * f];
        var rowsY = new double[window];
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
                rowsY[filled++] = rows.Label;
            }
            for (int i = 0; i < filled; i++) order[i] = i;
            shuffle.Shuffle(order.AsSpan(0, filled));
            for (int start = 0; start < filled; start += b)
            {
                int n = Math.Min(b, filled - start);
                var x = empty(n, f).DetachFromDisposeScope();
                var memory = MemoryMarshal.Cast<byte, float>(x.bytes);
                var y = new double[n];
                for (int i = 0; i < n; i++)
                {
                    int src = order[start + i];
                    rowsX.AsSpan(src * f, f).CopyTo(memory.Slice(i * f, f)); // checked when read
                    y[i] = rowsY[src];
                }
                yield return MakeBatch(x, y, n);
            }
        }
    }

    private Batch MakeBatch(Tensor x, double[] y, int n) =>
        new(FirstRows(x, n), Labels(y, n, _options.Task == NeuralTask.MulticlassClassification));

    /// <summary>The first <paramref name="rows"/> rows of <paramref name="x"/>, which it replaces (a view keeps the storage alive).</summary>
    private static Tensor FirstRows(Tensor x, long rows)
    {
        if (rows == x.shape[0]) return x;
        var view = x.narrow(0, 0, rows).DetachFromDisposeScope();
        x.Dispose();
        return view;
    }

    /// <summary>The first <paramref name="n"/> labels as the loss reads them: int64 class indices for multiclass, else float32.</summary>
    private static Tensor Labels(double[] y, int n, bool classIndices)
    {
        if (classIndices)
        {
            var classes = new long[n];
            for (int i = 0; i < n; i++) classes[i] = (long)y[i];
            return tensor(classes, new long[] { n }).DetachFromDisposeScope();
        }
        var values = new float[n]; // a regression label was a float to begin with, a binary one 0 or 1: exact
        for (int i = 0; i < n; i++) values[i] = (float)y[i];
        return tensor(values, new long[] { n }).DetachFromDisposeScope();
    }

    /// <summary>
    /// Rows read into one growing feature tensor (rows × features, written in place), with their labels; grows by
    /// doubling up to a row limit. Rows are addressed with 64-bit offsets, so the tensor may pass 2 GiB.
    /// </summary>
    private sealed class RowStore(int features, long capacity, long maxRows) : IDisposable
    {
        private Tensor? _x = empty(Math.Max(1, capacity), features).DetachFromDisposeScope();
        private IntPtr _first = IntPtr.Zero; // _x's first float, found once per allocation
        private double[] _y = new double[Math.Max(1, capacity)];

        public int Count { get; private set; }

        /// <summary>Where the next row's features go; <see cref="Commit"/> keeps them.</summary>
        public unsafe Span<float> NextRow()
        {
            if (Count == _y.Length) Grow();
            if (_first == IntPtr.Zero) _first = (IntPtr)HostMemory.Floats(_x!);
            return new Span<float>((float*)_first + (long)Count * features, features);
        }

        public void Commit(double label) => _y[Count++] = label;

        private void Grow()
        {
            long rows = Math.Max(Count + 1, Math.Min(2L * Count, maxRows));
            var bigger = empty(rows, features).DetachFromDisposeScope();
            using (var head = bigger.narrow(0, 0, _x!.shape[0])) head.copy_(_x);
            _x.Dispose();
            _x = bigger;
            _first = IntPtr.Zero;
            Array.Resize(ref _y, (int)rows);
        }

        /// <summary>Hands over (features, labels) trimmed to the rows read; the store no longer owns them.</summary>
        public Tensor[] Finish(bool classIndices)
        {
            var all = _x!;
            _x = null;
            long capacity = all.shape[0];
            var x = FirstRows(all, Count);
            if (Count * 4L < capacity * 3) // much spare room: give it back
            {
                var view = x;
                x = view.clone().DetachFromDisposeScope();
                view.Dispose();
            }
            return [x, Labels(_y, Count, classIndices)];
        }

        public void Dispose()
        {
            _x?.Dispose();
            _x = null;
            _y = [];
        }
    }

    /// <summary>A cursor over features and labels that validates each row as it is read.</summary>
    private sealed class RowReader : IDisposable
    {
        private readonly DataViewBatchSource _source;
        private readonly DataViewRowCursor _cursor;
        private readonly ColumnChecks.FeatureRead? _features;
        private readonly ValueGetter<VBuffer<float>>? _vector;
        private VBuffer<float> _vectorBuffer;
        private readonly Func<long, double> _label;
        private readonly ValueGetter<DataViewRowId> _id;
        private DataViewRowId _rowId;

        public RowReader(DataViewBatchSource source, Random? random, bool readFeatures, bool readVectors = false)
        {
            _source = source;
            var columns = readFeatures || readVectors ? new[] { source._features, source._label } : [source._label];
            _cursor = source._data.GetRowCursor(columns, random);
            _features = readFeatures ? ColumnChecks.FeatureReader(_cursor, source._features, source.FeatureCount, source.Vocabulary) : null;
            _vector = readVectors ? _cursor.GetGetter<VBuffer<float>>(source._features) : null;
            _label = ColumnChecks.LabelReader(_cursor, source._label, source._options.Task);
            _id = _cursor.GetIdGetter();
        }

        public double Label { get; private set; }

        public long Position => _cursor.Position;

        public bool IsValidation { get; private set; }

        public bool MoveNext()
        {
            var shard = _source._shard;
            double fraction = _source._validationFraction;
            while (true)
            {
                if (!_cursor.MoveNext()) return false;
                if (fraction > 0 || shard.Size > 1) _id(ref _rowId);
                if (shard.Size > 1 && !shard.Owns(Unit(_rowId, _source._seed ^ ShardSalt))) continue; // another rank's row: not read
                Label = _label(_cursor.Position);
                if (fraction > 0) IsValidation = Unit(_rowId, _source._seed) < fraction;
                return true;
            }
        }

        /// <summary>The current row's feature vector as stored (sparse or dense), checked to have the column's width.</summary>
        public VBuffer<float> ReadVector()
        {
            _vector!(ref _vectorBuffer);
            if (_vectorBuffer.Length != _source.FeatureCount)
                throw new SchemaMismatchException(_source._features.Name, $"a vector of {_source.FeatureCount} Single values in every row (the column's width)",
                    $"{_vectorBuffer.Length} values in row {_cursor.Position}");
            return _vectorBuffer;
        }

        /// <summary>
        /// Reads the current row's features (checked in the same pass). A row with a NaN or infinity returns false
        /// under the SkipRow policy and throws, naming the row, under Throw.
        /// </summary>
        public bool ReadFeatures(Span<float> destination)
        {
            if (_features!(destination)) return true;
            if (_source._options.NonFiniteFeatures == NonFiniteFeaturePolicy.SkipRow) return false;
            throw _source.NonFinite(_cursor.Position);
        }

        public void Dispose() => _cursor.Dispose();
    }

    private const int ShardSalt = 0x6d2b79f5; // the ranks' split is independent of the validation split

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
