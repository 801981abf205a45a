using Microsoft.ML;
using static TorchSharp.torch;
using Microsoft.ML.Data;

namespace MlNetGuide.Estimators;

/// <summary>
/// The lazy output of <see cref="NeuralNetworkTransformer.Transform"/>. Its cursor reads a batch of rows ahead with one
/// input cursor — the features straight into the input tensor, the pass-through columns a consumer asked for into
/// per-row buffers — runs one forward pass per batch, then serves the batch row by row. The upstream pipeline runs once.
/// </summary>
internal sealed class ScoredDataView(IDataView input, DataViewSchema schema, NeuralScorer scorer, int batchSize) : IDataView
{
    public DataViewSchema Schema { get; } = schema;

    public bool CanShuffle => false;

    public long? GetRowCount() => input.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var needed = columnsNeeded.Select(c => c.Index).ToHashSet();
        int inputCount = input.Schema.Count;
        var passThrough = needed.Where(i => i < inputCount).Select(i => input.Schema[i]).ToList();
        if (!needed.Any(i => i >= inputCount)) // none of our outputs: the input's own cursor serves every row
            return new PassThroughCursor(Schema, input.GetRowCursor(passThrough), needed);
        var features = input.Schema[scorer.FeatureColumn];
        var cursor = input.GetRowCursor(passThrough.Append(features));
        return new BatchCursor(Schema, cursor, passThrough, needed, scorer, batchSize);
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)];

    /// <summary>Only input columns asked for: the input cursor's rows, as they are.</summary>
    private sealed class PassThroughCursor(DataViewSchema schema, DataViewRowCursor input, HashSet<int> active) : DataViewRowCursor
    {
        public override DataViewSchema Schema => schema;
        public override long Position => input.Position;
        public override long Batch => input.Batch;
        public override bool MoveNext() => input.MoveNext();
        public override bool IsColumnActive(DataViewSchema.Column column) => active.Contains(column.Index);
        public override ValueGetter<DataViewRowId> GetIdGetter() => input.GetIdGetter();

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column) =>
            IsColumnActive(column)
                ? input.GetGetter<TValue>(input.Schema[column.Index])
                : throw new InvalidOperationException($"Column '{column.Name}' was not requested when the cursor was created.");

        protected override void Dispose(bool disposing)
        {
            if (disposing) input.Dispose();
            base.Dispose(disposing);
        }
    }

    private sealed class BatchCursor : DataViewRowCursor
    {
        private readonly DataViewSchema _schema;
        private readonly DataViewRowCursor _input;
        private readonly HashSet<int> _active;
        private readonly NeuralScorer _scorer;
        private readonly ColumnChecks.FeatureRead? _readFeatures;
        private readonly Dictionary<int, RowBuffer> _passThrough; // input column index -> the batch's values
        private readonly ValueGetter<DataViewRowId> _inputId;
        private readonly DataViewRowId[] _ids;
        private readonly Tensor? _features; // batch x features, filled in place for every batch, owned by this cursor (dense input)
        private readonly ColumnChecks.SparseFeatureRead? _readSparse; // sparse input: the batch's non-zeros, row by row
        private readonly List<int> _starts = [0], _columns = [];
        private readonly List<float> _values = [];
        private readonly bool[] _nonFinite; // per row of the batch: did the reader find a NaN or infinity?
        private readonly ResultRow _result = new() { Row = -1 };
        private readonly int _batchSize;
        private int _rowsInBatch;
        private long _position = -1;
        private bool _disposed;

        public BatchCursor(DataViewSchema schema, DataViewRowCursor input, List<DataViewSchema.Column> passThrough,
            HashSet<int> active, NeuralScorer scorer, int batchSize)
        {
            _schema = schema;
            _input = input;
            _active = active;
            _scorer = scorer;
            _batchSize = batchSize;
            if (scorer.SparseInput) _readSparse = ColumnChecks.SparseFeatureReader(input, input.Schema[scorer.FeatureColumn], scorer.FeatureCount);
            else _readFeatures = scorer.FeatureReader(input);
            _passThrough = passThrough.ToDictionary(c => c.Index, c => RowBuffer.For(input, c, batchSize));
            _inputId = input.GetIdGetter();
            _ids = new DataViewRowId[batchSize];
            _nonFinite = new bool[batchSize];
            if (!scorer.SparseInput) _features = scorer.NewInput(batchSize);
        }

        public override DataViewSchema Schema => _schema;
        public override long Position => _position;
        public override long Batch => _input.Batch;

        public override bool MoveNext()
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (++_result.Row < _rowsInBatch) { _position++; return true; }
            // Read the next batch ahead — features into the input tensor, pass-through values into their buffers — and score it.
            int f = _scorer.FeatureCount;
            var rows = _features is null ? default : NeuralScorer.Rows(_features);
            _rowsInBatch = 0;
            if (_readSparse is not null)
            {
                _starts.RemoveRange(1, _starts.Count - 1);
                _columns.Clear();
                _values.Clear();
            }
            bool anyNonFinite = false;
            while (_rowsInBatch < _batchSize && _input.MoveNext())
            {
                int r = _rowsInBatch++;
                bool finite = _readSparse is not null ? _readSparse(_columns, _values) : _readFeatures!(rows.Slice(r * f, f));
                if (_readSparse is not null) _starts.Add(_columns.Count);
                _nonFinite[r] = !finite;
                anyNonFinite |= !finite;
                _inputId(ref _ids[r]);
                foreach (var buffer in _passThrough.Values) buffer.Capture(r);
            }
            if (_rowsInBatch == 0)
            {
                _position = -1; // as ML.NET's cursors do once they are past the last row
                return false;
            }
            if (_features is null) _scorer.ScoreSparse(_starts, _columns, _values, _rowsInBatch, _result, anyNonFinite ? _nonFinite : []);
            else _scorer.Score(_features, _rowsInBatch, _result, anyNonFinite ? _nonFinite : []);
            _result.Row = 0;
            _position++;
            return true;
        }

        public override bool IsColumnActive(DataViewSchema.Column column) => _active.Contains(column.Index);

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (!IsColumnActive(column))
                throw new InvalidOperationException($"Column '{column.Name}' was not requested when the cursor was created.");
            if (_passThrough.TryGetValue(column.Index, out var buffer))
                return buffer.Getter<TValue>(_result);
            return _scorer.Getter(column.Index - _input.Schema.Count, _result) as ValueGetter<TValue>
                ?? throw new InvalidOperationException($"Column '{column.Name}' holds {column.Type}, not {typeof(TValue).Name}.");
        }

        public override ValueGetter<DataViewRowId> GetIdGetter() => (ref DataViewRowId id) => id = _ids[_result.Row];

        protected override void Dispose(bool disposing)
        {
            if (disposing && !_disposed)
            {
                _disposed = true;
                _input.Dispose();
                _features?.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}

/// <summary>
/// One input column's values for the rows of a batch, read while the batch is read ahead and served row by row after.
/// Vectors are copied into buffers this owns (a getter may hand out memory it reuses on the next row); text is kept as
/// immutable memory (the upstream's own string, or a string copied from a reused buffer), because ML.NET consumers keep
/// text values without copying them; other value types are copied as they are; a reference type (an image) is kept as
/// the getter made it, a fresh one per row.
/// </summary>
internal abstract class RowBuffer
{
    public abstract void Capture(int slot);

    public abstract ValueGetter<TValue> Getter<TValue>(ResultRow current);

    public static RowBuffer For(DataViewRow row, DataViewSchema.Column column, int capacity)
    {
        var raw = column.Type.RawType;
        var type = raw.IsGenericType && raw.GetGenericTypeDefinition() == typeof(VBuffer<>)
            ? typeof(VectorBuffer<>).MakeGenericType(raw.GetGenericArguments()[0])
            : raw == typeof(ReadOnlyMemory<char>) ? typeof(TextBuffer)
            : typeof(ValueBuffer<>).MakeGenericType(raw);
        return (RowBuffer)Activator.CreateInstance(type, row, column, capacity)!;
    }

    private static ValueGetter<TValue> Typed<TValue, TStored>(DataViewSchema.Column column, ValueGetter<TStored> getter) =>
        getter as ValueGetter<TValue> ?? throw new InvalidOperationException($"Column '{column.Name}' holds {column.Type}, not {typeof(TValue).Name}.");

    private sealed class ValueBuffer<T>(DataViewRow row, DataViewSchema.Column column, int capacity) : RowBuffer
    {
        private readonly ValueGetter<T> _source = row.GetGetter<T>(column);
        private readonly T[] _values = new T[capacity];

        public override void Capture(int slot)
        {
            if (!typeof(T).IsValueType) _values[slot] = default!; // the getter must make a new object, not reuse one a consumer holds
            _source(ref _values[slot]);
        }

        public override ValueGetter<TValue> Getter<TValue>(ResultRow current) =>
            Typed<TValue, T>(column, (ref T value) => value = _values[current.Row]);
    }

    private sealed class VectorBuffer<T>(DataViewRow row, DataViewSchema.Column column, int capacity) : RowBuffer
    {
        private readonly ValueGetter<VBuffer<T>> _source = row.GetGetter<VBuffer<T>>(column);
        private readonly VBuffer<T>[] _values = new VBuffer<T>[capacity];
        private VBuffer<T> _read;

        public override void Capture(int slot)
        {
            _source(ref _read);
            _read.CopyTo(ref _values[slot]);
        }

        public override ValueGetter<TValue> Getter<TValue>(ResultRow current) =>
            Typed<TValue, VBuffer<T>>(column, (ref VBuffer<T> value) => _values[current.Row].CopyTo(ref value));
    }

    private sealed class TextBuffer(DataViewRow row, DataViewSchema.Column column, int capacity) : RowBuffer
    {
        private readonly ValueGetter<ReadOnlyMemory<char>> _source = row.GetGetter<ReadOnlyMemory<char>>(column);
        private readonly ReadOnlyMemory<char>[] _values = new ReadOnlyMemory<char>[capacity];
        private ReadOnlyMemory<char> _read;

        public override void Capture(int slot)
        {
            _read = default; // never hand the getter memory a consumer may still hold
            _source(ref _read);
            // A slice of a string cannot change under a consumer; anything else (a reused char[]) is copied once.
            _values[slot] = System.Runtime.InteropServices.MemoryMarshal.TryGetString(_read, out _, out _, out _) ? _read : _read.ToString().AsMemory();
        }

        public override ValueGetter<TValue> Getter<TValue>(ResultRow current) =>
            Typed<TValue, ReadOnlyMemory<char>>(column, (ref ReadOnlyMemory<char> value) => value = _values[current.Row]);
    }
}

/// <summary>The single-row path (PredictionEngine): computes the outputs of the current input row on first access.</summary>
internal sealed class NeuralRowMapper(DataViewSchema inputSchema, DataViewSchema outputSchema, NeuralScorer scorer) : IRowToRowMapper
{
    public DataViewSchema InputSchema { get; } = inputSchema;

    public DataViewSchema OutputSchema { get; } = outputSchema;

    public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
    {
        var result = new HashSet<int>();
        foreach (var c in dependingColumns)
            result.Add(c.Index < InputSchema.Count ? c.Index : InputSchema[scorer.FeatureColumn].Index);
        return result.Select(i => InputSchema[i]);
    }

    public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns) =>
        new Row(this, input, activeColumns.Select(c => c.Index).ToHashSet(), scorer);

    private sealed class Row : DataViewRow
    {
        private readonly NeuralRowMapper _parent;
        private readonly DataViewRow _input;
        private readonly HashSet<int> _active;
        private readonly NeuralScorer _scorer;
        private readonly ResultRow _result = new();
        private readonly Tensor _features; // one row, read straight into tensor memory
        private ColumnChecks.FeatureRead? _read;
        private readonly float[] _lastX;
        private bool _scored;

        public Row(NeuralRowMapper parent, DataViewRow input, HashSet<int> active, NeuralScorer scorer)
        {
            _parent = parent;
            _input = input;
            _active = active;
            _scorer = scorer;
            _features = scorer.NewInput(1);
            _lastX = new float[scorer.FeatureCount];
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) _features.Dispose();
            base.Dispose(disposing);
        }

        public override DataViewSchema Schema => _parent.OutputSchema;
        public override long Position => _input.Position;
        public override long Batch => _input.Batch;
        public override bool IsColumnActive(DataViewSchema.Column column) => _active.Contains(column.Index);
        public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            int inputCount = _parent.InputSchema.Count;
            if (column.Index < inputCount) return _input.GetGetter<TValue>(_input.Schema[column.Index]);
            var inner = _scorer.Getter(column.Index - inputCount, _result) as ValueGetter<TValue>
                ?? throw new InvalidOperationException($"Column '{column.Name}' holds {column.Type}, not {typeof(TValue).Name}.");
            return (ref TValue value) =>
            {
                EnsureScored();
                inner(ref value);
            };
        }

        private void EnsureScored()
        {
            // PredictionEngine reuses one row object and changes the input under it. Re-reading the features is cheap
            // next to a forward pass, so score again only when they changed (NaN-safe bitwise comparison).
            _read ??= _scorer.FeatureReader(_input);
            var x = NeuralScorer.Rows(_features);
            bool finite = _read(x);
            if (_scored && x.SequenceEqual(_lastX)) return;
            x.CopyTo(_lastX);
            _scorer.Score(_features, 1, _result, finite ? [] : [true]);
            _result.Row = 0;
            _scored = true;
        }
    }
}
