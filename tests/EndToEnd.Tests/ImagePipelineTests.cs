using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Training;

namespace MlNetGuide.EndToEnd.Tests;

/// <summary>
/// Rendering our plots (OxyPlot on SkiaSharp 2.88) must not break ML.NET's image transforms in the same process
/// (ScottPlot 5's SkiaSharp 3 does: MissingMethodException SKBitmap.GetPixelSpan()).
/// </summary>
public sealed class ImagePipelineTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-img-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private sealed class ImageRow { public string Path { get; set; } = ""; }

    [Fact]
    public void MlNetImageTransformsRunInAProcessThatRendersOurPlots()
    {
        using var board = new ProgressBoard();
        board.Draw(0, 1.0, "train_loss");
        board.Draw(1, 0.5, "train_loss");
        var png = Path.Combine(_dir, "curve.png");
        board.SavePng(png, 320, 200);

        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(new[] { new ImageRow { Path = png } });
        var pipeline = ml.Transforms.LoadImages("Image", _dir, nameof(ImageRow.Path))
            .Append(ml.Transforms.ResizeImages("Image", 32, 16))
            .Append(ml.Transforms.ExtractPixels("Pixels", "Image"));
        var pixels = pipeline.Fit(data).Transform(data).GetColumn<float[]>("Pixels").Single();
        Assert.Equal(3 * 32 * 16, pixels.Length);
        Assert.Contains(pixels, v => v > 200); // the white background survives the round trip
    }
}
