using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetGuide.Estimators;

/// <summary>
/// The lazy output of <see cref="NeuralNetworkTransformer.Transform"/>. Its cursor reads features a batch ahead with
/// one input cursor and runs one forward pass per batch, while a second input cursor, in lockstep, serves the
/// pass-through columns of the current row. Both ask for rows in the input's natural order, so they agree.
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
        bool outputs = needed.Any(i => i >= inputCount);
        var follow = input.GetRowCursor(passThrough);
        var lead = outputs ? input.GetRowCursor([input.Schema[scorer.FeatureColumn]]) : null;
        return new Cursor(this, follow, lead, needed, scorer, batchSize);
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)];

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly ScoredDataView _parent;
        private readonly DataViewRowCursor _follow;
        private readonly DataViewRowCursor? _lead;
        private readonly HashSet<int> _active;
        private readonly NeuralScorer _scorer;
        private readonly ColumnChecks.FeatureRead? _readFeatures;
        private readonly float[] _x;
        private readonly ResultRow _result = new();
        private readonly int _batchSize;
        private int _rowsInBatch;

        public Cursor(ScoredDataView parent, DataViewRowCursor follow, DataViewRowCursor? lead, HashSet<int> active, NeuralScorer scorer, int batchSize)
        {
            _parent = parent;
            _follow = follow;
            _lead = lead;
            _active = active;
            _scorer = scorer;
            _batchSize = batchSize;
            _x = lead is null ? [] : new float[batchSize * scorer.FeatureCount];
            if (lead is not null)
                _readFeatures = ColumnChecks.FeatureReader(lead, lead.Schema[scorer.FeatureColumn], scorer.FeatureCount);
            _result.Row = -1;
        }

        public override DataViewSchema Schema => _parent.Schema;
        public override long Position => _follow.Position;
        public override long Batch => _follow.Batch;

        public override bool MoveNext()
        {
            if (!_follow.MoveNext()) return false;
            if (_lead is null) return true;
            if (++_result.Row < _rowsInBatch) return true;
            // Read the next batch of features ahead and score it in one forward pass.
            int f = _scorer.FeatureCount;
            _rowsInBatch = 0;
            while (_rowsInBatch < _batchSize && _lead.MoveNext())
                _readFeatures!(_x.AsSpan(_rowsInBatch++ * f, f));
            if (_rowsInBatch == 0)
                throw new InvalidOperationException("The input data view yielded fewer rows to the second cursor than to the first; it must give the same rows in the same order to every unshuffled cursor.");
            _scorer.Score(_x, _rowsInBatch, _result);
            _result.Row = 0;
            return true;
        }

        public override bool IsColumnActive(DataViewSchema.Column column) => _active.Contains(column.Index);

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (!IsColumnActive(column))
                throw new InvalidOperationException($"Column '{column.Name}' was not requested when the cursor was created.");
            int inputCount = _follow.Schema.Count;
            if (column.Index < inputCount)
                return _follow.GetGetter<TValue>(_follow.Schema[column.Index]);
            return _scorer.Getter(column.Index - inputCount, _result) as ValueGetter<TValue>
                ?? throw new InvalidOperationException($"Column '{column.Name}' holds {column.Type}, not {typeof(TValue).Name}.");
        }

        public override ValueGetter<DataViewRowId> GetIdGetter() => _follow.GetIdGetter();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _follow.Dispose();
                _lead?.Dispose();
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
        private readonly float[] _x;
        private ColumnChecks.FeatureRead? _read;
        private readonly float[] _lastX;
        private bool _scored;

        public Row(NeuralRowMapper parent, DataViewRow input, HashSet<int> active, NeuralScorer scorer)
        {
            _parent = parent;
            _input = input;
            _active = active;
            _scorer = scorer;
            _x = new float[scorer.FeatureCount];
            _lastX = new float[scorer.FeatureCount];
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
            _read(_x);
            if (_scored && _x.AsSpan().SequenceEqual(_lastX)) return;
            _x.CopyTo(_lastX, 0);
            _scorer.Score(_x, 1, _result);
            _result.Row = 0;
            _scored = true;
        }
    }
}
