using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetGuide.Estimators.Tests;

/// <summary>
/// Counts the cursors opened over a data view and the rows they read: how many passes a Fit or a Transform makes over
/// its upstream pipeline.
/// </summary>
internal sealed class RowCountingView(IDataView inner) : IDataView
{
    private long _rows, _cursors;
    public long RowsRead => Interlocked.Read(ref _rows);
    public long CursorsOpened => Interlocked.Read(ref _cursors);
    public bool CanShuffle => inner.CanShuffle;
    public DataViewSchema Schema => inner.Schema;
    public long? GetRowCount() => inner.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        Interlocked.Increment(ref _cursors);
        return new Counting(this, inner.GetRowCursor(columnsNeeded, rand));
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)];

    private sealed class Counting(RowCountingView owner, DataViewRowCursor cursor) : DataViewRowCursor
    {
        public override DataViewSchema Schema => cursor.Schema;
        public override long Position => cursor.Position;
        public override long Batch => cursor.Batch;
        public override bool IsColumnActive(DataViewSchema.Column column) => cursor.IsColumnActive(column);
        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column) => cursor.GetGetter<TValue>(column);
        public override ValueGetter<DataViewRowId> GetIdGetter() => cursor.GetIdGetter();
        public override bool MoveNext()
        {
            if (!cursor.MoveNext()) return false;
            Interlocked.Increment(ref owner._rows);
            return true;
        }
        protected override void Dispose(bool disposing)
        {
            if (disposing) cursor.Dispose();
            base.Dispose(disposing);
        }
    }
}
