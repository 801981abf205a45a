using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules.Tests;

/// <summary>
/// The sequence modules (d2l 10–11, 16): token ids [batch, time] with 0 as padding in, logits out. Values checked by
/// hand on tiny nets; padding must never change a row's logits; bad ids are refused with their value and the vocabulary.
/// </summary>
public class SequenceModulesTests
{
    private const long Vocabulary = 20;

    /// <summary>One small net of each kind, in eval mode (dropout off), seeded.</summary>
    public static TheoryData<string> Nets => new() { "fasttext", "textcnn", "lstm", "gru", "transformer" };

    internal static nn.Module<Tensor, Tensor> Build(string kind, long outputs = 3)
    {
        manual_seed(7);
        nn.Module<Tensor, Tensor> net = kind switch
        {
            "fasttext" => new FastTextClassifier(Vocabulary, outputs, embeddingSize: 8),
            "textcnn" => new TextCnn(Vocabulary, outputs, embeddingSize: 8, kernelSizes: [2, 3, 5], channels: [4, 3, 2]),
            "lstm" => new BiRnnEncoder(Vocabulary, outputs, RecurrentCell.Lstm, embeddingSize: 8, hiddenSize: 6, layers: 2),
            "gru" => new BiRnnEncoder(Vocabulary, outputs, RecurrentCell.Gru, embeddingSize: 8, hiddenSize: 6, layers: 2),
            "transformer" => new TransformerTextEncoder(Vocabulary, outputs, modelSize: 8, heads: 2, feedForwardSize: 16, layers: 2),
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };
        net.eval();
        return net;
    }

    private static Tensor Ids(long[,] rows) => tensor(rows);

    [Fact]
    public void MaskedMeanIsTheMeanOverTokensAndZerosForARowOfPadding()
    {
        using var scope = NewDisposeScope();
        using var pool = new MaskedMeanPooling();
        var x = tensor(new float[] { 1, 2, 3, 4, 100, 100, /* row 2 */ 7, 7, 8, 8, 9, 9 }).reshape(2, 3, 2);
        var mask = tensor(new[] { true, true, false, false, false, false }).reshape(2, 3);
        var pooled = pool.call(x, mask);
        // Row 1: ((1, 2) + (3, 4)) / 2 = (2, 3); the padded (100, 100) is left out. Row 2 has no token: zeros, not NaN.
        TensorAssert.Equal(tensor(new float[] { 2, 3, 0, 0 }).reshape(2, 2), pooled);
    }

    [Fact]
    public void FastTextLogitsAreTheDecoderOfTheMeanEmbedding()
    {
        using var scope = NewDisposeScope();
        using var net = new FastTextClassifier(vocabularySize: 4, outputs: 2, embeddingSize: 2);
        var state = StateDict.Get(net);
        using (no_grad())
        {
            state["embedding.weight"].copy_(tensor(new float[] { 0, 0, 1, 2, 3, 4, 5, 6 }).reshape(4, 2));
            state["decoder.weight"].copy_(tensor(new float[] { 1, 0, 1, 1 }).reshape(2, 2)); // (e0, e0 + e1)
            state["decoder.bias"].copy_(tensor(new float[] { 0, 10 }));
        }
        var logits = net.call(Ids(new long[,] { { 1, 3, 0 }, { 2, 2, 2 }, { 0, 0, 0 } }));
        // Row 1: mean of (1, 2) and (5, 6) = (3, 4) -> (3, 17). Row 2: (3, 4) -> (3, 17). Row 3: zeros -> the bias (0, 10).
        TensorAssert.Equal(tensor(new float[] { 3, 17, 3, 17, 0, 10 }).reshape(3, 2), logits);
    }

    [Fact]
    public void TextCnnTakesTheMaxOverWindowsThatStartOnATokenAndReadsZerosPastTheEnd()
    {
        using var scope = NewDisposeScope();
        using var net = new TextCnn(vocabularySize: 3, outputs: 1, embeddingSize: 1, kernelSizes: [2], channels: [1], dropout: 0);
        net.eval();
        var state = StateDict.Get(net);
        using (no_grad())
        {
            state["embedding.weight"].copy_(tensor(new float[] { 0, -3, 2 }).reshape(3, 1)); // pad, token 1 = -3, token 2 = 2
            state["convs.0.weight"].copy_(tensor(new float[] { 1, 1 }).reshape(1, 1, 2));     // window sum
            state["convs.0.bias"].copy_(tensor(new float[] { 0.5f }));
            state["decoder.weight"].copy_(ones(1, 1));
            state["decoder.bias"].copy_(zeros(1));
        }
        var logits = net.call(Ids(new long[,] { { 1, 1, 0, 0 }, { 1, 2, 0, 0 } }));
        // Row 1: windows at its tokens give -3-3+.5 and -3+0+.5; a window starting on padding (0+0+.5 = .5) would win
        // an unmasked max. ReLU(max) = 0. Row 2: -3+2+.5 = -.5 and 2+0+.5 = 2.5 (the last token's window reads a pad).
        TensorAssert.Equal(tensor(new float[] { 0, 2.5f }).reshape(2, 1), logits);
        // No padding in the batch: the window at the last token still reads one zero, inside the module.
        TensorAssert.Equal(tensor(new float[] { 2.5f }).reshape(1, 1), net.call(Ids(new long[,] { { 1, 2 } })));
    }

    [Fact]
    public void PositionalEncodingIsTheBooksSinesAndCosines()
    {
        using var scope = NewDisposeScope();
        var p = PositionalEncoding.Table(3, 4);
        double f = Math.Pow(10000, 2.0 / 4); // the second frequency: t / 10000^(2/4) = t / 100
        var expected = new[]
        {
            0, 1, 0, 1,
            Math.Sin(1), Math.Cos(1), Math.Sin(1 / f), Math.Cos(1 / f),
            Math.Sin(2), Math.Cos(2), Math.Sin(2 / f), Math.Cos(2 / f),
        };
        TensorAssert.Close(tensor(expected.Select(v => (float)v).ToArray()).reshape(3, 4), p, atol: 1e-6);
        using var pe = new PositionalEncoding(4);
        TensorAssert.Close(p.unsqueeze(0).add(1), pe.call(ones(1, 3, 4)), atol: 1e-6);
        Assert.Throws<ArgumentOutOfRangeException>(() => new PositionalEncoding(5));
        Assert.Empty(pe.parameters());
        Assert.Empty(pe.state_dict());
    }

    [Theory]
    [MemberData(nameof(Nets))]
    public void AppendingPaddingLeavesEachRowsLogitsUnchanged(string kind)
    {
        using var scope = NewDisposeScope();
        using var net = Build(kind);
        using var _ = no_grad();
        // Rows of 6, 1 (shorter than the widest kernel), 3 tokens and a row of padding alone, with and without more padding.
        var ids = Ids(new long[,] { { 5, 3, 7, 1, 19, 2 }, { 4, 0, 0, 0, 0, 0 }, { 8, 8, 9, 0, 0, 0 }, { 0, 0, 0, 0, 0, 0 } });
        var padded = nn.functional.pad(ids, [0, 5]);
        var logits = net.call(ids);
        Assert.Equal(new long[] { 4, 3 }, logits.shape);
        Assert.True(logits.isfinite().all().item<bool>(), $"{kind}: non-finite logits\n{logits.ToString(TorchSharp.TensorStringStyle.Numpy)}");
        TensorAssert.Close(logits, net.call(padded));
        // Each row alone, trimmed to its tokens: batching and the batch's length change nothing either.
        TensorAssert.Close(logits[1..2], net.call(Ids(new long[,] { { 4 } })));
        TensorAssert.Close(logits[2..3], net.call(Ids(new long[,] { { 8, 8, 9 } })));
        // And the padding does not hide the tokens: different tokens give different logits.
        Assert.False(logits[1].allclose(logits[2]), $"{kind}: rows with different tokens gave the same logits");
    }

    [Theory]
    [MemberData(nameof(Nets))]
    public void ABatchWithNoTimeStepsGivesTheLogitsOfARowOfPadding(string kind)
    {
        using var scope = NewDisposeScope();
        using var net = Build(kind);
        using var _ = no_grad();
        var empty = net.call(zeros(2, 0, ScalarType.Int64));
        TensorAssert.Close(net.call(zeros(2, 1, ScalarType.Int64)), empty);
    }

    [Theory]
    [MemberData(nameof(Nets))]
    public void BadIdsAreRefusedWithTheIdAndTheVocabulary(string kind)
    {
        using var net = Build(kind);
        long live = TensorAssert.LiveTensors;
        using (var floats = ones(2, 3))
        {
            var ex = Assert.Throws<ArgumentException>(() => net.call(floats));
            Assert.Contains("int64", ex.Message);
            Assert.Contains("Float32", ex.Message);
        }
        using (var tooBig = tensor(new long[,] { { 1, 2, Vocabulary + 5 } }))
        {
            var ex = Assert.Throws<ArgumentException>(() => net.call(tooBig));
            Assert.Contains($"token id {Vocabulary + 5}", ex.Message);
            Assert.Contains($"vocabulary of {Vocabulary}", ex.Message);
        }
        using (var edge = tensor(new long[,] { { Vocabulary } })) // V itself is one past the last id
            Assert.Contains($"token id {Vocabulary},", Assert.Throws<ArgumentException>(() => net.call(edge)).Message);
        using (var negative = tensor(new long[,] { { 1, -1 } }))
            Assert.Contains("token id -1", Assert.Throws<ArgumentException>(() => net.call(negative)).Message);
        using (var flat = tensor(new long[] { 1, 2 }))
            Assert.Contains("[batch, time]", Assert.Throws<ArgumentException>(() => net.call(flat)).Message);
        Assert.Equal(live, TensorAssert.LiveTensors); // the refusals leak nothing
    }

    [Theory]
    [MemberData(nameof(Nets))]
    public void ForwardAndBackwardLeaveNoLiveTensorsAndReachEveryParameter(string kind)
    {
        using var net = Build(kind);
        net.train();
        long live = TensorAssert.LiveTensors;
        using (var scope = NewDisposeScope())
        {
            var ids = Ids(new long[,] { { 5, 3, 7, 1 }, { 4, 2, 0, 0 } });
            net.call(ids).square().sum().backward();
        }
        Assert.Equal(live, TensorAssert.LiveTensors);
        foreach (var (name, p) in net.named_parameters())
            Assert.True(p.grad is not null, $"{kind}: {name} got no gradient");
        // The padding row of the embedding gets none (nn.Embedding's padding_idx), so it stays zero while training.
        var embedding = net.named_parameters().Single(p => p.name == "embedding.weight").parameter;
        Assert.Equal(0f, embedding.grad![0].abs().sum().item<float>());
        Assert.Equal(0f, embedding[0].abs().sum().item<float>());
        foreach (var (_, p) in net.named_parameters()) p.grad!.Dispose();
    }

    [Fact]
    public void BiRnnReadsEachRowBackwardFromItsLastTokenAsAnUnpaddedRnnDoes()
    {
        // The packed module on a padded batch equals the same layers run by hand, without packing, on each row alone.
        using var scope = NewDisposeScope();
        foreach (var cell in new[] { RecurrentCell.Lstm, RecurrentCell.Gru })
        {
            manual_seed(3);
            using var net = new BiRnnEncoder(Vocabulary, 2, cell, embeddingSize: 5, hiddenSize: 4, layers: 1);
            net.eval();
            using var _ = no_grad();
            var logits = net.call(Ids(new long[,] { { 3, 9, 4, 0, 0 }, { 6, 0, 0, 0, 0 } }));
            var embedding = (Embedding)net.named_children().Single(c => c.name == "embedding").module;
            var decoder = (Linear)net.named_children().Single(c => c.name == "decoder").module;
            foreach (var (row, tokens) in new[] { (0, new long[] { 3, 9, 4 }), (1, new long[] { 6 }) })
            {
                var x = embedding.call(tensor(tokens).unsqueeze(0));
                var states = net.Encoder switch
                {
                    LSTM lstm => lstm.call(x).Item1,
                    GRU gru => gru.call(x).Item1,
                    _ => throw new InvalidOperationException(),
                };
                TensorAssert.Close(decoder.call(states.mean([1])), logits[row..(row + 1)]);
            }
        }
    }

    [Fact]
    public void StateDictKeysArePyTorchsNames()
    {
        string[] Keys(string kind) { using var net = Build(kind); return [.. StateDict.Get(net).Keys]; }
        Assert.Equal(["embedding.weight", "decoder.weight", "decoder.bias"], Keys("fasttext"));
        Assert.Equal(["embedding.weight", "convs.0.weight", "convs.0.bias", "convs.1.weight", "convs.1.bias",
            "convs.2.weight", "convs.2.bias", "decoder.weight", "decoder.bias"], Keys("textcnn"));
        string[] rnn = ["embedding.weight",
            "encoder.weight_ih_l0", "encoder.weight_hh_l0", "encoder.bias_ih_l0", "encoder.bias_hh_l0",
            "encoder.weight_ih_l0_reverse", "encoder.weight_hh_l0_reverse", "encoder.bias_ih_l0_reverse", "encoder.bias_hh_l0_reverse",
            "encoder.weight_ih_l1", "encoder.weight_hh_l1", "encoder.bias_ih_l1", "encoder.bias_hh_l1",
            "encoder.weight_ih_l1_reverse", "encoder.weight_hh_l1_reverse", "encoder.bias_ih_l1_reverse", "encoder.bias_hh_l1_reverse",
            "decoder.weight", "decoder.bias"];
        Assert.Equal(rnn, Keys("lstm"));
        Assert.Equal(rnn, Keys("gru"));
        string[] Layer(int k) => [.. new[] { "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
            "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
            "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias" }.Select(n => $"layers.{k}.{n}")];
        Assert.Equal(["embedding.weight", .. Layer(0), .. Layer(1), "decoder.weight", "decoder.bias"], Keys("transformer"));
    }

    [Fact]
    public void ParameterShapesFollowTheOptions()
    {
        using var scope = NewDisposeScope();
        using var lstm = Build("lstm");
        var s = StateDict.Get(lstm);
        Assert.Equal(new long[] { 4 * 6, 8 }, s["encoder.weight_ih_l0"].shape);         // gates i, f, g, o stacked
        Assert.Equal(new long[] { 4 * 6, 2 * 6 }, s["encoder.weight_ih_l1"].shape);     // layer 2 reads both directions
        Assert.Equal(new long[] { 3, 2 * 6 }, s["decoder.weight"].shape);
        using var gru = Build("gru");
        Assert.Equal(new long[] { 3 * 6, 8 }, StateDict.Get(gru)["encoder.weight_ih_l0"].shape); // r, z, n
        using var cnn = Build("textcnn");
        var c = StateDict.Get(cnn);
        Assert.Equal(new long[] { 3, 8, 3 }, c["convs.1.weight"].shape);
        Assert.Equal(new long[] { 3, 4 + 3 + 2 }, c["decoder.weight"].shape);
        using var transformer = Build("transformer");
        var t = StateDict.Get(transformer);
        Assert.Equal(new long[] { 3 * 8, 8 }, t["layers.1.self_attn.in_proj_weight"].shape);
        Assert.Equal(new long[] { 16, 8 }, t["layers.0.linear1.weight"].shape);
        Assert.Equal(new long[] { Vocabulary, 8 }, t["embedding.weight"].shape);
    }

    [Theory]
    [MemberData(nameof(Nets))]
    public void EachNetSaysItTakesTokenIdsAndIsNotExportedAsFloatRows(string kind)
    {
        using var net = Build(kind);
        var sequence = Assert.IsAssignableFrom<ITokenSequenceModule>(net);
        Assert.Equal(Vocabulary, sequence.VocabularySize);
        Assert.Equal(3, sequence.Outputs);
        Assert.Contains("ExportTokenSequences", MlNetGuide.Modules.Onnx.OnnxExporter.Refusal(net, 9));
        Assert.Null(MlNetGuide.Modules.Onnx.OnnxExporter.Refusal(nn.Sequential(nn.Linear(9, 2)), 9)); // float modules still export
    }

    [Fact]
    public void ConstructorsRefuseImpossibleShapes()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new FastTextClassifier(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new FastTextClassifier(10, outputs: 0));
        Assert.Contains("one channel count per kernel width",
            Assert.Throws<ArgumentException>(() => new TextCnn(10, kernelSizes: [3, 4], channels: [5])).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new TextCnn(10, dropout: 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BiRnnEncoder(10, layers: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BiRnnEncoder(10, cell: (RecurrentCell)7));
        Assert.Contains("multiple of the 3 heads",
            Assert.Throws<ArgumentOutOfRangeException>(() => new TransformerTextEncoder(10, modelSize: 8, heads: 3)).Message);
    }
}
