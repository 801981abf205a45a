using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetGuide.Estimators.Tests;

/// <summary>Pins the ML.NET internals MlNetGuide reads by reflection (see MlNetInternals.cs): if an ML.NET upgrade moves them, this fails first.</summary>
public class MlNetInternalsTests
{
    [Fact]
    public void CatalogEnvironmentIsReachableAndCarriesTheContextsGpuSettings()
    {
        var ml = new MLContext(seed: 1) { GpuDeviceId = 3, FallbackToCpu = true };
        var env = MlNetInternals.EnvironmentOf(ml.MulticlassClassification.Trainers);
        Assert.NotNull(env);
        Assert.Equal((3, true), MlNetInternals.DeviceSettings(env));
        Assert.NotNull(MlNetInternals.EnvironmentOf(ml.BinaryClassification.Trainers));
        Assert.NotNull(MlNetInternals.EnvironmentOf(ml.Regression.Trainers));
    }

    [Fact]
    public void SchemaShapeCreateIsReachable()
    {
        var builder = new DataViewSchema.Builder();
        builder.AddColumn("Score", new VectorDataViewType(NumberDataViewType.Single, 3));
        var shape = MlNetInternals.ShapeOf(builder.ToSchema());
        Assert.Equal("Score", shape.Single().Name);
        Assert.Equal(SchemaShape.Column.VectorKind.Vector, shape.Single().Kind);
    }

    [Fact]
    public void PipelineSchemaPropagationSeesOurOutputColumns()
    {
        var ml = new MLContext();
        var data = ml.Data.LoadFromEnumerable(Synthetic.Rows(5));
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", "Kind")
            .Append(ml.MulticlassClassification.Trainers.NeuralNetwork())
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedKind", "PredictedLabel"));
        var shape = pipeline.GetOutputSchema(MlNetInternals.ShapeOf(data.Schema));
        Assert.Contains(shape, c => c.Name == "Score" && c.Kind == SchemaShape.Column.VectorKind.Vector);
        Assert.Contains(shape, c => c.Name == "PredictedKind");
    }

    private sealed class Slots
    {
        [VectorType(3)] public float[] Net { get; set; } = [];
        [VectorType(1)] public float[] Logit { get; set; } = [];
    }

    /// <summary>
    /// The save-time constructors (identity linear models inside ML.NET's prediction transformers) that turn the ONNX
    /// network's vector output into scalar Score / PredictedLabel columns: each builds, and scores a row as expected.
    /// </summary>
    [Fact]
    public void SaveTimeScorerConstructorsBuildAndScore()
    {
        var ml = new MLContext(seed: 1);
        var env = MlNetInternals.EnvironmentOf(ml.Regression.Trainers)!;
        var data = ml.Data.LoadFromEnumerable(new[] { new Slots { Net = [-0.5f, 2f, 0.25f], Logit = [-0.5f] } });

        var regression = MlNetInternals.RegressionScorer(env, data.Schema, "Logit");
        Assert.Equal(-0.5f, regression.Transform(data).GetColumn<float>("Score").Single()); // weight 1, bias 0

        var binary = MlNetInternals.BinaryScorer(env, data.Schema, "Logit");
        var scored = binary.Transform(data);
        Assert.Equal(-0.5f, scored.GetColumn<float>("Score").Single());
        Assert.False(scored.GetColumn<bool>("PredictedLabel").Single());

        var multiclass = MlNetInternals.MulticlassScorer(env, data.Schema, "Net", 3, labelColumn: null, "Score", "PredictedLabel");
        var row = multiclass.Transform(data);
        Assert.Equal(new[] { -0.5f, 2f, 0.25f }, row.GetColumn<float[]>("Score").Single()); // identity: no softmax
        Assert.Equal(2u, row.GetColumn<uint>("PredictedLabel").Single());                   // key of the largest slot (1-based)
    }
}
