using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetGuide.Tests.Shared;

/// <summary>One row of a wide, sparse feature column, as FeaturizeText or a one-hot encoding writes it.</summary>
internal sealed class WideRow
{
    public VBuffer<float> Features { get; set; }

    public bool Label { get; set; }
}

/// <summary>Seeded rows of a wide column with a fixed number of non-zeros each (the probe's and the benchmark's sparse inputs).</summary>
internal static class WideRows
{
    /// <summary>
    /// <paramref name="count"/> rows of <paramref name="width"/> slots, <paramref name="nonZeros"/> of them set (values
    /// in [-1, 1), distinct ascending columns); the label is whether the first 10 values sum above 0, so a network can learn it.
    /// </summary>
    public static List<WideRow> Generate(int count, int width, int nonZeros, int seed = 1)
    {
        var rng = new Random(seed);
        var rows = new List<WideRow>(count);
        for (int i = 0; i < count; i++)
        {
            var columns = new SortedSet<int>();
            while (columns.Count < nonZeros) columns.Add(rng.Next(width));
            var indices = columns.ToArray();
            var values = indices.Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
            rows.Add(new WideRow { Features = new VBuffer<float>(width, indices.Length, values, indices), Label = values.Take(10).Sum() > 0 });
        }
        return rows;
    }

    /// <summary>The rows as a cached data view whose feature column is a known-size vector of <paramref name="width"/>.</summary>
    public static IDataView View(MLContext ml, List<WideRow> rows, int width)
    {
        var definition = SchemaDefinition.Create(typeof(WideRow));
        definition[nameof(WideRow.Features)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, width);
        return ml.Data.Cache(ml.Data.LoadFromEnumerable(rows, definition));
    }
}
