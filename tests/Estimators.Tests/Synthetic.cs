using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetGuide.Estimators.Tests;

public sealed class TabularRow
{
    [VectorType(3)] public float[] Features { get; set; } = [];
    public float Value { get; set; }
    public bool Positive { get; set; }
    public string Kind { get; set; } = "";
}

public sealed class RegressionOut { public float Score { get; set; } }

public sealed class BinaryOut
{
    public float Score { get; set; }
    public float Probability { get; set; }
    public bool PredictedLabel { get; set; }
}

/// <summary>Small synthetic tables with known answers: y = 2a - 3b + c + 1, positive when a + b > 1, kind by the largest feature.</summary>
internal static class Synthetic
{
    public static List<TabularRow> Rows(int n, int seed = 0)
    {
        var rng = new Random(seed);
        var rows = new List<TabularRow>(n);
        for (int i = 0; i < n; i++)
        {
            float a = (float)rng.NextDouble(), b = (float)rng.NextDouble(), c = (float)rng.NextDouble();
            rows.Add(new TabularRow
            {
                Features = [a, b, c],
                Value = 2 * a - 3 * b + c + 1,
                Positive = a + b > 1,
                Kind = a >= b && a >= c ? "a" : b >= c ? "b" : "c",
            });
        }
        return rows;
    }

    public static IDataView Data(MLContext ml, int n, int seed = 0) => ml.Data.LoadFromEnumerable(Rows(n, seed));
}
