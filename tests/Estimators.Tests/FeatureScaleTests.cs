using Microsoft.ML;
using Microsoft.ML.Runtime;

namespace MlNetGuide.Estimators.Tests;

/// <summary>
/// Raw columns far from unit scale (ML.NET's bike-sharing and heart-disease samples: values up to ~1,000) trained a
/// quietly useless model with the defaults. Fit now warns, naming NormalizeMeanVariance, in memory and streamed; a
/// normalized pipeline gets no warning; a run that ends no better than a constant prediction says so.
/// </summary>
public sealed class FeatureScaleTests
{
    private static IDataView Scaled(MLContext ml, int n = 300)
    {
        var rows = Synthetic.Rows(n);
        foreach (var r in rows) r.Features = [r.Features[0] * 1e3f, r.Features[1] * 1e4f, r.Features[2] * 1e5f];
        return ml.Data.LoadFromEnumerable(rows);
    }

    private static List<string> Warnings(MLContext ml)
    {
        var warnings = new List<string>();
        ml.Log += (_, e) => { if (e.Kind == ChannelMessageKind.Warning) lock (warnings) warnings.Add(e.Message); };
        return warnings;
    }

    [Theory]
    [InlineData(1024)] // in memory: every row
    [InlineData(0)]    // streamed: the first batch
    public void FeaturesOfScaleThousandsToHundredThousandsAreNamedWithTheFix(int inMemoryLimitMB)
    {
        var ml = new MLContext(seed: 1);
        var warnings = Warnings(ml);
        using var model = ml.BinaryClassification.Trainers.NeuralNetwork(new BinaryNeuralNetworkOptions
        {
            LabelColumnName = nameof(TabularRow.Positive), Epochs = 1, InMemoryLimitMB = inMemoryLimitMB,
        }).Fit(Scaled(ml));
        var warning = Assert.Single(warnings, w => w.Contains("far from unit scale"));
        Assert.Contains("3 of 3 slots of 'Features'", warning);
        Assert.Contains("NormalizeMeanVariance(\"Features\")", warning);
        Assert.Contains("slot 2", warning); // the 1e5 column has the largest root mean square
    }

    [Fact]
    public void TheSameColumnsNormalizedFirstGetNoWarning()
    {
        var ml = new MLContext(seed: 1);
        var warnings = Warnings(ml);
        var data = Scaled(ml);
        var pipeline = ml.Transforms.NormalizeMeanVariance("Features")
            .Append(ml.BinaryClassification.Trainers.NeuralNetwork(labelColumnName: nameof(TabularRow.Positive), epochs: 3));
        var model = pipeline.Fit(data);
        Assert.DoesNotContain(warnings, w => w.Contains("far from unit scale") || w.Contains("no lower than a constant"));
        var metrics = ml.BinaryClassification.Evaluate(model.Transform(data), labelColumnName: nameof(TabularRow.Positive));
        Assert.True(metrics.AreaUnderRocCurve > 0.9, $"AUC {metrics.AreaUnderRocCurve:F3}");
        (model.LastTransformer as IDisposable)?.Dispose();
    }

    [Fact]
    public void ALossThatDoesNotFallIsReported()
    {
        var ml = new MLContext(seed: 1);
        var warnings = Warnings(ml);
        using var stalled = ml.Regression.Trainers.NeuralNetwork(new RegressionNeuralNetworkOptions
        {
            LabelColumnName = nameof(TabularRow.Value), Epochs = 3, LearningRate = 1e-9,
        }).Fit(Synthetic.Data(ml, 300));
        Assert.Contains(warnings, w => w.Contains("no lower than a constant prediction") && w.Contains("LearningRate"));
        warnings.Clear();
        var data = Synthetic.Data(ml, 300);
        using var learned = ml.Regression.Trainers.NeuralNetwork(labelColumnName: nameof(TabularRow.Value), epochs: 30).Fit(data);
        Assert.DoesNotContain(warnings, w => w.Contains("no lower than a constant"));
        var r2 = ml.Regression.Evaluate(learned.Transform(data), labelColumnName: nameof(TabularRow.Value)).RSquared;
        Assert.True(r2 > 0.5, $"R² {r2:F3}: the run the warning stays silent for must have learned");
    }
}
