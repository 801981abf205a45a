using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Onnx;
using MlNetGuide.Modules;
using MlNetGuide.Modules.Onnx;

namespace MlNetGuide.Estimators.Tests;

/// <summary>
/// Token networks as plain ML.NET zips: the zip's tokenizer model splits the text column and numbers its words as
/// TokenizeIntoWords + MapValueToKey did, so a plain Model.Load scores what the TorchSharp network scores, and
/// NeuralModel.Load rebuilds the network from the zip bit for bit; the rules for the text column and their errors.
/// </summary>
public sealed class TokenPlainZipTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-token-zip-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>TokenColumnTests' options, with short rows: MaxTokens 12, so the edge rows below run past it.</summary>
    private static BinaryNeuralNetworkOptions Options(NetworkArchitecture architecture, int epochs = 4)
    {
        var options = TokenColumnTests.Options(architecture, epochs);
        options.MaxTokens = 12;
        return options;
    }

    /// <summary>Rows that test the tokenizer's edges: empty, spaces only, doubled and outer spaces, unknown words, past MaxTokens.</summary>
    private static List<Sentence> Edges() =>
    [
        new() { Text = "" },
        new() { Text = "   " },
        new() { Text = "zebra quokka" },
        new() { Text = "  the  movie was   great " },
        new() { Text = "awful" },
        new() { Text = "the movie zebra was awful and the plot was very quite really awful great great great great" },
        new() { Text = "great the a movie plot actor scene was and it really very quite the a movie awful" },
    ];

    public static TheoryData<string> Architectures => TokenColumnTests.Architectures;

    private static NetworkArchitecture Architecture(string name) => TokenColumnTests.Architecture(name);

    [Theory]
    [MemberData(nameof(Architectures))]
    public void ATextPipelineSavesAsAPlainZipThatScoresAsTheNetworkDoes(string name)
    {
        // TorchSharp 0.107's Conv1d leaves one tensor wrapper undisposed per module built (its init's result; the GC
        // finalizes it): count what one build of this architecture leaves, then allow exactly that per network built.
        long Live() => TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        long before = Live();
        Architecture(name).Build(12, 1, 15).Dispose();
        long perBuild = Live() - before;
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(TokenColumnTests.Sentences(300, seed: 1));
        // As ML.NET's text samples write it: normalize, tokenize, map to keys; the estimator finds the text column itself.
        var model = ml.Transforms.Text.NormalizeText("Normalized", nameof(Sentence.Text))
            .Append(ml.Transforms.Text.TokenizeIntoWords("Tokens", "Normalized"))
            .Append(ml.Transforms.Conversion.MapValueToKey("Tokens"))
            .Append(ml.BinaryClassification.Trainers.NeuralNetwork(Options(Architecture(name))))
            .Fit(train);
        using var network = model.LastTransformer;
        Assert.Equal("Normalized", network.Scorer.Text?.Column);
        var path = Path.Combine(_dir, "plain.zip");
        long baseline = Live();
        ml.Model.Save(model, train.Schema, path);
        // Saving (the two ONNX models) and rebuilding the network from them leave no tensor behind.
        foreach (var t in (IEnumerable<ITransformer>)NeuralModel.Load(new MLContext(), path, out _)) (t as IDisposable)?.Dispose();
        Assert.Equal(baseline + perBuild, Live());

        var rows = TokenColumnTests.Sentences(60, seed: 2).Concat(Edges()).ToList();
        var test = ml.Data.LoadFromEnumerable(rows);
        var ours = ml.Data.CreateEnumerable<BinaryOut>(model.Transform(test), reuseRowObject: false).ToList();
        var plainContext = new MLContext();
        var plain = plainContext.Model.Load(path, out _);
        Assert.DoesNotContain(Flatten(plain), t => t is NeuralNetworkTransformer); // stock transformers only
        Assert.Equal(2, Flatten(plain).OfType<OnnxTransformer>().Count());          // the tokenizer, then the network
        var theirs = plainContext.Data.CreateEnumerable<BinaryOut>(plain.Transform(test), reuseRowObject: false).ToList();
        Assert.Equal(ours.Count, theirs.Count);
        for (int i = 0; i < ours.Count; i++)
        {
            Assert.True(ours[i].PredictedLabel == theirs[i].PredictedLabel, $"{name} row {i} '{rows[i].Text}': {ours[i].Score} here, {theirs[i].Score} in the plain zip");
            Assert.True(Math.Abs(ours[i].Score - theirs[i].Score) <= 1e-4 * Math.Max(1, Math.Abs(ours[i].Score)), $"{name} row {i} '{rows[i].Text}': {ours[i].Score} vs {theirs[i].Score}");
        }
        // Row by row too (ML.NET runs ONNX Runtime once per row either way).
        var engine = plainContext.Model.CreatePredictionEngine<Sentence, BinaryOut>(plain);
        Assert.True(Math.Abs(engine.Predict(rows[^1]).Score - ours[^1].Score) <= 1e-4 * Math.Max(1, Math.Abs(ours[^1].Score)));

        // NeuralModel.Load rebuilds the TorchSharp network from the plain zip, bit for bit, reading the key column again.
        var rebuilt = NeuralModel.Load(new MLContext(), path, out _);
        using (var again = ((IEnumerable<ITransformer>)rebuilt).OfType<NeuralNetworkTransformer>().Single())
        {
            Assert.Equal(network.WeightsDigest(), again.WeightsDigest());
            Assert.Equal("Normalized", again.Scorer.Text?.Column);
            Assert.Equal(ours.Select(o => o.Score), ml.Data.CreateEnumerable<BinaryOut>(rebuilt.Transform(test), reuseRowObject: false).Select(o => o.Score));
        }
        (plain as IDisposable)?.Dispose();
    }

    [Fact]
    public void SeveralSeparatorsAreSplitAsTokenizeIntoWordsSplitsThem()
    {
        var ml = new MLContext(seed: 1);
        var sentences = TokenColumnTests.Sentences(200, seed: 3);
        foreach (var s in sentences.Where((_, i) => i % 3 == 0)) s.Text = s.Text.Replace(' ', ',');
        var train = ml.Data.LoadFromEnumerable(sentences);
        char[] separators = [' ', ','];
        var pipeline = ml.Transforms.Text.TokenizeIntoWords("Tokens", nameof(Sentence.Text), separators).Append(ml.Transforms.Conversion.MapValueToKey("Tokens"));

        // Split on spaces only (the default), the text does not give these tokens: the network trains, Model.Save refuses.
        var unsaid = pipeline.Append(ml.BinaryClassification.Trainers.NeuralNetwork(Options(NetworkArchitecture.FastText(8), epochs: 1))).Fit(train);
        Assert.Null(unsaid.LastTransformer.Scorer.Text);
        var refused = Assert.Throws<OnnxExportException>(() => ml.Model.Save(unsaid, train.Schema, Path.Combine(_dir, "refused.zip")));
        Assert.Contains("token column 'Tokens'", refused.Message);
        Assert.Contains("TextColumnName", refused.Message);
        Assert.Contains("TokenSeparators", refused.Message);
        Assert.Contains("NeuralModel.Save", refused.Message);
        unsaid.LastTransformer.Dispose();

        var options = Options(NetworkArchitecture.BiGru(8, 8), epochs: 1);
        options.TextColumnName = nameof(Sentence.Text);
        options.TokenSeparators = separators;
        var model = pipeline.Append(ml.BinaryClassification.Trainers.NeuralNetwork(options)).Fit(train);
        var path = Path.Combine(_dir, "separators.zip");
        ml.Model.Save(model, train.Schema, path);
        AssertPlainZipScoresAlike(ml, model, path, [new() { Text = "the,movie,,was great" }, new() { Text = ",awful, " }, new() { Text = ",,," }]);
        model.LastTransformer.Dispose();
    }

    [Fact]
    public void ATextColumnThatDoesNotGiveTheTokensIsRefusedAtFitNamingTheRow()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(TokenColumnTests.Sentences(100, seed: 4));
        var pipeline = ml.Transforms.Text.NormalizeText("Upper", nameof(Sentence.Text), Microsoft.ML.Transforms.Text.TextNormalizingEstimator.CaseMode.Upper)
            .Append(ml.Transforms.Text.TokenizeIntoWords("Tokens", nameof(Sentence.Text)))
            .Append(ml.Transforms.Conversion.MapValueToKey("Tokens"));
        var options = Options(NetworkArchitecture.FastText(8), epochs: 1);
        options.TextColumnName = "Upper"; // not the column TokenizeIntoWords read
        var ex = Assert.Throws<SchemaMismatchException>(() => pipeline.Append(ml.BinaryClassification.Trainers.NeuralNetwork(options)).Fit(train));
        Assert.Contains("'Upper'", ex.Message);
        Assert.Contains("row 0", ex.Message);
        Assert.Contains("'Tokens'", ex.Message);
        Assert.Contains("TokenSeparators", ex.Message);

        options.TextColumnName = "Missing";
        var missing = Assert.Throws<SchemaMismatchException>(() => pipeline.Append(ml.BinaryClassification.Trainers.NeuralNetwork(options)).Fit(train));
        Assert.Contains("'Missing'", missing.Message);
        Assert.Contains("'Text'", missing.Message); // the columns that are there

        options.TextColumnName = nameof(Sentence.Label);
        var notText = Assert.Throws<SchemaMismatchException>(() => pipeline.Append(ml.BinaryClassification.Trainers.NeuralNetwork(options)).Fit(train));
        Assert.Contains("Boolean", notText.Message);

        // Separators without the space: TokenizeIntoWords trims spaces around each piece ("a, b" on ',' is "a", "b"),
        // which the zip's ONNX model cannot; refused when named, and the network trains without a text column otherwise.
        options.TextColumnName = nameof(Sentence.Text);
        options.TokenSeparators = [','];
        var commas = ml.Transforms.Text.TokenizeIntoWords("Tokens", nameof(Sentence.Text), [',']).Append(ml.Transforms.Conversion.MapValueToKey("Tokens"));
        var noSpace = Assert.Throws<ArgumentException>(() => commas.Append(ml.BinaryClassification.Trainers.NeuralNetwork(options)).Fit(train));
        Assert.Contains("TokenSeparators", noSpace.Message);
        Assert.Contains("trim", noSpace.Message);
        options.TextColumnName = null;
        using (var trained = commas.Append(ml.BinaryClassification.Trainers.NeuralNetwork(options)).Fit(train).LastTransformer)
            Assert.Null(trained.Scorer.Text);
        options.TokenSeparators = null;

        // Found without being named: the last text column that gives the tokens (Text; Upper does not).
        options.TextColumnName = null;
        var model = pipeline.Append(ml.BinaryClassification.Trainers.NeuralNetwork(options)).Fit(train);
        Assert.Equal(nameof(Sentence.Text), model.LastTransformer.Scorer.Text?.Column);
        model.LastTransformer.Dispose();
    }

    [Fact]
    public void TextOptionsOnANumericColumnAreRefused()
    {
        var ml = new MLContext(seed: 1);
        var numbers = ml.Data.LoadFromEnumerable(Synthetic.Rows(50));
        var ex = Assert.Throws<ArgumentException>(() => ml.BinaryClassification.Trainers.NeuralNetwork(new BinaryNeuralNetworkOptions
        {
            LabelColumnName = nameof(TabularRow.Positive), Architecture = NetworkArchitecture.Mlp(4), Epochs = 1, TextColumnName = "Text",
        }).Fit(numbers));
        Assert.Contains("TextColumnName", ex.Message);
        Assert.Contains("'Features'", ex.Message);
    }

    [Fact]
    public void ASequenceModuleWithoutAnExportRuleIsRefusedByModelSaveAndSavesOnceOneIsRegistered()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(TokenColumnTests.Sentences(100, seed: 5));
        var options = Options(NetworkArchitecture.Custom("test-bag-of-embeddings", r => new BagOfEmbeddings(r.VocabularySize, r.Outputs)), epochs: 1);
        var model = ml.Transforms.Text.TokenizeIntoWords("Tokens", nameof(Sentence.Text)).Append(ml.Transforms.Conversion.MapValueToKey("Tokens"))
            .Append(ml.BinaryClassification.Trainers.NeuralNetwork(options)).Fit(train);
        var ex = Assert.Throws<OnnxExportException>(() => ml.Model.Save(model, train.Schema, Path.Combine(_dir, "custom.zip")));
        Assert.Contains(typeof(BagOfEmbeddings).FullName!, ex.Message);
        Assert.Contains("OnnxExporter.Register<BagOfEmbeddings>", ex.Message);
        Assert.Contains("NeuralModel.Save", ex.Message);

        // With a rule registered, the same network saves as a plain zip that scores as it does.
        OnnxExporter.Register<BagOfEmbeddings>((g, m, ids) =>
        {
            // TorchSharp's Embedding.weight getter wraps the tensor anew: take the registered parameter, as the built-in rules do.
            var table = m.Embedding.named_parameters().Single(p => p.name == "weight").parameter;
            var summed = g.Node("ReduceSum", [g.Node("Gather", [g.Weight(table), ids]), g.Int64s("time", 1)], ("keepdims", 0L));
            return g.Node("Gemm", [summed, g.Weight(m.Output.weight!), g.Weight(m.Output.bias!)], ("transB", 1L));
        });
        var path = Path.Combine(_dir, "custom-with-rule.zip");
        ml.Model.Save(model, train.Schema, path);
        AssertPlainZipScoresAlike(ml, model, path, TokenColumnTests.Sentences(30, seed: 9).Append(new Sentence { Text = "" }).ToList());
        model.LastTransformer.Dispose();
    }

    [Fact]
    public void AZipWhoseTokenizerWasChangedIsRefusedByNeuralModelLoad()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(TokenColumnTests.Sentences(100, seed: 6));
        var model = ml.Transforms.Text.TokenizeIntoWords("Tokens", nameof(Sentence.Text)).Append(ml.Transforms.Conversion.MapValueToKey("Tokens"))
            .Append(ml.BinaryClassification.Trainers.NeuralNetwork(Options(NetworkArchitecture.FastText(8), epochs: 1))).Fit(train);
        var path = Path.Combine(_dir, "model.zip");
        ml.Model.Save(model, train.Schema, path);
        model.LastTransformer.Dispose();
        // Swap two words in the tokenizer's vocabulary: ONNX Runtime would number "great" as "awful".
        var tampered = Path.Combine(_dir, "tampered.zip");
        File.Copy(path, tampered);
        using (var zip = System.IO.Compression.ZipFile.Open(tampered, System.IO.Compression.ZipArchiveMode.Update))
        {
            var entry = zip.Entries.Where(e => e.Name == "OnnxModel").OrderBy(e => e.FullName, StringComparer.Ordinal).First();
            byte[] bytes;
            using (var s = entry.Open()) { using var m = new MemoryStream(); s.CopyTo(m); bytes = m.ToArray(); }
            var onnx = Onnx.ModelProto.Parser.ParseFrom(bytes, 4, bytes.Length - 4);
            var keys = onnx.Graph.Node.Single(n => n.OpType == "LabelEncoder").Attribute.Single(a => a.Name == "keys_strings").Strings;
            int great = keys.Select(k => k.ToStringUtf8()).ToList().IndexOf("great"), awful = keys.Select(k => k.ToStringUtf8()).ToList().IndexOf("awful");
            Assert.True(great > 0 && awful > 0);
            (keys[great], keys[awful]) = (keys[awful], keys[great]);
            var changed = Google.Protobuf.MessageExtensions.ToByteArray(onnx);
            entry.Delete();
            using var w = zip.CreateEntry(entry.FullName).Open();
            w.Write(BitConverter.GetBytes(changed.Length));
            w.Write(changed);
        }
        var ex = Assert.Throws<ModelFormatException>(() => NeuralModel.Load(new MLContext(), tampered, out _));
        Assert.Contains("tokenizer model", ex.Message);
        Assert.Contains("Refused", ex.Message);

        // Without its tokenizer model, the network (which names a text column) is refused too.
        var headless = Path.Combine(_dir, "headless.zip");
        File.Copy(path, headless);
        using (var zip = System.IO.Compression.ZipFile.Open(headless, System.IO.Compression.ZipArchiveMode.Update))
            zip.Entries.Where(e => e.Name == "OnnxModel").OrderBy(e => e.FullName, StringComparer.Ordinal).First().Delete();
        var missing = Assert.Throws<ModelFormatException>(() => NeuralModel.Load(new MLContext(), headless, out _));
        Assert.Contains("no MlNetGuide tokenizer model comes before it", missing.Message);
    }

    /// <summary>A plain Model.Load of <paramref name="path"/>, in a fresh MLContext, scores <paramref name="rows"/> as <paramref name="model"/> does (within 1e-4 relative).</summary>
    private static void AssertPlainZipScoresAlike(MLContext ml, ITransformer model, string path, List<Sentence> rows)
    {
        var test = ml.Data.LoadFromEnumerable(rows);
        var ours = ml.Data.CreateEnumerable<BinaryOut>(model.Transform(test), reuseRowObject: false).Select(o => o.Score).ToList();
        var plain = new MLContext().Model.Load(path, out _);
        try
        {
            var theirs = ml.Data.CreateEnumerable<BinaryOut>(plain.Transform(test), reuseRowObject: false).Select(o => o.Score).ToList();
            Assert.Equal(rows.Count, theirs.Count);
            for (int i = 0; i < rows.Count; i++)
                Assert.True(Math.Abs(ours[i] - theirs[i]) <= 1e-4 * Math.Max(1, Math.Abs(ours[i])), $"row {i} '{rows[i].Text}': {ours[i]} vs {theirs[i]}");
        }
        finally
        {
            (plain as IDisposable)?.Dispose();
        }
    }

    private static IEnumerable<ITransformer> Flatten(ITransformer t) =>
        t is IEnumerable<ITransformer> chain ? chain.SelectMany(Flatten) : [t];

    /// <summary>A sequence module of one's own, with no ONNX export rule.</summary>
    private sealed class BagOfEmbeddings : TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>, ITokenSequenceModule
    {
        private readonly TorchSharp.Modules.Embedding embedding;
        private readonly TorchSharp.Modules.Linear output;

        public TorchSharp.Modules.Embedding Embedding => embedding;

        public TorchSharp.Modules.Linear Output => output;

        public BagOfEmbeddings(long vocabulary, long outputs) : base(nameof(BagOfEmbeddings))
        {
            embedding = TorchSharp.torch.nn.Embedding(vocabulary, 8, padding_idx: 0);
            output = TorchSharp.torch.nn.Linear(8, outputs);
            RegisterComponents();
        }

        public long VocabularySize => embedding.weight!.shape[0];

        public long Outputs => output.weight!.shape[0];

        public override TorchSharp.torch.Tensor forward(TorchSharp.torch.Tensor ids)
        {
            using var scope = TorchSharp.torch.NewDisposeScope();
            return output.call(embedding.call(ids).sum(1)).MoveToOuterDisposeScope();
        }
    }
}
