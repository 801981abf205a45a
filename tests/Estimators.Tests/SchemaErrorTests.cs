using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetGuide.Estimators.Tests;

/// <summary>Every way the data can be wrong gets a typed error naming the column, at Fit or GetOutputSchema.</summary>
public class SchemaErrorTests
{
    private sealed class WideRow
    {
        [VectorType(4)] public float[] Features { get; set; } = [];
        public string Kind { get; set; } = "";
    }

    private sealed class Text { public string Features { get; set; } = ""; public bool Label { get; set; } }

    private static MLContext Ml => new(seed: 1);

    private static IDataView Keyed(MLContext ml, IEnumerable<TabularRow> rows)
    {
        var raw = ml.Data.LoadFromEnumerable(rows);
        return ml.Transforms.Conversion.MapValueToKey("Label", "Kind").Fit(raw).Transform(raw);
    }

    [Fact]
    public void MissingFeatureColumnIsNamedWithTheColumnsThatExist()
    {
        var ml = Ml;
        var data = Keyed(ml, Synthetic.Rows(20));
        var est = ml.MulticlassClassification.Trainers.NeuralNetwork(featureColumnName: "Pixels");
        var ex = Assert.Throws<SchemaMismatchException>(() => est.Fit(data));
        Assert.Equal("Pixels", ex.ColumnName);
        Assert.Contains("no such column", ex.Message);
        Assert.Contains("'Features'", ex.Message);
        Assert.Throws<SchemaMismatchException>(() => est.GetOutputSchema(MlNetInternals.ShapeOf(data.Schema)));
    }

    [Fact]
    public void WrongFeatureTypeIsRejected()
    {
        var ml = Ml;
        var data = ml.Data.LoadFromEnumerable(new[] { new Text { Features = "x", Label = true } });
        var ex = Assert.Throws<SchemaMismatchException>(() => ml.BinaryClassification.Trainers.NeuralNetwork().Fit(data));
        Assert.Contains("expected a known-size vector of Single", ex.Message);
    }

    [Fact]
    public void MulticlassLabelMustBeAKey()
    {
        var ml = Ml;
        var data = ml.Data.LoadFromEnumerable(Synthetic.Rows(20));
        var ex = Assert.Throws<SchemaMismatchException>(() => ml.MulticlassClassification.Trainers.NeuralNetwork(labelColumnName: "Value").Fit(data));
        Assert.Contains("MapValueToKey", ex.Message);
        var ex2 = Assert.Throws<SchemaMismatchException>(() => ml.BinaryClassification.Trainers.NeuralNetwork(labelColumnName: "Value").Fit(data));
        Assert.Contains("expected Boolean", ex2.Message);
        var ex3 = Assert.Throws<SchemaMismatchException>(() => ml.Regression.Trainers.NeuralNetwork(labelColumnName: "Positive").Fit(data));
        Assert.Contains("expected Single", ex3.Message);
    }

    [Fact]
    public void ScoringDataOfAnotherWidthIsRejectedAtGetOutputSchema()
    {
        var ml = Ml;
        using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(epochs: 1).Fit(Keyed(ml, Synthetic.Rows(40)));
        var wide = ml.Data.LoadFromEnumerable(new[] { new WideRow { Features = [1, 2, 3, 4], Kind = "a" } });
        var ex = Assert.Throws<SchemaMismatchException>(() => model.Transform(wide));
        Assert.Contains("3 Single values", ex.Message);
        Assert.Contains("found 4", ex.Message);
    }

    [Fact]
    public void NonFiniteFeaturesThrowByDefaultNamingTheRowOrAreSkipped()
    {
        var ml = Ml;
        var rows = Synthetic.Rows(50);
        rows[17].Features[1] = float.NaN;
        rows[30].Features[0] = float.PositiveInfinity;
        var data = Keyed(ml, rows);
        var ex = Assert.Throws<SchemaMismatchException>(() => ml.MulticlassClassification.Trainers.NeuralNetwork(epochs: 1).Fit(data));
        Assert.Contains("row 17", ex.Message);
        var warnings = new List<string>();
        ml.Log += (_, e) => { if (e.Kind == Microsoft.ML.Runtime.ChannelMessageKind.Warning) warnings.Add(e.Message); };
        using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions { Epochs = 1, NonFiniteFeatures = NonFiniteFeaturePolicy.SkipRow }).Fit(data);
        Assert.Contains(warnings, w => w.Contains("Skipped 2 row(s)"));
        // At scoring, the bad rows get NaN scores and a missing label; their neighbours are unaffected.
        var scores = model.Transform(data).GetColumn<float[]>("Score").ToList();
        var labels = model.Transform(data).GetColumn<uint>("PredictedLabel").ToList();
        Assert.All(scores[17], v => Assert.True(float.IsNaN(v)));
        Assert.Equal(0u, labels[17]);
        Assert.All(scores[16], v => Assert.True(float.IsFinite(v)));
    }

    /// <summary>A linear layer whose output is NaN for rows with a first feature above 1e30 (a finite value): sqrt of a negative.</summary>
    private sealed class NaNAboveLimit : TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>
    {
        private readonly TorchSharp.Modules.Linear linear;

        public NaNAboveLimit(ModuleRequest r) : base(nameof(NaNAboveLimit))
        {
            linear = TorchSharp.torch.nn.Linear(r.Inputs, r.Outputs);
            RegisterComponents();
        }

        public override TorchSharp.torch.Tensor forward(TorchSharp.torch.Tensor x)
        {
            using var first = x.narrow(1, 0, 1);
            using var room = first.neg().add(1e30f);
            using var nanIfOver = room.sqrt().mul(0f);
            using var y = linear.call(x);
            return y.add(nanIfOver);
        }
    }

    [Theory]
    [InlineData("multiclass")]
    [InlineData("binary")]
    public void FiniteFeaturesThatGiveANaNScoreGetTheDocumentedOutputs(string task)
    {
        var ml = Ml;
        var data = Keyed(ml, Synthetic.Rows(60));
        var architecture = NetworkArchitecture.Custom("nan-above-1e30", r => new NaNAboveLimit(r));
        var rows = Synthetic.Rows(3);
        rows[1].Features = [3e30f, 0.5f, 0.5f]; // finite: the NaN-feature check lets it through; the network makes NaN
        var test = Keyed(ml, rows);
        if (task == "multiclass")
        {
            using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(architecture: architecture, epochs: 1).Fit(data);
            var scores = model.Transform(test).GetColumn<float[]>("Score").ToList();
            var labels = model.Transform(test).GetColumn<uint>("PredictedLabel").ToList();
            Assert.All(scores[1], v => Assert.True(float.IsNaN(v)));
            Assert.Equal(0u, labels[1]); // the missing key, as for a NaN feature
            Assert.NotEqual(0u, labels[0]);
            Assert.NotEqual(0u, labels[2]);
        }
        else
        {
            using var model = ml.BinaryClassification.Trainers.NeuralNetwork(labelColumnName: nameof(TabularRow.Positive), architecture: architecture, epochs: 1).Fit(data);
            var outputs = ml.Data.CreateEnumerable<BinaryOut>(model.Transform(test), reuseRowObject: false).ToList();
            Assert.True(float.IsNaN(outputs[1].Score));
            Assert.True(float.IsNaN(outputs[1].Probability));
            Assert.False(outputs[1].PredictedLabel); // a Boolean has no missing value: false, as ML.NET's binary scorers give
            Assert.True(float.IsFinite(outputs[0].Score));
        }
    }

    [Fact]
    public void MissingLabelKeyIsRejectedNamingTheRow()
    {
        var ml = Ml;
        var rows = Synthetic.Rows(30);
        var raw = ml.Data.LoadFromEnumerable(rows);
        // Keys learned from the first 10 rows only: a later row whose kind was not seen maps to key 0 (missing).
        var keyed = ml.Transforms.Conversion.MapValueToKey("Label", "Kind").Fit(ml.Data.LoadFromEnumerable(rows.Where(r => r.Kind != "c"))).Transform(raw);
        int firstC = rows.FindIndex(r => r.Kind == "c");
        var ex = Assert.Throws<SchemaMismatchException>(() => ml.MulticlassClassification.Trainers.NeuralNetwork(epochs: 1).Fit(keyed));
        Assert.Contains($"row {firstC}", ex.Message);
    }

    [Theory]
    [InlineData(0, 32, 0.1, 0.0)]
    [InlineData(-1, 32, 0.1, 0.0)]
    [InlineData(1, 0, 0.1, 0.0)]
    [InlineData(1, 32, 0.0, 0.0)]
    [InlineData(1, 32, double.NaN, 0.0)]
    [InlineData(1, 32, 0.1, 1.0)]
    public void BadOptionsAreRejectedWhenTheEstimatorIsCreated(int epochs, int batch, double lr, double valFraction)
    {
        var ml = Ml;
        Assert.Throws<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions
        {
            Epochs = epochs, BatchSize = batch, LearningRate = lr, ValidationFraction = valFraction,
        }));
    }

    [Fact]
    public void EmptyDataIsRejected()
    {
        var ml = Ml;
        var ex = Assert.Throws<ArgumentException>(() => ml.MulticlassClassification.Trainers.NeuralNetwork().Fit(ml.Data.FilterRowsByColumn(Keyed(ml, Synthetic.Rows(5)), "Value", lowerBound: 1000)));
        Assert.Contains("empty", ex.Message);
    }
}

