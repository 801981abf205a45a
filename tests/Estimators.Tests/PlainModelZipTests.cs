using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Modules;
using MlNetGuide.Modules.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Estimators.Tests;

/// <summary>
/// mlContext.Model.Save writes a network as ONNX plus stock ML.NET transformers; a plain mlContext.Model.Load scores
/// the same (labels identical, scores within 1e-5, Evaluate's metrics equal); NeuralModel.Load of the same zip rebuilds
/// the TorchSharp module bit for bit.
/// </summary>
public sealed class PlainModelZipTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-plain-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    [Fact]
    public void MulticlassPipelineWithPreprocessingReloadsWithPlainModelLoad()
    {
        var ml = new MLContext(seed: 1);
        var split = ml.Data.TrainTestSplit(Iris.Load(ml), testFraction: 0.3, seed: 7);
        var pipeline = Iris.Features(ml)
            .Append(ml.MulticlassClassification.Trainers.NeuralNetwork(architecture: NetworkArchitecture.Mlp(16), epochs: 60, batchSize: 16, learningRate: 0.2))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));
        var model = pipeline.Fit(split.TrainSet);
        var path = PathOf("iris.zip");
        ml.Model.Save(model, split.TrainSet.Schema, path);

        var plain = new MLContext();
        var loaded = plain.Model.Load(path, out var schema);
        Assert.DoesNotContain(NeuralModel.Flatten(loaded), t => t is NeuralNetworkTransformer);
        Assert.Equal(split.TrainSet.Schema.Count, schema.Count);
        var expected = model.Transform(split.TestSet);
        var actual = loaded.Transform(split.TestSet);
        var a = ml.Data.CreateEnumerable<IrisPrediction>(expected, reuseRowObject: false).ToList();
        var b = plain.Data.CreateEnumerable<IrisPrediction>(actual, reuseRowObject: false).ToList();
        Assert.Equal(a.Count, b.Count);
        for (int i = 0; i < a.Count; i++)
        {
            Assert.Equal(a[i].PredictedLabel, b[i].PredictedLabel);
            Assert.Equal(a[i].Score.Length, b[i].Score.Length);
            for (int k = 0; k < a[i].Score.Length; k++) Assert.True(Math.Abs(a[i].Score[k] - b[i].Score[k]) <= 1e-5, $"row {i} class {k}: {a[i].Score[k]} vs {b[i].Score[k]}");
        }
        var m1 = ml.MulticlassClassification.Evaluate(expected);
        var m2 = plain.MulticlassClassification.Evaluate(actual);
        Assert.Equal(m1.MicroAccuracy, m2.MicroAccuracy);
        Assert.Equal(m1.MacroAccuracy, m2.MacroAccuracy);
        Assert.Equal(m1.LogLoss, m2.LogLoss, 5);
        // The PredictedLabel key carries the label's values (MapKeyToValue gave the species names above), and a
        // PredictionEngine works on the reloaded model.
        var engine = plain.Model.CreatePredictionEngine<IrisRow, IrisPrediction>(loaded);
        Assert.Equal("setosa", engine.Predict(new IrisRow { SepalLength = 5.1f, SepalWidth = 3.5f, PetalLength = 1.4f, PetalWidth = 0.2f }).PredictedLabel);
    }

    [Fact]
    public void BinaryNetworkReloadsWithScoreProbabilityAndBooleanLabel()
    {
        var ml = new MLContext(seed: 3);
        var train = Synthetic.Data(ml, 1000, seed: 1);
        var test = Synthetic.Data(ml, 300, seed: 2);
        using var model = ml.BinaryClassification.Trainers.NeuralNetwork(labelColumnName: "Positive",
            architecture: NetworkArchitecture.Mlp(16), epochs: 20, batchSize: 32, learningRate: 0.5).Fit(train);
        var path = PathOf("binary.zip");
        ml.Model.Save(model, train.Schema, path);
        var plain = new MLContext();
        var loaded = plain.Model.Load(path, out _);
        var expected = model.Transform(test);
        var actual = loaded.Transform(test);
        Assert.Equal(NumberDataViewType.Single, actual.Schema["Score"].Type);
        Assert.Equal(NumberDataViewType.Single, actual.Schema["Probability"].Type);
        Assert.Equal(BooleanDataViewType.Instance, actual.Schema["PredictedLabel"].Type);
        var a = ml.Data.CreateEnumerable<BinaryOut>(expected, false).ToList();
        var b = plain.Data.CreateEnumerable<BinaryOut>(actual, false).ToList();
        for (int i = 0; i < a.Count; i++)
        {
            Assert.Equal(a[i].PredictedLabel, b[i].PredictedLabel);
            Assert.True(Math.Abs(a[i].Score - b[i].Score) <= 1e-5, $"row {i}: score {a[i].Score} vs {b[i].Score}");
            Assert.True(Math.Abs(a[i].Probability - b[i].Probability) <= 1e-5, $"row {i}: probability {a[i].Probability} vs {b[i].Probability}");
        }
        var m1 = ml.BinaryClassification.Evaluate(expected, labelColumnName: "Positive");
        var m2 = plain.BinaryClassification.Evaluate(actual, labelColumnName: "Positive");
        Assert.Equal(m1.Accuracy, m2.Accuracy);
        Assert.Equal(m1.AreaUnderRocCurve, m2.AreaUnderRocCurve, 6);
        Assert.Equal(m1.F1Score, m2.F1Score);
        Assert.Equal(m1.LogLoss, m2.LogLoss, 5);
    }

    [Fact]
    public void RegressionNetworkReloadsAndNeuralModelLoadRebuildsTheModuleBitForBit()
    {
        var ml = new MLContext(seed: 2);
        var train = Synthetic.Data(ml, 1000, seed: 1);
        var test = Synthetic.Data(ml, 300, seed: 2);
        using var model = ml.Regression.Trainers.NeuralNetwork(labelColumnName: "Value",
            architecture: NetworkArchitecture.LazyMlp(16, 8), epochs: 10, batchSize: 32, learningRate: 0.05).Fit(train);
        var path = PathOf("regression.zip");
        ml.Model.Save(model, train.Schema, path);

        var plain = new MLContext();
        var loaded = plain.Model.Load(path, out _);
        var expected = model.Transform(test);
        var actual = loaded.Transform(test);
        var a = expected.GetColumn<float>("Score").ToArray();
        var b = actual.GetColumn<float>("Score").ToArray();
        Assert.Equal(a.Length, b.Length);
        for (int i = 0; i < a.Length; i++) Assert.True(Math.Abs(a[i] - b[i]) <= 1e-5, $"row {i}: {a[i]} vs {b[i]}");
        var m1 = ml.Regression.Evaluate(expected, labelColumnName: "Value");
        var m2 = plain.Regression.Evaluate(actual, labelColumnName: "Value");
        Assert.Equal(m1.RootMeanSquaredError, m2.RootMeanSquaredError, 5);
        Assert.Equal(m1.RSquared, m2.RSquared, 5);

        // Back to a trainable TorchSharp network: the same state dict, bit for bit, and the batched path's scores.
        using var rebuilt = (TransformerChain<ITransformer>)NeuralModel.Load(new MLContext(), path, out _);
        var network = Assert.IsType<NeuralNetworkTransformer>(Assert.Single(NeuralModel.Flatten(rebuilt)));
        Assert.Equal("lazy-mlp(16, 8)", network.Architecture.ToString());
        var original = StateDict.Get(model.Scorer.Module);
        var copy = StateDict.Get(network.Scorer.Module);
        Assert.Equal(original.Keys.Order(), copy.Keys.Order());
        foreach (var (key, tensor) in original)
            Assert.True(tensor.bytes.SequenceEqual(copy[key].bytes), $"{key} differs");
        Assert.Equal(model.WeightsDigest(), network.WeightsDigest());
        Assert.Equal(a, network.Transform(test).GetColumn<float>("Score").ToArray());
    }

    [Fact]
    public void StandaloneOnnxExportCarriesTheStateDictNames()
    {
        var ml = new MLContext(seed: 1);
        var data = Synthetic.Data(ml, 200);
        using var model = ml.Regression.Trainers.NeuralNetwork(labelColumnName: "Value", architecture: NetworkArchitecture.Mlp(8), epochs: 1).Fit(data);
        var path = PathOf("net.onnx");
        model.ExportOnnx(path);
        var proto = global::Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
        Assert.Equal("Features", proto.Graph.Input.Single().Name);
        Assert.Equal(["Score"], proto.Graph.Output.Select(o => o.Name));
        var names = proto.Graph.Initializer.Select(i => i.Name).ToHashSet();
        Assert.Superset(StateDict.Get(model.Scorer.Module).Keys.ToHashSet(), names);
        Assert.Contains("0.weight", names);
    }

    [Fact]
    public void PlainSaveOfANetworkWithoutAnExportRuleFailsNamingTheTypeAndTheWayOut()
    {
        var ml = new MLContext(seed: 1);
        var raw = Synthetic.Data(ml, 100);
        var data = ml.Transforms.Conversion.MapValueToKey("Label", "Kind").Fit(raw).Transform(raw);
        using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(
            architecture: NetworkArchitecture.Custom("plain-test-unexportable", r => new Unexportable(r.Inputs, r.Outputs)), epochs: 1).Fit(data);
        var stream = new MemoryStream();
        var ex = Assert.ThrowsAny<Exception>(() => ml.Model.Save(model, data.Schema, stream));
        var message = ex.ToString();
        Assert.Contains(typeof(Unexportable).FullName!, message);
        Assert.Contains("OnnxExporter.Register", message);
        Assert.Contains("NeuralModel.Save", message);
        // The way out works: NeuralModel.Save keeps the state dict.
        NeuralModel.Save(ml, model, data.Schema, PathOf("own-format.zip"));
        using var back = (IDisposable)NeuralModel.Load(new MLContext(), PathOf("own-format.zip"), out _);
    }

    [Fact]
    public void NeuralModelLoadOfATamperedPlainZipRefusesBeforeAllocatingOrRunningOnnxRuntime()
    {
        var ml = new MLContext(seed: 1);
        var data = Synthetic.Data(ml, 200);
        using var model = ml.Regression.Trainers.NeuralNetwork(labelColumnName: "Value", architecture: NetworkArchitecture.Mlp(8), epochs: 1).Fit(data);
        var path = PathOf("plain.zip");
        ml.Model.Save(model, data.Schema, path);

        // An initializer that claims 4 TB but holds 96 bytes.
        var huge = Tampered(path, "huge.zip", proto => proto.Graph.Initializer.Single(i => i.Name == "0.weight").Dims[0] = 1L << 40);
        var ex = Assert.Throws<ModelFormatException>(() => NeuralModel.Load(new MLContext(), huge, out _));
        Assert.Contains("initializer '0.weight'", ex.Message);
        Assert.Contains("bytes of raw data", ex.Message);

        // A config that asks for a network far larger than the weights the file holds: refused before building it.
        var wide = Tampered(path, "wide.zip", proto =>
        {
            var entry = proto.MetadataProps.Single(p => p.Key == "mlnetguide.network");
            entry.Value = entry.Value.Replace("\"FeatureCount\":3", "\"FeatureCount\":100000000");
        });
        Assert.Contains("needs at least", Assert.Throws<ModelFormatException>(() => NeuralModel.Load(new MLContext(), wide, out _)).Message);

        // A zip with no MlNetGuide network at all says which loader to use.
        var other = PathOf("other.zip");
        ml.Model.Save(ml.Transforms.CopyColumns("A", "Value").Fit(data), data.Schema, other);
        Assert.Contains("mlContext.Model.Load", Assert.Throws<ModelFormatException>(() => NeuralModel.Load(new MLContext(), other, out _)).Message);
    }

    /// <summary>A copy of the zip with its ONNX model edited (ML.NET's OnnxModel entry: an int32 length, then the bytes).</summary>
    private string Tampered(string path, string name, Action<global::Onnx.ModelProto> edit)
    {
        var copy = PathOf(name);
        File.Copy(path, copy);
        using var zip = new System.IO.Compression.ZipArchive(File.Open(copy, FileMode.Open), System.IO.Compression.ZipArchiveMode.Update);
        var entry = zip.Entries.Single(e => e.Name == "OnnxModel");
        byte[] bytes;
        using (var s = entry.Open()) { using var ms = new MemoryStream(); s.CopyTo(ms); bytes = ms.ToArray(); }
        var proto = global::Onnx.ModelProto.Parser.ParseFrom(bytes, 4, bytes.Length - 4);
        edit(proto);
        var edited = Google.Protobuf.MessageExtensions.ToByteArray(proto);
        var fullName = entry.FullName;
        entry.Delete();
        using var w = zip.CreateEntry(fullName).Open();
        w.Write(BitConverter.GetBytes(edited.Length));
        w.Write(edited);
        return copy;
    }

    private sealed class Unexportable : nn.Module<Tensor, Tensor>
    {
        private readonly nn.Module<Tensor, Tensor> linear;

        public Unexportable(long inputs, long outputs) : base(nameof(Unexportable))
        {
            linear = nn.Linear(inputs, outputs);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x) => linear.call(x);
    }
}
