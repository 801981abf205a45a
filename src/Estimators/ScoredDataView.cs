using Microsoft.ML;
using static TorchSharp.torch;
using Microsoft.ML.Data;

namespace MlNetGuide.Estimators;

/// <summary>
/// The lazy output of <see cref="NeuralNetworkTransformer.Transform"/>. Its cursor reads features a batch ahead with
/// one input cursor and runs one forward pass per batch, while a second input cursor, in lockstep, serves the
/// pass-through columns of the current row. Both ask for rows in the input's natural order, so they agree.
/// </summary>
internal sealed class ScoredDataView(IDataView input, DataViewSchema schema, NeuralScorer scorer, int batchSize) : IDataView
{
    private readonly int _inputColumnCount = input.Schema.Count;

    public DataViewSchema Schema { get; } = schema;

    public bool CanShuffle => false;

    public long? GetRowCount() => input.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var needed = columnsNeeded.Select(c => c.Index).ToHashSet();
        int inputCount = input.Schema.Count;
        var passThrough = needed.Where(i => i < inputCount).Select(i => input.Schema[i]).ToList();
        bool outputs = needed.Any(i => i >= inputCount);
        // Only our outputs asked for: the reading-ahead cursor alone drives the rows (no second pass over the input).
        if (outputs && passThrough.Count == 0)
            return new Cursor(this, null, input.GetRowCursor([input.Schema[scorer.FeatureColumn]]), needed, scorer, batchSize);
        var follow = input.GetRowCursor(passThrough);
        var lead = outputs ? input.GetRowCursor([input.Schema[scorer.FeatureColumn]]) : null;
        return new Cursor(this, follow, lead, needed, scorer, batchSize);
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)];

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly ScoredDataView _parent;
        private readonly DataViewRowCursor? _follow; // serves pass-through columns; null when none was asked for
        private readonly DataViewRowCursor? _lead;   // reads features a batch ahead; null when no output was asked for
        private readonly HashSet<int> _active;
        private readonly NeuralScorer _scorer;
        private readonly ColumnChecks.FeatureRead? _readFeatures;
        private Tensor? _input; // reused for every batch of this cursor (rented from the scorer): rows are read straight into it
        private readonly bool[] _nonFinite; // per row of the batch: did the reader find a NaN or infinity?
        private readonly ResultRow _result = new();
        private readonly int _batchSize;
        private int _rowsInBatch;
        private long _position = -1;

        public Cursor(ScoredDataView parent, DataViewRowCursor? follow, DataViewRowCursor? lead, HashSet<int> active, NeuralScorer scorer, int batchSize)
        {
            _parent = parent;
            _follow = follow;
            _lead = lead;
            _active = active;
            _scorer = scorer;
            _batchSize = batchSize;
            if (lead is not null)
            {
                _readFeatures = ColumnChecks.FeatureReader(lead, lead.Schema[scorer.FeatureColumn], scorer.FeatureCount,
                    streaming: FiniteCheck.Streams(batchSize, scorer.FeatureCount));
                _input = scorer.RentInput(batchSize);
            }
            _nonFinite = new bool[lead is null ? 0 : batchSize];
            _result.Row = -1;
        }

        public override DataViewSchema Schema => _parent.Schema;
        public override long Position => _follow?.Position ?? _position;
        public override long Batch => _follow?.Batch ?? _lead!.Batch;

        public override bool MoveNext()
        {
            if (_follow is not null && !_follow.MoveNext()) return false;
            if (_lead is null) return true;
            if (++_result.Row < _rowsInBatch) { _position++; return true; }
            // Read the next batch of features ahead and score it in one forward pass.
            int f = _scorer.FeatureCount;
            var rows = NeuralScorer.Rows(_input!);
            _rowsInBatch = 0;
            bool anyNonFinite = false;
            while (_rowsInBatch < _batchSize && _lead.MoveNext())
            {
                bool finite = _readFeatures!(rows.Slice(_rowsInBatch * f, f));
                _nonFinite[_rowsInBatch++] = !finite;
                anyNonFinite |= !finite;
            }
            if (_rowsInBatch == 0)
            {
                if (_follow is null) return false;
                throw new InvalidOperationException("The input data view yielded fewer rows to the second cursor than to the first; it must give the same rows in the same order to every unshuffled cursor.");
            }
            FiniteCheck.Publish(); // the rows may have been written with streaming stores
            _scorer.Score(_input!, _rowsInBatch, _result, anyNonFinite ? _nonFinite : []);
            _result.Row = 0;
            _position++;
            return true;
        }

        public override bool IsColumnActive(DataViewSchema.Column column) => _active.Contains(column.Index);

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (!IsColumnActive(column))
                throw new InvalidOperationException($"Column '{column.Name}' was not requested when the cursor was created.");
            int inputCount = _parent._inputColumnCount;
            if (column.Index < inputCount)
                return _follow!.GetGetter<TValue>(_follow.Schema[column.Index]);
            return _scorer.Getter(column.Index - inputCount, _result) as ValueGetter<TValue>
                ?? throw new InvalidOperationException($"Column '{column.Name}' holds {column.Type}, not {typeof(TValue).Name}.");
        }

        public override ValueGetter<DataViewRowId> GetIdGetter()
        {
            if (_follow is not null) return _follow.GetIdGetter();
            return (ref DataViewRowId id) => id = new DataViewRowId((ulong)_position, 0);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _follow?.Dispose();
                _lead?.Dispose();
                if (_input is not null) _scorer.ReturnInput(_input);
                _input = null; // a second Dispose must not return it twice
            }
            base.Dispose(disposing);
        }
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
            _read ??= ColumnChecks.FeatureReader(_input, _input.Schema[_scorer.FeatureColumn], _scorer.FeatureCount);
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
