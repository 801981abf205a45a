using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using MlNetGuide.Estimators;
using MlNetGuide.Modules;
using MlNetGuide.Tests.Shared;
using MlNetGuide.Training;
using SkiaSharp;

namespace MlNetGuide.EndToEnd.Tests;

/// <summary>
/// Image files through ML.NET's image transforms into LeNet; and rendering our plots (OxyPlot on SkiaSharp 2.88) must not
/// break those transforms in the same process (ScottPlot 5's SkiaSharp 3 does: MissingMethodException
/// SKBitmap.GetPixelSpan()).
/// </summary>
public sealed class ImagePipelineTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-img-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private sealed class ImageRow { public string Path { get; set; } = ""; }

    public sealed class DigitImage
    {
        public string ImagePath { get; set; } = "";
        public string Label { get; set; } = "";
    }

    public sealed class DigitImagePrediction
    {
        public string PredictedLabel { get; set; } = "";
        public float[] Score { get; set; } = [];
    }

    /// <summary>Writes the first <paramref name="count"/> shipped digits as 28×28 grayscale PNG files; returns the rows.</summary>
    private List<DigitImage> WriteDigitImages(int count)
    {
        var (pixels, labels) = RepoData.Digits(count);
        var rows = new List<DigitImage>();
        for (int i = 0; i < labels.Length; i++)
        {
            using var bitmap = new SKBitmap(new SKImageInfo(28, 28, SKColorType.Gray8, SKAlphaType.Opaque));
            for (int p = 0; p < 784; p++)
            {
                byte v = (byte)Math.Round(pixels[i * 784 + p] * 255);
                bitmap.SetPixel(p % 28, p / 28, new SKColor(v, v, v));
            }
            var file = $"digit-{i:D4}.png";
            using (var data = bitmap.Encode(SKEncodedImageFormat.Png, 100))
            using (var stream = File.Create(Path.Combine(_dir, file)))
                data.SaveTo(stream);
            rows.Add(new DigitImage { ImagePath = file, Label = labels[i].ToString(System.Globalization.CultureInfo.InvariantCulture) });
        }
        return rows;
    }

    [Fact]
    public void LeNetTrainsOnImageFilesAndPredictsOneImageAfterReload()
    {
        var rows = WriteDigitImages(1500);
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(rows.Take(1200));
        var test = ml.Data.LoadFromEnumerable(rows.Skip(1200));
        // README
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Transforms.LoadImages("Image", imageFolder: _dir, inputColumnName: "ImagePath"))
            .Append(ml.Transforms.ResizeImages("Image", imageWidth: 28, imageHeight: 28))
            .Append(ml.Transforms.ExtractPixels("Features", "Image", ImagePixelExtractingEstimator.ColorBits.Red, scaleImage: 1 / 255f))
            .Append(ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions
            {
                Architecture = NetworkArchitecture.LeNet(channels: 1, height: 28, width: 28),
                Optimizer = OptimizerKind.Adam, LearningRate = 0.002, Epochs = 8, BatchSize = 32,
            }))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));
        var model = pipeline.Fit(train);
        // README
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
        Assert.True(metrics.MicroAccuracy > 0.85, $"LeNet on 1,200 digit images: {metrics.MicroAccuracy:P1}");

        var zip = Path.Combine(_dir, "lenet.zip");
        NeuralModel.Save(ml, model, train.Schema, zip);
        var loaded = NeuralModel.Load(new MLContext(), zip, out _);
        var engine = ml.Model.CreatePredictionEngine<DigitImage, DigitImagePrediction>(loaded);
        var one = rows[1200];
        var reloaded = engine.Predict(one);
        var original = ml.Model.CreatePredictionEngine<DigitImage, DigitImagePrediction>(model).Predict(one);
        Assert.Equal(original.PredictedLabel, reloaded.PredictedLabel);
        Assert.Equal(original.Score, reloaded.Score);
        Assert.Equal(10, reloaded.Score.Length);
    }

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
