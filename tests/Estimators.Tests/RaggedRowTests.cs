using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Modules;

namespace MlNetGuide.Estimators.Tests;

/// <summary>
/// ML.NET lets a <c>[VectorType(4)]</c> array hold any number of values. A row of another length must never be scored
/// with values left over from the previous row: Fit, Transform and PredictionEngine all refuse it, naming the column,
/// the row and both lengths.
/// </summary>
public class RaggedRowTests
{
    public sealed class Row4
    {
        [VectorType(4)] public float[]? Features { get; set; }
        public float Value { get; set; }
    }

    public sealed class Out { public float Score { get; set; } }

    public static TheoryData<int?> BadLengths => new() { 3, 0, null, 5 };

    private static float[]? Values(int? length) => length is int n ? Enumerable.Repeat(9f, n).ToArray() : null;

    private static List<Row4> Good(int n) =>
        Enumerable.Range(0, n).Select(i => new Row4 { Features = [i % 3, 1, 2, i % 5], Value = i % 7 }).ToList();

    private static NeuralNetworkEstimator Estimator(MLContext ml) =>
        ml.Regression.Trainers.NeuralNetwork(labelColumnName: "Value", architecture: NetworkArchitecture.Mlp(8), epochs: 1, batchSize: 8);

    [Theory]
    [MemberData(nameof(BadLengths))]
    public void FitRefusesARowOfAnotherLength(int? length)
    {
        var ml = new MLContext(seed: 1);
        var rows = Good(20);
        rows[7].Features = Values(length);
        var ex = Assert.Throws<SchemaMismatchException>(() => Estimator(ml).Fit(ml.Data.LoadFromEnumerable(rows)));
        Assert.Equal("Features", ex.ColumnName);
        Assert.Contains($"{length ?? 0} values in row 7", ex.Message);
        Assert.Contains("a vector of 4 Single values", ex.Message);
    }

    [Theory]
    [MemberData(nameof(BadLengths))]
    public void TransformRefusesARowOfAnotherLength(int? length)
    {
        var ml = new MLContext(seed: 1);
        using var model = Estimator(ml).Fit(ml.Data.LoadFromEnumerable(Good(20)));
        var rows = Good(10);
        rows[4].Features = Values(length);
        var scored = model.Transform(ml.Data.LoadFromEnumerable(rows));
        var ex = Assert.Throws<SchemaMismatchException>(() => scored.GetColumn<float>("Score").ToArray());
        Assert.Contains($"{length ?? 0} values in row 4", ex.Message);
    }

    [Theory]
    [MemberData(nameof(BadLengths))]
    public void PredictionEngineRefusesARowOfAnotherLength(int? length)
    {
        var ml = new MLContext(seed: 1);
        using var model = Estimator(ml).Fit(ml.Data.LoadFromEnumerable(Good(20)));
        using var engine = ml.Model.CreatePredictionEngine<Row4, Out>(model);
        float full = engine.Predict(new Row4 { Features = [9, 9, 9, 9] }).Score;
        var ex = Assert.Throws<SchemaMismatchException>(() => engine.Predict(new Row4 { Features = Values(length) }));
        Assert.Contains($"found {length ?? 0} values", ex.Message);
        // The engine is still usable, and a full row scores as before.
        Assert.Equal(full, engine.Predict(new Row4 { Features = [9, 9, 9, 9] }).Score);
    }
}
