using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Modules;
using MlNetGuide.Modules.Onnx;

namespace MlNetGuide.Estimators.Tests;

public sealed class Sentence
{
    public string Text { get; set; } = "";
    public bool Label { get; set; }
}

/// <summary>
/// Token sequences through the estimator: a variable-length key column (TokenizeIntoWords + MapValueToKey, as ML.NET's
/// own text samples write it) trains the built-in text networks, scores in batches and row by row, and round-trips
/// through NeuralModel; the rules for empty, long and foreign rows, and the errors that name the way out.
/// </summary>
public sealed class TokenColumnTests
{
    private static readonly string[] Filler = ["the", "a", "movie", "plot", "actor", "scene", "was", "and", "it", "really", "very", "quite"];

    /// <summary>Sentences of 3 to 20 filler words with "great" (positive) or "awful" (negative) somewhere in them.</summary>
    internal static List<Sentence> Sentences(int n, int seed)
    {
        var rng = new Random(seed);
        var rows = new List<Sentence>();
        for (int i = 0; i < n; i++)
        {
            bool positive = rng.Next(2) == 1;
            var words = Enumerable.Range(0, rng.Next(3, 21)).Select(_ => Filler[rng.Next(Filler.Length)]).ToList();
            words.Insert(rng.Next(words.Count + 1), positive ? "great" : "awful");
            rows.Add(new Sentence { Text = string.Join(' ', words), Label = positive });
        }
        return rows;
    }

    private static IEstimator<ITransformer> Tokens(MLContext ml) =>
        ml.Transforms.Text.TokenizeIntoWords("Tokens", nameof(Sentence.Text)).Append(ml.Transforms.Conversion.MapValueToKey("Tokens"));

    internal static BinaryNeuralNetworkOptions Options(NetworkArchitecture architecture, int epochs = 6) => new()
    {
        FeatureColumnName = "Tokens", Architecture = architecture, Epochs = epochs, BatchSize = 32, Optimizer = OptimizerKind.Adam,
        LearningRate = 0.01, Seed = 1, Init = null,
    };

    public static TheoryData<string> Architectures => new() { "fasttext", "textcnn", "bilstm", "bigru", "transformer" };

    internal static NetworkArchitecture Architecture(string name) => name switch
    {
        "fasttext" => NetworkArchitecture.FastText(16),
        "textcnn" => NetworkArchitecture.TextCnn(16, 8),
        "bilstm" => NetworkArchitecture.BiLstm(16, 16),
        "bigru" => NetworkArchitecture.BiGru(16, 16),
        _ => NetworkArchitecture.TransformerEncoder(16, 2, 32, 1),
    };

    [Theory]
    [MemberData(nameof(Architectures))]
    public void EveryTextNetworkLearnsWhichWordDecidesAndScoresAlikeInBatchesAndRowByRow(string name)
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(Sentences(400, seed: 1));
        var test = ml.Data.LoadFromEnumerable(Sentences(100, seed: 2));
        var model = Tokens(ml).Append(ml.BinaryClassification.Trainers.NeuralNetwork(Options(Architecture(name)))).Fit(train);
        var metrics = ml.BinaryClassification.Evaluate(model.Transform(test));
        Assert.True(metrics.Accuracy >= 0.95, $"{name}: accuracy {metrics.Accuracy:P1} on the held-out sentences");
        var network = model.LastTransformer;
        Assert.True(network.VocabularySize == 15, $"12 filler words + great + awful + padding: {network.VocabularySize}");
        // Batched Transform and the PredictionEngine (one row, its own length) agree.
        var batched = ml.Data.CreateEnumerable<BinaryOut>(model.Transform(test), reuseRowObject: false).ToList();
        var engine = ml.Model.CreatePredictionEngine<Sentence, BinaryOut>(model);
        var rows = Sentences(100, seed: 2);
        for (int i = 0; i < 20; i++)
            Assert.True(Math.Abs(batched[i].Score - engine.Predict(rows[i]).Score) <= 1e-4f * Math.Max(1, Math.Abs(batched[i].Score)), $"{name} row {i}");
        network.Dispose();
    }

    [Fact]
    public void NeuralModelRoundTripsATokenNetworkBitForBit()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(Sentences(200, seed: 3));
        var model = Tokens(ml).Append(ml.BinaryClassification.Trainers.NeuralNetwork(Options(NetworkArchitecture.TextCnn(16, 8), epochs: 2))).Fit(train);
        var dir = Directory.CreateTempSubdirectory("mlnetguide-tokens-").FullName;
        try
        {
            var path = Path.Combine(dir, "model.zip");
            NeuralModel.Save(ml, model, train.Schema, path);
            var loaded = NeuralModel.Load(new MLContext(), path, out _);
            var network = ((IEnumerable<ITransformer>)loaded).OfType<NeuralNetworkTransformer>().Single();
            Assert.Equal(model.LastTransformer.WeightsDigest(), network.WeightsDigest());
            Assert.Equal(model.LastTransformer.VocabularySize, network.VocabularySize);
            var a = ml.Data.CreateEnumerable<BinaryOut>(model.Transform(train), false).Select(r => r.Score).ToArray();
            var b = ml.Data.CreateEnumerable<BinaryOut>(loaded.Transform(train), false).Select(r => r.Score).ToArray();
            Assert.Equal(a, b);
            network.Dispose();
        }
        finally
        {
            model.LastTransformer.Dispose();
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void RowsBeyondMaxTokensAreCutAndAnEmptyRowIsPadding()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(Sentences(200, seed: 4));
        var options = Options(NetworkArchitecture.FastText(8), epochs: 2);
        options.MaxTokens = 4;
        var model = Tokens(ml).Append(ml.BinaryClassification.Trainers.NeuralNetwork(options)).Fit(train);
        var engine = ml.Model.CreatePredictionEngine<Sentence, BinaryOut>(model);
        // Only the first 4 tokens count: whatever follows them changes nothing.
        float first = engine.Predict(new Sentence { Text = "the movie was great" }).Score;
        Assert.Equal(first, engine.Predict(new Sentence { Text = "the movie was great awful awful awful" }).Score);
        Assert.NotEqual(first, engine.Predict(new Sentence { Text = "the movie was awful" }).Score);
        // An empty row (no token) is a row of padding: a finite score, the same as a row of unknown words (missing keys).
        float empty = engine.Predict(new Sentence { Text = "" }).Score;
        Assert.True(float.IsFinite(empty));
        Assert.Equal(empty, engine.Predict(new Sentence { Text = "zebra" }).Score);
        model.LastTransformer.Dispose();
    }

    [Fact]
    public void ScoringWithAnotherVocabularyIsRefusedNamingBothSizes()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(Sentences(100, seed: 5));
        var tokens = Tokens(ml).Fit(train);
        using var network = ml.BinaryClassification.Trainers.NeuralNetwork(Options(NetworkArchitecture.FastText(8), epochs: 1)).Fit(tokens.Transform(train));
        // A MapValueToKey fitted on other text numbers (and counts) the tokens differently.
        var other = ml.Data.LoadFromEnumerable(new[] { new Sentence { Text = "entirely new words here" } });
        var foreign = Tokens(ml).Fit(other).Transform(other);
        var ex = Assert.Throws<SchemaMismatchException>(() => network.Transform(foreign));
        Assert.Contains("'Tokens'", ex.Message);
        Assert.Contains("training vocabulary of 14 tokens", ex.Message);
        Assert.Contains("over 4 tokens", ex.Message);
    }

    [Fact]
    public void ScoringWithAKeyMappingOfAsManyTokensNumberedDifferentlyIsRefused()
    {
        var ml = new MLContext(seed: 1);
        var rows = Sentences(100, seed: 5);
        var train = ml.Data.LoadFromEnumerable(rows);
        var tokens = Tokens(ml).Fit(train);
        using var network = ml.BinaryClassification.Trainers.NeuralNetwork(Options(NetworkArchitecture.FastText(8), epochs: 1)).Fit(tokens.Transform(train));
        // The same 14 words, met in another order: MapValueToKey numbers them by first sight.
        var reversed = ml.Data.LoadFromEnumerable(Enumerable.Reverse(rows).ToList());
        var renumbered = Tokens(ml).Fit(reversed).Transform(train);
        var ex = Assert.Throws<SchemaMismatchException>(() => network.Transform(renumbered));
        Assert.Contains("numbered differently", ex.Message);
        network.Transform(tokens.Transform(train)); // the model's own mapping passes
    }

    [Fact]
    public void AWrongColumnOrAMismatchedArchitectureIsRefusedWithTheWayOut()
    {
        var ml = new MLContext(seed: 1);
        var text = ml.Data.LoadFromEnumerable(Sentences(50, seed: 6));
        var onText = Options(NetworkArchitecture.FastText(8));
        onText.FeatureColumnName = nameof(Sentence.Text); // the raw text, not yet tokenized
        var raw = Assert.Throws<SchemaMismatchException>(() => ml.BinaryClassification.Trainers.NeuralNetwork(onText).Fit(text));
        Assert.Contains("'Text'", raw.Message);
        Assert.Contains("TokenizeIntoWords", raw.Message);

        var tokens = Tokens(ml).Fit(text).Transform(text);
        var mlpOnTokens = Assert.Throws<ArgumentException>(() => ml.BinaryClassification.Trainers.NeuralNetwork(Options(NetworkArchitecture.Mlp(8))).Fit(tokens));
        Assert.Contains("reads numbers", mlpOnTokens.Message);
        Assert.Contains("NetworkArchitecture.FastText", mlpOnTokens.Message);

        var numbers = ml.Data.LoadFromEnumerable(Synthetic.Rows(50));
        var cnnOnNumbers = Assert.Throws<ArgumentException>(() => ml.BinaryClassification.Trainers.NeuralNetwork(new BinaryNeuralNetworkOptions
        {
            LabelColumnName = nameof(TabularRow.Positive), Architecture = NetworkArchitecture.TextCnn(), Epochs = 1,
        }).Fit(numbers));
        Assert.Contains("reads token ids", cnnOnNumbers.Message);
        Assert.Contains("MapValueToKey", cnnOnNumbers.Message);
    }

    [Fact]
    public void ALoadedTextNetworkIsCountedBeforeItIsBuilt()
    {
        // What a loader checks a file's weights against, before building what its config describes: never more than
        // the module really holds (or real files would be refused), and huge for a crafted config.
        foreach (var name in new[] { "fasttext", "textcnn", "bilstm", "bigru", "transformer" })
        {
            var architecture = Architecture(name);
            using var module = architecture.Build(400, 2, 15);
            long actual = module.parameters().Sum(p => p.numel()) * sizeof(float);
            long bound = architecture.MinimumParameterBytes(400, 2, 15);
            Assert.True(bound > 0 && bound <= actual, $"{name}: bound {bound:N0} bytes, module {actual:N0}");
            Assert.True(bound >= actual * 0.9, $"{name}: bound {bound:N0} bytes is loose against the module's {actual:N0}");
        }
        // 100,000 hidden units over 3 ids: 2 directions x 4 gates x 100,000 x 100,001 weights, some 320 GB, refused from the size alone.
        Assert.True(NetworkArchitecture.BiLstm(1, 100_000, 1).MinimumParameterBytes(400, 2, 3) > 300_000_000_000L);
    }

    [Fact]
    public void CharacterKeysTrainToo()
    {
        // TokenizeIntoCharactersAsKeys makes ushort keys over the characters: the same rules, another key type.
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(Sentences(300, seed: 8));
        var options = Options(NetworkArchitecture.FastText(8), epochs: 3);
        options.FeatureColumnName = "Chars";
        options.MaxTokens = 200;
        var model = ml.Transforms.Text.TokenizeIntoCharactersAsKeys("Chars", nameof(Sentence.Text))
            .Append(ml.BinaryClassification.Trainers.NeuralNetwork(options)).Fit(train);
        Assert.True(model.LastTransformer.VocabularySize > 20, $"vocabulary {model.LastTransformer.VocabularySize}");
        var metrics = ml.BinaryClassification.Evaluate(model.Transform(train));
        Assert.True(metrics.AreaUnderRocCurve > 0.5, $"AUC {metrics.AreaUnderRocCurve}");
        model.LastTransformer.Dispose();
    }

    [Fact]
    public void LengthBucketingCutsThePaddingOfEveryEpochAndKeepsEveryRowOnce()
    {
        // 1,000 rows of 1 to 200 tokens (uniform): shuffled batches of 32 are padded to near 200; bucketed ones are not.
        var rng = new Random(7);
        var slots = new float[1000 * 200];
        for (int r = 0; r < 1000; r++)
            for (int t = 0, n = rng.Next(1, 201); t < n; t++) slots[r * 200 + t] = rng.Next(1, 50);
        using var x = TorchSharp.torch.tensor(slots, [1000, 200]);
        using var y = TorchSharp.torch.zeros(1000);
        var buckets = new LengthBuckets([x, y], 32, seed: 1);
        var bucketed = buckets.Order(epoch: 0);
        var plain = buckets.Order(epoch: 0, bucket: false);
        Assert.Equal(Enumerable.Range(0, 1000), bucketed.SelectMany(b => b).Order());
        Assert.Equal(32, buckets.Count);
        double with = buckets.PaddingFraction(bucketed), without = buckets.PaddingFraction(plain);
        Assert.True(without > 0.45, $"shuffled batches: {without:P0} padding");   // E[max of 32 uniform] ≈ 194: ~48 % padding
        Assert.True(with < 0.10, $"bucketed batches: {with:P0} padding");         // a sorted window of 512 rows: a batch spans ~12 lengths, ~6 %
        Assert.NotEqual(bucketed.Select(b => b[0]), buckets.Order(epoch: 1).Select(b => b[0])); // a new order every epoch
    }
}
