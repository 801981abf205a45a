using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Tests.Shared;

namespace MlNetGuide.Estimators.Tests;

public sealed class IrisRow
{
    [LoadColumn(0)] public float SepalLength { get; set; }
    [LoadColumn(1)] public float SepalWidth { get; set; }
    [LoadColumn(2)] public float PetalLength { get; set; }
    [LoadColumn(3)] public float PetalWidth { get; set; }
    [LoadColumn(4)] public string Species { get; set; } = "";
}

public sealed class IrisPrediction
{
    public string PredictedLabel { get; set; } = "";
    public float[] Score { get; set; } = [];
}

internal static class Iris
{
    public static IDataView Load(MLContext ml) =>
        ml.Data.LoadFromTextFile<IrisRow>(RepoData.IrisPath, separatorChar: ',', hasHeader: true);

    public static IEstimator<ITransformer> Features(MLContext ml) =>
        ml.Transforms.Concatenate("Features", nameof(IrisRow.SepalLength), nameof(IrisRow.SepalWidth), nameof(IrisRow.PetalLength), nameof(IrisRow.PetalWidth))
            .Append(ml.Transforms.NormalizeMinMax("Features"))
            .Append(ml.Transforms.Conversion.MapValueToKey("Label", nameof(IrisRow.Species)));
}
