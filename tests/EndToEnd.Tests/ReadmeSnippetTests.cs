using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Estimators;
using MlNetGuide.Modules;
using MlNetGuide.Samples.Digits;
using MlNetGuide.Tests.Shared;
using MlNetGuide.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.EndToEnd.Tests;

/// <summary>The README's tour, snippet by snippet (the lines between "README" comments are copied verbatim).</summary>
public sealed class ReadmeSnippetTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-readme-").FullName;
    private readonly string _cwd = Directory.GetCurrentDirectory();

    public ReadmeSnippetTests() => Directory.SetCurrentDirectory(_dir);

    public void Dispose()
    {
        Directory.SetCurrentDirectory(_cwd);
        Directory.Delete(_dir, true);
    }

    [Fact]
    public void LayersAndModules()
    {
        // README
        var net = nn.Sequential(new LazyLinear(256), nn.ReLU(), new LazyLinear(10));
        var y = net.call(rand(2, 20));                          // (2, 10)
        var chimera = nn.Sequential(new NestMLP(), new LazyLinear(20), new FixedHiddenMLP());
        // README
        Assert.Equal(new long[] { 2, 10 }, y.shape);
        Assert.Equal(0, chimera.call(rand(2, 20)).dim());
    }

    [Fact]
    public void TextPipelineSavesAPlainZip()
    {
        var ml = new MLContext(seed: 1);
        var emails = MlNetGuide.Samples.SpamFilter.SpamData.Read(ml, RepoData.SpamPath, limit: 400);
        var train = ml.Data.LoadFromEnumerable(emails.Take(300));
        // README
        var pipeline = ml.Transforms.Text.NormalizeText("Normalized", "Text", keepPunctuations: false, keepNumbers: false)
            .Append(ml.Transforms.Text.TokenizeIntoWords("Tokens", "Normalized"))
            .Append(ml.Transforms.Conversion.MapValueToKey("Tokens", maximumNumberOfKeys: 20_000))
            .Append(ml.BinaryClassification.Trainers.NeuralNetwork(new BinaryNeuralNetworkOptions
            {
                FeatureColumnName = "Tokens", Architecture = NetworkArchitecture.FastText(32), Init = null,
                Optimizer = OptimizerKind.Adam, LearningRate = 0.02, Epochs = 8, BatchSize = 64, MaxTokens = 600,
            }));
        var model = pipeline.Fit(train);
        ml.Model.Save(model, train.Schema, "spam.zip"); // a plain zip: raw text in; ML.NET and ONNX Runtime score it
        // README
        var test = ml.Data.LoadFromEnumerable(emails.Skip(300));
        var plain = new MLContext().Model.Load("spam.zip", out _);
        Assert.DoesNotContain(((IEnumerable<ITransformer>)plain).SelectMany(t => t is IEnumerable<ITransformer> c ? c : [t]), t => t is NeuralNetworkTransformer);
        var ours = model.Transform(test).GetColumn<float>("Score").ToList();
        var theirs = plain.Transform(test).GetColumn<float>("Score").ToList();
        Assert.Equal(100, theirs.Count);
        for (int i = 0; i < ours.Count; i++) Assert.True(Math.Abs(ours[i] - theirs[i]) <= 1e-4 * Math.Max(1, Math.Abs(ours[i])), $"row {i}: {ours[i]} vs {theirs[i]}");
        Assert.Equal(model.Transform(test).GetColumn<bool>("PredictedLabel"), plain.Transform(test).GetColumn<bool>("PredictedLabel"));
        model.LastTransformer.Dispose();
        (plain as IDisposable)?.Dispose();
    }

    [Fact]
    public void Parameters()
    {
        // README
        var shared = nn.Linear(8, 8);
        var tied = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU(), nn.Linear(8, 1));
        StateDict.Get(tied);                        // TorchSharp style: 2.weight once
        StateDict.Get(tied, includeAliases: true);  // PyTorch style: 2.weight and 4.weight
        Console.Write(ModuleSummary.Describe(tied)); // tree, parameters, "193 (121 unique; tied parameters counted once)"
        // README
        Assert.DoesNotContain("4.weight", StateDict.Get(tied).Keys);
        Assert.Contains("4.weight", StateDict.Get(tied, includeAliases: true).Keys);
        Assert.Contains("193 (121 unique; tied parameters counted once)", ModuleSummary.Describe(tied));
    }

    [Fact]
    public void Initialization()
    {
        var net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1));
        // README
        net.ApplyInit(new InitScheme(Initializer.Normal(0, 0.01), Initializer.Zeros, Seed: 42));
        net[0].ApplyInit(Initializer.XavierUniform());
        net[2].ApplyInit(Initializer.Constant(42));
        net.ApplyInit(Initializer.ChapterCustom());  // U(5,10) w.p. 1/4, 0 w.p. 1/2, U(-10,-5) w.p. 1/4
        // README
        Assert.All(((Linear)net[0]).weight.data<float>().ToArray(), v => Assert.True(v == 0 || Math.Abs(v) is >= 5 and <= 10));
    }

    [Fact]
    public void LazyInitialization()
    {
        // README
        var net = nn.Sequential(new LazyLinear(256), nn.ReLU(), new LazyLinear(10));
        // net[0].weight throws LazyModuleNotInitializedException("... run one forward pass (a dry run) ...")
        net.ApplyInit(rand(2, 20), InitScheme.Xavier);   // dry run, then init: net[0].weight is (256, 20)
        // README
        Assert.Equal(new long[] { 256, 20 }, ((LazyLinear)net[0]).weight.shape);
        Assert.Contains("dry run", Assert.Throws<LazyModuleNotInitializedException>(() => new LazyLinear(3).weight).Message);
    }

    [Fact]
    public void FileIO()
    {
        var x = arange(4, dtype: ScalarType.Float32);
        var y = zeros(4);
        var net = new MLP(inputs: 20);
        var clone = new MLP(inputs: 20);
        // README
        TensorIO.SaveList([x, y], "x-files");
        StateDict.Save(net, "mlp.pth", TensorFileFormat.PyTorch);
        StateDict.Load(clone, "mlp.pth");   // format detected; lazy clones are materialized from the saved shapes
        // README
        Assert.Equal(2, TensorIO.LoadList("x-files").Count);
        using var input = rand(3, 20);
        Assert.True(net.call(input).equal(clone.call(input)).all().item<bool>());
    }

    [Fact]
    public void TheTrainer()
    {
        var (pixels, labels) = RepoData.Digits(2000);
        var x = tensor(pixels).reshape(labels.Length, 784);
        var y = tensor(labels);
        // README
        var model = new Classifier(new MLP(256, 10, inputs: 784), lr: 0.3);
        using var data = TensorDataModule.Split(x, y, valFraction: 0.2, batchSize: 128, seed: 42);
        using var trainer = new Trainer(maxEpochs: 12, numGpus: 1, gradientClipVal: 1.0);
        History history = trainer.Fit(model, data);       // ≥ 94 % on the real digits (TrainerTests)
        model.Board.SavePng("curve.png");                   // d2l's ProgressBoard, rendered with OxyPlot
        // README
        Assert.Equal(12, history.Epochs.Count);
        Assert.True(history.Last!.ValAccuracy > 0.85, $"{history.Last.ValAccuracy}"); // 2,000 digits here, not 10,000
        Assert.True(File.Exists("curve.png"));
    }

    [Fact]
    public void MlNetPipeline()
    {
        var ml = new MLContext(seed: 1);
        var rows = DigitsData.Read(RepoData.DigitsPath, 2000);
        var split = ml.Data.TrainTestSplit(ml.Data.LoadFromEnumerable(rows), 0.2, seed: 1);
        var (train, test) = (split.TrainSet, split.TestSet);
        // README
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Transforms.NormalizeMinMax("Features", "Pixels"))
            .Append(ml.MulticlassClassification.Trainers.NeuralNetwork(new MulticlassNeuralNetworkOptions
            {
                Architecture = NetworkArchitecture.ChapterMlp(),   // or Mlp(256, 128), LazyMlp(64), Custom("my-net", ...)
                Init = NetworkInit.Xavier,
                Epochs = 20, BatchSize = 64, LearningRate = 0.2, NumGpus = 0,
            }))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));
        var model = pipeline.Fit(train);
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
        var trained = model.OfType<NeuralNetworkTransformer>().Single();   // the network's step in the fitted chain
        trained.History!.SavePng("curve.png");   // per-epoch loss and accuracy (History is null for a model loaded from a file)
        ml.Model.Save(model, train.Schema, "model.zip");      // the network is stored as ONNX inside the zip
        // later, in any process with Microsoft.ML.OnnxTransformer and Microsoft.ML.OnnxRuntime (no MlNetGuide needed):
        var loaded = ml.Model.Load("model.zip", out var schema);
        var engine = ml.Model.CreatePredictionEngine<Digit, DigitPrediction>(loaded);
        // or back to a trainable TorchSharp network (same weights, bit for bit; batched scoring):
        var network = NeuralModel.Load(new MLContext(), "model.zip", out _);
        // README
        Assert.True(metrics.MicroAccuracy > 0.85, $"{metrics.MicroAccuracy}");
        Assert.Equal(20, trained.History!.Epochs.Count);
        Assert.True(new FileInfo("curve.png").Length > 1000);
        Assert.Equal(train.Schema.Count, schema.Count);
        var digit = rows[^1];
        Assert.Equal(engine.Predict(digit).PredictedLabel, ml.Model.CreatePredictionEngine<Digit, DigitPrediction>(model).Predict(digit).PredictedLabel);
        Assert.Equal(engine.Predict(digit).PredictedLabel, ml.Model.CreatePredictionEngine<Digit, DigitPrediction>(network).Predict(digit).PredictedLabel);
    }

    [Fact]
    public void PredictionEnginesOnePerThread()
    {
        var ml = new MLContext(seed: 1);
        var rows = DigitsData.Read(RepoData.DigitsPath, 1200);
        var train = ml.Data.LoadFromEnumerable(rows.Take(1000));
        var loaded = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Transforms.NormalizeMinMax("Features", "Pixels"))
            .Append(ml.MulticlassClassification.Trainers.NeuralNetwork(architecture: NetworkArchitecture.Mlp(32), epochs: 2))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"))
            .Fit(train);
        var digits = rows.Skip(1000).ToList();
        var threadsSeen = new System.Collections.Concurrent.ConcurrentDictionary<int, PredictionEngine<Digit, DigitPrediction>>();
        // README
        var shared = new PredictionEngineOptions { OwnsTransformer = false };   // an engine must not dispose the shared model
        var engines = new ThreadLocal<PredictionEngine<Digit, DigitPrediction>>(
            () => ml.Model.CreatePredictionEngine<Digit, DigitPrediction>(loaded, shared), trackAllValues: true);
        var labels = digits.AsParallel().AsOrdered().Select(d => engines.Value!.Predict(d).PredictedLabel).ToArray();
        foreach (var engine in engines.Values) engine.Dispose();   // each engine's own row state; the model stays usable
        // README
        var batched = loaded.Transform(ml.Data.LoadFromEnumerable(digits)).GetColumn<float>("PredictedLabel").ToArray();
        Assert.Equal(batched, labels);
        // Each thread had an engine of its own: a shared engine (a ThreadLocal without its factory per thread) fails this.
        var perThread = new ThreadLocal<PredictionEngine<Digit, DigitPrediction>>(
            () => ml.Model.CreatePredictionEngine<Digit, DigitPrediction>(loaded, shared), trackAllValues: true);
        using (var ready = new Barrier(3))
            Parallel.For(0, 3, new ParallelOptions { MaxDegreeOfParallelism = 3 }, _ =>
            {
                ready.SignalAndWait(); // three threads at once, so three engines
                threadsSeen[Environment.CurrentManagedThreadId] = perThread.Value!;
            });
        Assert.Equal(3, threadsSeen.Count);
        Assert.Equal(3, threadsSeen.Values.Distinct().Count());
        foreach (var engine in perThread.Values) engine.Dispose();
        // Disposing engines made with OwnsTransformer = false leaves the model whole: it scores the same rows again.
        Assert.Equal(batched, loaded.Transform(ml.Data.LoadFromEnumerable(digits)).GetColumn<float>("PredictedLabel").ToArray());
        // An engine made without those options owns the model (ML.NET's default) and disposes it with itself.
        ml.Model.CreatePredictionEngine<Digit, DigitPrediction>(loaded).Dispose();
        Assert.Throws<ObjectDisposedException>(() => loaded.Transform(ml.Data.LoadFromEnumerable(digits)).GetColumn<float>("PredictedLabel").ToArray());
    }
}
