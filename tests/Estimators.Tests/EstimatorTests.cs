using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Modules;
using MlNetGuide.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Estimators.Tests;

public sealed class EstimatorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-est-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    [Fact]
    public void RegressionLearnsALinearFunctionAndEvaluates()
    {
        var ml = new MLContext(seed: 3);
        var train = Synthetic.Data(ml, 2000, seed: 1);
        var test = Synthetic.Data(ml, 500, seed: 2);
        var estimator = ml.Regression.Trainers.NeuralNetwork(new RegressionNeuralNetworkOptions
        {
            LabelColumnName = "Value",
            Architecture = NetworkArchitecture.Mlp(),
            Epochs = 20,
            BatchSize = 32,
            LearningRate = 0.1,
        });
        using var model = estimator.Fit(train);
        var metrics = ml.Regression.Evaluate(model.Transform(test), labelColumnName: "Value");
        Assert.True(metrics.RootMeanSquaredError < 0.05, $"RMSE {metrics.RootMeanSquaredError}");
        Assert.Equal(NeuralTask.Regression, model.Task);
        Assert.Equal(20, model.History!.Epochs.Count);
    }

    [Fact]
    public void BinaryClassifierProducesScoreProbabilityAndLabel()
    {
        var ml = new MLContext(seed: 3);
        var train = Synthetic.Data(ml, 2000, seed: 1);
        var test = Synthetic.Data(ml, 500, seed: 2);
        using var model = ml.BinaryClassification.Trainers.NeuralNetwork(labelColumnName: "Positive",
            architecture: NetworkArchitecture.Mlp(16), epochs: 30, batchSize: 32, learningRate: 0.5).Fit(train);
        var scored = model.Transform(test);
        var metrics = ml.BinaryClassification.Evaluate(scored, labelColumnName: "Positive");
        Assert.True(metrics.Accuracy > 0.95, $"accuracy {metrics.Accuracy}");
        Assert.True(metrics.AreaUnderRocCurve > 0.99);
        var rows = ml.Data.CreateEnumerable<BinaryOut>(scored, false).Take(50).ToList();
        Assert.All(rows, r =>
        {
            Assert.Equal(1 / (1 + MathF.Exp(-r.Score)), r.Probability, 5);
            Assert.Equal(r.Score > 0, r.PredictedLabel);
        });
    }

    [Fact]
    public void LazyArchitectureInfersTheFeatureWidth()
    {
        var ml = new MLContext(seed: 3);
        var data = ml.Transforms.Conversion.MapValueToKey("Label", "Kind").Fit(Synthetic.Data(ml, 600)).Transform(Synthetic.Data(ml, 600));
        using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions
        {
            Architecture = NetworkArchitecture.LazyMlp(32), Epochs = 40, BatchSize = 32, LearningRate = 0.5,
        }).Fit(data);
        Assert.Contains("LazyLinear(in_features=3, out_features=32", model.Summary);
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(data));
        Assert.True(metrics.MicroAccuracy > 0.9, $"accuracy {metrics.MicroAccuracy}");
    }

    private static IDataView KindData(MLContext ml, int n, int seed = 0)
    {
        var raw = Synthetic.Data(ml, n, seed);
        return ml.Transforms.Conversion.MapValueToKey("Label", "Kind").Fit(raw).Transform(raw);
    }

    private sealed class TwoLayer : nn.Module<Tensor, Tensor>
    {
        private readonly nn.Module<Tensor, Tensor> first, second;
        public TwoLayer(ModuleRequest r, long hidden) : base(nameof(TwoLayer))
        {
            first = new MyLinear(r.Inputs, hidden);
            second = nn.Linear(hidden, r.Outputs);
            RegisterComponents();
        }
        public override Tensor forward(Tensor x) { using var h = first.call(x); return second.call(h); }
    }

    [Fact]
    public void UserModuleRegisteredByNameTrainsSavesAndReloads()
    {
        var ml = new MLContext(seed: 5);
        var data = KindData(ml, 600);
        var arch = NetworkArchitecture.Custom("test-two-layer", r => new TwoLayer(r, 16));
        using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions
        {
            Architecture = arch, Init = InitScheme.NormalSmall, Epochs = 5, BatchSize = 32,
        }).Fit(data);
        Assert.Contains("MyLinear(in_units=3, units=16)", model.Summary);
        var path = PathOf("custom.zip");
        NeuralModel.Save(ml, model, data.Schema, path);
        var loaded = NeuralModel.Load(new MLContext(), path, out _);
        var a = model.Transform(data).GetColumn<float[]>("Score").ToList();
        var b = loaded.Transform(data).GetColumn<float[]>("Score").ToList();
        Assert.Equal(a, b);

        // The same name, another architecture: the stored weights do not fit, and loading says so.
        NeuralModuleRegistry.Register("test-two-layer", r => new TwoLayer(r, 8));
        var ex = Assert.Throws<ModelFormatException>(() => NeuralModel.Load(new MLContext(), path, out _));
        Assert.Contains("do not fit architecture test-two-layer", ex.Message);
        Assert.Contains("expected shape [3, 8], found [3, 16]", ex.Message);
        NeuralModuleRegistry.Register("test-two-layer", r => new TwoLayer(r, 16));
    }

    [Fact]
    public void UnregisteredModuleNameFailsClearlyAtLoad()
    {
        var ml = new MLContext(seed: 5);
        var data = KindData(ml, 200);
        NeuralModuleRegistry.Register("test-transient", r => nn.Linear(r.Inputs, r.Outputs));
        using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(architecture: NetworkArchitecture.Custom("test-transient"), epochs: 1).Fit(data);
        var path = PathOf("transient.zip");
        NeuralModel.Save(ml, model, data.Schema, path);
        var bytes = File.ReadAllBytes(path);
        // Rename the architecture in the stored config to one no process registered.
        var tampered = PathOf("renamed.zip");
        File.WriteAllBytes(tampered, bytes);
        using (var zip = new System.IO.Compression.ZipArchive(File.Open(tampered, FileMode.Open), System.IO.Compression.ZipArchiveMode.Update))
        {
            var entry = zip.GetEntry("MlNetGuide/part1.json")!;
            string json;
            using (var r = new StreamReader(entry.Open())) json = r.ReadToEnd();
            entry.Delete();
            using var w = new StreamWriter(zip.CreateEntry("MlNetGuide/part1.json").Open());
            w.Write(json.Replace("test-transient", "never-registered"));
        }
        // The zip's SHA-256 seal notices the edit...
        Assert.Contains("seal does not match", Assert.Throws<ModelFormatException>(() => NeuralModel.Load(new MLContext(), tampered, out _)).Message);
        // ...and without the seal (as if written by hand), the unknown name is reported as such.
        using (var zip = new System.IO.Compression.ZipArchive(File.Open(tampered, FileMode.Open), System.IO.Compression.ZipArchiveMode.Update))
            zip.Entries.Single(e => e.Name == "mlnetguide.sha256").Delete();
        var ex = Assert.Throws<ModuleNotRegisteredException>(() => NeuralModel.Load(new MLContext(), tampered, out _));
        Assert.Contains("No module factory is registered under 'never-registered'", ex.Message);
    }

    [Fact]
    public void PlainModelLoadFailsAtOnceNamingTheCallToUse()
    {
        var ml = new MLContext(seed: 1);
        var data = KindData(ml, 100);
        using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(epochs: 1).Fit(data);
        var path = PathOf("ours.zip");
        NeuralModel.Save(ml, model, data.Schema, path);
        var plain = new MLContext();
        var ex = Assert.ThrowsAny<Exception>(() => plain.Model.Load(path, out _));
        Assert.Contains("NeuralModel.Load", ex.ToString());
        // With our assembly registered in the catalog, the placeholder's factory says the same.
        plain.ComponentCatalog.RegisterAssembly(typeof(NeuralModel).Assembly);
        var ex2 = Assert.ThrowsAny<Exception>(() => plain.Model.Load(path, out _));
        Assert.Contains("NeuralModel.Load", ex2.ToString());
    }

    [Fact]
    public void SameSeedGivesBitIdenticalWeightsAndPredictions()
    {
        float[][] Run()
        {
            var ml = new MLContext(seed: 42);
            var data = KindData(ml, 300);
            using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(architecture: NetworkArchitecture.Mlp(8), epochs: 3, batchSize: 16).Fit(data);
            return model.Transform(data).GetColumn<float[]>("Score").ToArray();
        }
        var a = Run();
        var b = Run();
        Assert.Equal(a.Length, b.Length);
        for (int i = 0; i < a.Length; i++) Assert.Equal(a[i], b[i]);
        float[][] other;
        {
            var ml = new MLContext(seed: 43);
            var data = KindData(ml, 300);
            using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(architecture: NetworkArchitecture.Mlp(8), epochs: 3, batchSize: 16).Fit(data);
            other = model.Transform(data).GetColumn<float[]>("Score").ToArray();
        }
        Assert.NotEqual(a[0], other[0]);
    }

    [Fact]
    public void TransformScoresInBatchesNotRowByRow()
    {
        var ml = new MLContext(seed: 1);
        var data = KindData(ml, 100);
        using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions { Epochs = 1, ScoringBatchSize = 32 }).Fit(data);
        long before = model.Scorer.ForwardPasses;
        var scores = model.Transform(data).GetColumn<float[]>("Score").ToList();
        Assert.Equal(100, scores.Count);
        Assert.Equal(4, model.Scorer.ForwardPasses - before); // ceil(100 / 32)
        // Reading only pass-through columns runs no forward pass at all.
        before = model.Scorer.ForwardPasses;
        Assert.Equal(100, model.Transform(data).GetColumn<float>("Value").Count());
        Assert.Equal(0, model.Scorer.ForwardPasses - before);
    }

    [Fact]
    public void TransformRunsTheUpstreamOnceAndPassesEveryColumnThroughWithItsRow()
    {
        var ml = new MLContext(seed: 1);
        var data = KindData(ml, 100);
        using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions { Epochs = 1, ScoringBatchSize = 32 }).Fit(data);
        var expectedScores = model.Transform(data).GetColumn<float[]>("Score").ToList();
        var counted = new RowCountingView(data);
        var scored = model.Transform(counted);
        // Score with every kind of pass-through column: a vector, a float, a bool, text, a key — and the row id.
        var names = new[] { "Score", "Features", "Value", "Positive", "Kind", "Label" };
        long live = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        var inputRows = data.Preview(100).RowView;
        using (var cursor = scored.GetRowCursor(names.Select(n => scored.Schema[n])))
        using (var reference = data.GetRowCursor(data.Schema))
        {
            var score = cursor.GetGetter<VBuffer<float>>(scored.Schema["Score"]);
            var features = cursor.GetGetter<VBuffer<float>>(scored.Schema["Features"]);
            var value = cursor.GetGetter<float>(scored.Schema["Value"]);
            var positive = cursor.GetGetter<bool>(scored.Schema["Positive"]);
            var kind = cursor.GetGetter<ReadOnlyMemory<char>>(scored.Schema["Kind"]);
            var label = cursor.GetGetter<uint>(scored.Schema["Label"]);
            var id = cursor.GetIdGetter();
            var referenceId = reference.GetIdGetter();
            VBuffer<float> s = default, f = default;
            float v = 0; bool p = false; ReadOnlyMemory<char> k = default; uint l = 0;
            DataViewRowId rowId = default, expectedId = default;
            int row = 0;
            for (; cursor.MoveNext(); row++)
            {
                Assert.True(reference.MoveNext());
                score(ref s); features(ref f); value(ref v); positive(ref p); kind(ref k); label(ref l); id(ref rowId); referenceId(ref expectedId);
                var input = inputRows[row].Values.ToDictionary(kv => kv.Key, kv => kv.Value);
                Assert.Equal(row, cursor.Position);
                Assert.Equal(expectedScores[row], s.DenseValues().ToArray());
                Assert.Equal(((VBuffer<float>)input["Features"]).DenseValues().ToArray(), f.DenseValues().ToArray());
                Assert.Equal((float)input["Value"], v);
                Assert.Equal((bool)input["Positive"], p);
                Assert.Equal(input["Kind"].ToString(), k.ToString());
                Assert.Equal((uint)input["Label"], l);
                Assert.Equal(expectedId, rowId);
            }
            Assert.Equal(100, row); // 32 + 32 + 32 + 4: every batch, the last one partial
        }
        Assert.Equal(100, counted.RowsRead); // one pass over the upstream, not one per cursor
        // Text values are kept by consumers without copying (GetColumn, CreateEnumerable): collected over four batches,
        // each must still read as its own row's.
        var kinds = new List<ReadOnlyMemory<char>>();
        using (var cursor = scored.GetRowCursor([scored.Schema["Score"], scored.Schema["Kind"]]))
        {
            var kind = cursor.GetGetter<ReadOnlyMemory<char>>(scored.Schema["Kind"]);
            ReadOnlyMemory<char> k = default;
            while (cursor.MoveNext()) { kind(ref k); kinds.Add(k); } // kept as they are, not copied
        }
        Assert.Equal(data.GetColumn<string>("Kind"), kinds.Select(k => k.ToString()));
        Assert.Equal(live, DisposeScopeManager.Statistics.ThreadTotalLiveCount); // the cursor's batch tensor went with it

        // Two cursors open at once each have their own batch: interleaved, both read the right scores.
        var scoreColumn = scored.Schema["Score"];
        using var a = scored.GetRowCursor([scoreColumn]);
        using var b = scored.GetRowCursor([scoreColumn]);
        var (getA, getB) = (a.GetGetter<VBuffer<float>>(scoreColumn), b.GetGetter<VBuffer<float>>(scoreColumn));
        VBuffer<float> va = default, vb = default;
        for (int row = 0; a.MoveNext() && b.MoveNext(); row++)
        {
            getA(ref va);
            getB(ref vb);
            Assert.Equal(expectedScores[row], va.DenseValues().ToArray());
            Assert.Equal(expectedScores[row], vb.DenseValues().ToArray());
        }
    }

    [Fact]
    public void BatchedAndSingleRowScoresAgree()
    {
        var ml = new MLContext(seed: 1);
        // 300 rows in batches of 128: two full batches and a partial one, so rows on both sides of each boundary are compared.
        const int n = 300, batch = 128;
        var data = KindData(ml, n);
        using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions { Epochs = 2, ScoringBatchSize = batch }).Fit(data);
        var batched = model.Transform(data).GetColumn<float[]>("Score").ToList();
        Assert.Equal(n, batched.Count);
        using var engine = ml.Model.CreatePredictionEngine<TabularRow, MulticlassOut>(model, new PredictionEngineOptions { OwnsTransformer = false });
        var rows = Synthetic.Rows(n);
        for (int i = 0; i < rows.Count; i++)
        {
            var single = engine.Predict(rows[i]).Score;
            // Probabilities (at most 1): a batch of 1 and of 128 sum in different orders, so they agree to 1e-6, not bit for bit.
            for (int k = 0; k < single.Length; k++) Assert.True(Math.Abs(batched[i][k] - single[k]) <= 1e-6, $"row {i} class {k}: batched {batched[i][k]:R}, single {single[k]:R}");
        }
    }

    public sealed class MulticlassOut { public float[] Score { get; set; } = []; public uint PredictedLabel { get; set; } }

    [Fact]
    public void ProgressIsReportedThroughMlContextLog()
    {
        var ml = new MLContext(seed: 1);
        var lines = new List<string>();
        ml.Log += (_, e) => { if (e.Source.StartsWith("MlNetGuide", StringComparison.Ordinal)) lock (lines) lines.Add(e.Message); };
        var epochs = new List<int>();
        var data = KindData(ml, 100);
        using var model = ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions
        {
            Epochs = 3, ValidationFraction = 0.2, EpochCompleted = m => epochs.Add(m.Epoch),
        }).Fit(data);
        Assert.Equal(new[] { 1, 2, 3 }, epochs);
        Assert.Contains(lines, l => l.Contains("Training mlp(256) for MulticlassClassification", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("epoch 3/3: train_loss", StringComparison.Ordinal) && l.Contains("val_acc"));
    }

    [Fact]
    public void GpuDeviceIdWithoutCudaFailsOrFallsBackAsMlContextSays()
    {
        var ml = new MLContext(seed: 1) { GpuDeviceId = 0, FallbackToCpu = false };
        var data = KindData(ml, 50);
        var ex = Assert.Throws<InvalidOperationException>(() => ml.MulticlassClassification.Trainers.NeuralNetwork(epochs: 1).Fit(data));
        Assert.Contains("FallbackToCpu", ex.Message);
        var warnings = new List<string>();
        var ml2 = new MLContext(seed: 1) { GpuDeviceId = 0, FallbackToCpu = true };
        ml2.Log += (_, e) => { if (e.Kind == Microsoft.ML.Runtime.ChannelMessageKind.Warning) warnings.Add(e.Message); };
        using var model = ml2.MulticlassClassification.Trainers.NeuralNetwork(epochs: 1).Fit(KindData(ml2, 50));
        Assert.Contains(warnings, w => w.Contains("falling back to the CPU"));
        // The public-API entry point reads the same settings from the MLContext itself.
        Assert.Throws<InvalidOperationException>(() => ml.NeuralNetworks().Multiclass(new MulticlassNeuralNetworkOptions { Epochs = 1 }).Fit(data));
    }

    [Fact]
    public void CancellationStopsTraining()
    {
        var ml = new MLContext(seed: 1);
        using var cts = new CancellationTokenSource();
        var options = new MulticlassNeuralNetworkOptions { Epochs = 50, CancellationToken = cts.Token, EpochCompleted = m => { if (m.Epoch == 2) cts.Cancel(); } };
        Assert.ThrowsAny<OperationCanceledException>(() => ml.MulticlassClassification.Trainers.NeuralNetwork(options).Fit(KindData(ml, 100)));
    }

    [Theory]
    [InlineData(1024)]
    [InlineData(0)]
    public void CancellationIsHonouredWhileTheDataIsRead(int inMemoryLimitMB)
    {
        var ml = new MLContext(seed: 1);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var epochs = new List<int>();
        var options = new MulticlassNeuralNetworkOptions
        {
            CancellationToken = cts.Token, InMemoryLimitMB = inMemoryLimitMB, ValidationFraction = 0.2, // streaming scans first
            EpochCompleted = m => epochs.Add(m.Epoch),
        };
        // Count the rows the estimator pulls from the source: reading stops at once instead of finishing the pass.
        int served = 0;
        IEnumerable<TabularRow> Counted() { foreach (var r in Synthetic.Rows(20_000)) { served++; yield return r; } }
        var raw = ml.Data.LoadFromEnumerable(Counted());
        var data = ml.Transforms.Conversion.MapValueToKey("Label", "Kind").Fit(raw).Transform(raw);
        served = 0;
        Assert.ThrowsAny<OperationCanceledException>(() => ml.MulticlassClassification.Trainers.NeuralNetwork(options).Fit(data));
        Assert.Empty(epochs);
        Assert.InRange(served, 0, 5_000); // not the whole pass (the enumerable view reads some rows ahead of the cursor)
    }
}
