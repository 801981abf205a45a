using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetGuide.Estimators.Tests;

/// <summary>Pins the three ML.NET internals MlNetGuide reads by reflection (see MlNetInternals.cs): if an ML.NET upgrade moves them, this fails first.</summary>
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
}
