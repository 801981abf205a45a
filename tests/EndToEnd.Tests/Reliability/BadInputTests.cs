using Microsoft.ML;
using MlNetGuide.Estimators;
using MlNetGuide.Modules;
using MlNetGuide.Training;
using TorchSharp;
using TorchSharp.Modules;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MlNetGuide.EndToEnd.Tests.Reliability;

/// <summary>
/// Everywhere a user hands us data: each bad input gets a typed exception whose message names what was wrong, and the
/// objects involved stay usable afterwards (each case proves it by using them).
/// </summary>
public sealed class BadInputTests(ITestOutputHelper output)
{
    private sealed record Case(string Name, Action Act, Type Expected, string Fragment, Action ThenUsable);

    [Fact]
    public void EveryBadInputGetsATypedNamedErrorAndLeavesObjectsUsable()
    {
        var ml = new MLContext(seed: 1);
        var good = Fixtures.Keyed(ml, Fixtures.Rows(200));
        using var model = Fixtures.Train(ml, good, epochs: 2);
        var lazy = new LazyLinear(3);
        using var lazyNet = nn.Sequential(lazy);
        using (var x5 = rand(2, 5)) lazyNet.call(x5).Dispose();
        using var linear = nn.Sequential(nn.Linear(4, 2));
        var estimator = ml.MulticlassClassification.Trainers.NeuralNetwork(epochs: 1);
        var dir = Directory.CreateTempSubdirectory("mlnetguide-bad-").FullName;
        var otherArch = Path.Combine(dir, "other.bin");
        using (var other = nn.Sequential(nn.Linear(4, 3))) StateDict.Save(other, otherArch);

        void ModelStillScores() => Assert.Equal(200, Fixtures.Scores(model, good).Length);
        void LazyStillWorks() { using var x = rand(2, 5); using var y = lazyNet.call(x); Assert.Equal(new long[] { 2, 3 }, y.shape); }
        void LinearStillWorks() { using var x = rand(1, 4); using var y = linear.call(x); Assert.True(y.isfinite().all().item<bool>()); }
        void EstimatorStillFits() { using var t = estimator.Fit(good); Assert.Equal(4, t.FeatureCount); }

        IDataView With(Action<Row> change)
        {
            var rows = Fixtures.Rows(50);
            change(rows[7]);
            return Fixtures.Keyed(ml, rows);
        }

        var cases = new List<Case>
        {
            new("wider input to a materialized LazyLinear", () => { using var x = rand(2, 7); lazyNet.call(x); }, typeof(ArgumentException), "width 5", LazyStillWorks),
            new("scalar input to LazyLinear", () => { using var x = tensor(1f); new LazyLinear(2).call(x); }, typeof(ArgumentException), "scalar", LazyStillWorks),
            new("scoring data of another width", () => model.Transform(ml.Data.LoadFromEnumerable(new[] { new Row3() })), typeof(SchemaMismatchException), "4 Single values", ModelStillScores),
            new("NaN feature at Fit", () => estimator.Fit(With(r => r.Features[2] = float.NaN)), typeof(SchemaMismatchException), "row 7", EstimatorStillFits),
            new("infinite feature at Fit", () => estimator.Fit(With(r => r.Features[0] = float.NegativeInfinity)), typeof(SchemaMismatchException), "NaN or infinity", EstimatorStillFits),
            new("empty data", () => estimator.Fit(ml.Data.FilterRowsByColumn(good, "Value", lowerBound: 100)), typeof(ArgumentException), "empty", EstimatorStillFits),
            new("label key out of range (missing)", () => estimator.Fit(MissingKey(ml)), typeof(SchemaMismatchException), "missing label", EstimatorStillFits),
            new("zero epochs", () => ml.MulticlassClassification.Trainers.NeuralNetwork(epochs: 0), typeof(ArgumentOutOfRangeException), "Epochs", EstimatorStillFits),
            new("negative batch size", () => ml.MulticlassClassification.Trainers.NeuralNetwork(batchSize: -4), typeof(ArgumentOutOfRangeException), "BatchSize", EstimatorStillFits),
            new("negative learning rate", () => ml.MulticlassClassification.Trainers.NeuralNetwork(learningRate: -0.1), typeof(ArgumentOutOfRangeException), "learning rate", EstimatorStillFits),
            new("missing feature column", () => ml.MulticlassClassification.Trainers.NeuralNetwork(featureColumnName: "Pixels").Fit(good), typeof(SchemaMismatchException), "'Pixels'", EstimatorStillFits),
            new("mistyped label column", () => ml.MulticlassClassification.Trainers.NeuralNetwork(labelColumnName: "Kind").Fit(good), typeof(SchemaMismatchException), "MapValueToKey", EstimatorStillFits),
            new("a GPU that does not exist (data)", () => zeros(new long[] { 2 }, device: Devices.Gpu(3)), typeof(InvalidOperationException), "CUDA", LinearStillWorks),
            new("a GPU that does not exist (MLContext)", () => new MLContext { GpuDeviceId = 5 }.MulticlassClassification.Trainers.NeuralNetwork(epochs: 1).Fit(good), typeof(InvalidOperationException), "GpuDeviceId is 5", EstimatorStillFits),
            new("tensors on two devices", () => { using var a = zeros(1); using var b = zeros(new long[] { 1 }, device: new Device(DeviceType.META)); Devices.EnsureSameDevice(a, b); }, typeof(DeviceMismatchException), "meta", LinearStillWorks),
            new("state dict from another architecture", () => StateDict.Load(linear, otherArch), typeof(StateDictMismatchException), "expected shape [2, 4], found [3, 4]", LinearStillWorks),
            new("missing state dict file", () => StateDict.Load(linear, Path.Combine(dir, "nope.pth")), typeof(FileNotFoundException), "nope.pth", LinearStillWorks),
            new("a text file as a model zip", () => { var p = Path.Combine(dir, "x.zip"); File.WriteAllText(p, "not a zip"); NeuralModel.Load(ml, p, out _); }, typeof(ModelFormatException), "not a readable", ModelStillScores),
            new("an ordinary ML.NET zip to NeuralModel.Load", () => { var p = Path.Combine(dir, "plain.zip"); ml.Model.Save(ml.Transforms.CopyColumns("A", "Value").Fit(good), good.Schema, p); NeuralModel.Load(ml, p, out _); }, typeof(ModelFormatException), "mlContext.Model.Load", ModelStillScores),
            new("a model zip from another architecture", () => LoadWithChangedArchitecture(ml, good, dir), typeof(ModelFormatException), "do not fit", ModelStillScores),
            new("null data", () => estimator.Fit(null!), typeof(ArgumentNullException), "input", EstimatorStillFits),
            new("negative validation fraction", () => ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions { ValidationFraction = -0.1 }), typeof(ArgumentOutOfRangeException), "ValidationFraction", EstimatorStillFits),
            new("trainer with zero epochs", () => new Trainer(0), typeof(ArgumentOutOfRangeException), "maxEpochs", LinearStillWorks),
            new("batch with ragged tensors", () => new Batch(zeros(3, 2), zeros(2)), typeof(ArgumentException), "3 rows", LinearStillWorks),
        };

        foreach (var c in cases)
        {
            var ex = Record.Exception(c.Act);
            Assert.True(ex is not null, $"{c.Name}: no exception");
            Assert.True(c.Expected.IsInstanceOfType(ex), $"{c.Name}: expected {c.Expected.Name}, got {ex!.GetType().Name}: {ex.Message}");
            Assert.True(ex.Message.Contains(c.Fragment, StringComparison.Ordinal), $"{c.Name}: message '{ex.Message}' lacks '{c.Fragment}'");
            c.ThenUsable();
            output.WriteLine($"{c.Name}: {ex.GetType().Name}: {ex.Message.Split('\n')[0]}");
        }
        output.WriteLine($"{cases.Count} bad inputs, each rejected with a typed error and followed by a successful use.");
        Directory.Delete(dir, true);
    }

    private sealed class Row3 { [Microsoft.ML.Data.VectorType(3)] public float[] Features { get; set; } = new float[3]; }

    private static IDataView MissingKey(MLContext ml)
    {
        // Keys learned without row 7, whose kind no other row has: it maps to key 0, "missing".
        var rows = Fixtures.Rows(50);
        rows[7].Kind = "unseen";
        var raw = ml.Data.LoadFromEnumerable(rows);
        return ml.Transforms.Conversion.MapValueToKey("Label", nameof(Row.Kind)).Fit(ml.Data.LoadFromEnumerable(rows.Where(r => r.Kind != "unseen"))).Transform(raw);
    }

    private static void LoadWithChangedArchitecture(MLContext ml, IDataView data, string dir)
    {
        NeuralModuleRegistry.Register("reliability-net", r => nn.Sequential(nn.Linear(r.Inputs, 8), nn.ReLU(), nn.Linear(8, r.Outputs)));
        using var m = ml.MulticlassClassification.Trainers.NeuralNetwork(architecture: NetworkArchitecture.Custom("reliability-net"), epochs: 1).Fit(data);
        var path = Path.Combine(dir, "arch.zip");
        NeuralModel.Save(ml, m, data.Schema, path);
        NeuralModuleRegistry.Register("reliability-net", r => nn.Sequential(nn.Linear(r.Inputs, 6), nn.ReLU(), nn.Linear(6, r.Outputs)));
        NeuralModel.Load(ml, path, out _);
    }
}
