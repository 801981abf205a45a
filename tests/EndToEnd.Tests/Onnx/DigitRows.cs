using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Tests.Shared;

namespace MlNetGuide.EndToEnd.Tests.Onnx;

/// <summary>A real digit as a row: pixels in [0, 1], the digit as a float, whether it is a zero.</summary>
public sealed class DigitRow
{
    [VectorType(784)] public float[] Pixels { get; set; } = [];
    public float Digit { get; set; }
    public bool IsZero { get; set; }
}

internal static class DigitRows
{
    /// <summary>The first <paramref name="n"/> real digits after skipping <paramref name="skip"/>.</summary>
    public static List<DigitRow> Load(int skip, int n)
    {
        var (pixels, labels) = RepoData.Digits(skip + n);
        return Enumerable.Range(skip, n).Select(i => new DigitRow
        {
            Pixels = pixels.AsSpan(i * 784, 784).ToArray(),
            Digit = labels[i],
            IsZero = labels[i] == 0,
        }).ToList();
    }

    /// <summary>The rows with the label key ("Label", from Digit) and a "Features" copy of the pixels, prepared outside any saved model.</summary>
    public static IDataView Prepared(MLContext ml, List<DigitRow> rows)
    {
        var raw = ml.Data.LoadFromEnumerable(rows);
        return ml.Transforms.Conversion.MapValueToKey("Label", nameof(DigitRow.Digit))
            .Append(ml.Transforms.CopyColumns("Features", nameof(DigitRow.Pixels)))
            .Fit(raw).Transform(raw);
    }
}
