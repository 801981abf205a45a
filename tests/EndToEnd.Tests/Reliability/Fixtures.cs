using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Estimators;

namespace MlNetGuide.EndToEnd.Tests.Reliability;

public sealed class Row
{
    [VectorType(4)] public float[] Features { get; set; } = [];
    public string Kind { get; set; } = "";
    public float Value { get; set; }
}

public sealed class Scored
{
    public float[] Score { get; set; } = [];
    public uint PredictedLabel { get; set; }
}

/// <summary>Small, fixed data and a trained model the reliability tests share.</summary>
internal static class Fixtures
{
    public static List<Row> Rows(int n, int seed = 3)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ =>
        {
            var f = Enumerable.Range(0, 4).Select(_ => (float)rng.NextDouble()).ToArray();
            return new Row { Features = f, Kind = f[0] + f[1] > f[2] + f[3] ? "left" : "right", Value = f.Sum() };
        }).ToList();
    }

    public static IDataView Keyed(MLContext ml, IEnumerable<Row> rows)
    {
        var raw = ml.Data.LoadFromEnumerable(rows);
        return ml.Transforms.Conversion.MapValueToKey("Label", nameof(Row.Kind)).Fit(raw).Transform(raw);
    }

    public static NeuralNetworkTransformer Train(MLContext ml, IDataView data, int epochs = 5) =>
        ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions
        {
            Architecture = NetworkArchitecture.Mlp(16), Epochs = epochs, BatchSize = 32, LearningRate = 0.3, ScoringBatchSize = 64,
        }).Fit(data);

    public static float[][] Scores(ITransformer model, IDataView data) => model.Transform(data).GetColumn<float[]>("Score").ToArray();
}
