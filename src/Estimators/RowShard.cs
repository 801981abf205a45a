namespace MlNetGuide.Estimators;

/// <summary>
/// Which rows a rank trains on: those whose seeded hash of the row id falls in its 1/<see cref="Size"/> of [0, 1), so the
/// split depends neither on row order nor on how the rows are read; and its share of every step's batch.
/// </summary>
internal sealed record RowShard(int Rank, int Size)
{
    /// <summary>One rank with every row.</summary>
    public static readonly RowShard All = new(0, 1);

    /// <summary>Whether a row whose hash is <paramref name="unit"/> (in [0, 1)) is this rank's.</summary>
    public bool Owns(double unit) => Math.Min(Size - 1, (int)(unit * Size)) == Rank;

    /// <summary>Rows this rank contributes to a step of <paramref name="globalBatch"/> rows: its share, rounded up.</summary>
    public int BatchSize(int globalBatch) => (globalBatch + Size - 1) / Size;
}
