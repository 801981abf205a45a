using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// d2l 11.7's Transformer encoder as a text classifier: token ids → <c>nn.Embedding</c> (padding id 0) scaled by √d
/// → sinusoidal <see cref="PositionalEncoding"/> → dropout → a stack of PyTorch's <c>nn.TransformerEncoderLayer</c>
/// (multi-head self-attention with a key-padding mask, add &amp; norm, position-wise ReLU feed-forward, add &amp;
/// norm: d2l 11.7.2's block, post-norm) → the mean over the row's tokens → a linear <c>decoder</c>.
/// </summary>
/// <remarks>
/// <para>Input and output as for every sequence module (see <see cref="TextCnn"/>): int64 ids [batch, time], 0 is
/// padding; logits [batch, outputs].</para>
/// <para><b>Masking.</b> Padding positions are masked as attention keys (<c>src_key_padding_mask</c>), so no token
/// attends to padding and appending padding leaves the tokens' states unchanged; the pooling leaves padding out. A
/// row of padding alone would mask every key (a softmax over nothing, NaN), so such a row is not masked at all: its
/// states are computed and then pooled to zeros.</para>
/// <para>TorchSharp's <c>TransformerEncoderLayer</c> is libtorch's C++ module, which is sequence-first and has no
/// <c>batch_first</c>; the batch is transposed around the stack. PyTorch's <c>nn.TransformerEncoderLayer(...,
/// batch_first=True)</c> computes the same thing.</para>
/// <para>State dict, as PyTorch's <c>nn.TransformerEncoder</c> names its layers: <c>embedding.weight</c>;
/// <c>layers.{k}.self_attn.in_proj_weight</c> [3d, d] (rows q, k, v), <c>layers.{k}.self_attn.in_proj_bias</c>,
/// <c>layers.{k}.self_attn.out_proj.weight</c>/<c>.bias</c>, <c>layers.{k}.linear1.*</c>, <c>layers.{k}.linear2.*</c>,
/// <c>layers.{k}.norm1.*</c>, <c>layers.{k}.norm2.*</c>; <c>decoder.weight</c>, <c>decoder.bias</c>.</para>
/// </remarks>
public sealed class TransformerTextEncoder : nn.Module<Tensor, Tensor>, ITokenSequenceModule
{
    private readonly Embedding embedding;
    private readonly PositionalEncoding positions;
    private readonly Dropout dropout;
    private readonly ModuleList<TransformerEncoderLayer> layers;
    private readonly MaskedMeanPooling pool;
    private readonly Linear decoder;

    /// <summary>Creates the encoder (d = 128, 4 heads, feed-forward 256, 2 layers, dropout 0.1 by default).</summary>
    /// <param name="vocabularySize">Ids 0 to V − 1; 0 is padding, so V is the number of tokens + 1.</param>
    /// <param name="outputs">Logits per row (classes).</param>
    /// <param name="modelSize">d: the width of embeddings and states; even, and a multiple of <paramref name="heads"/>.</param>
    /// <param name="heads">Attention heads per layer.</param>
    /// <param name="feedForwardSize">Hidden width of each layer's feed-forward network.</param>
    /// <param name="layers">Encoder layers.</param>
    /// <param name="dropout">Dropout after the positional encoding and inside each layer.</param>
    public TransformerTextEncoder(long vocabularySize, long outputs = 2, long modelSize = 128, long heads = 4,
        long feedForwardSize = 256, long layers = 2, double dropout = 0.1)
        : base(TorchSharpRuntime.Checked(nameof(TransformerTextEncoder)))
    {
        VocabularySize = TokenIds.VocabularySize(vocabularySize, nameof(TransformerTextEncoder));
        Outputs = TokenIds.Positive(outputs, nameof(outputs), nameof(TransformerTextEncoder));
        ModelSize = TokenIds.Positive(modelSize, nameof(modelSize), nameof(TransformerTextEncoder));
        Heads = TokenIds.Positive(heads, nameof(heads), nameof(TransformerTextEncoder));
        FeedForwardSize = TokenIds.Positive(feedForwardSize, nameof(feedForwardSize), nameof(TransformerTextEncoder));
        Layers = TokenIds.Positive(layers, nameof(layers), nameof(TransformerTextEncoder));
        Dropout = TokenIds.Probability(dropout, nameof(dropout), nameof(TransformerTextEncoder));
        if (modelSize % heads != 0 || modelSize % 2 != 0)
            throw new ArgumentOutOfRangeException(nameof(modelSize), modelSize,
                $"TransformerTextEncoder needs a model size that is even (sines and cosines) and a multiple of the {heads} heads.");

        embedding = nn.Embedding(vocabularySize, modelSize, padding_idx: TokenIds.Padding);
        positions = new PositionalEncoding(modelSize);
        this.dropout = nn.Dropout(dropout);
        this.layers = nn.ModuleList(Enumerable.Range(0, (int)layers)
            .Select(_ => nn.TransformerEncoderLayer(modelSize, heads, feedForwardSize, dropout)).ToArray());
        pool = new MaskedMeanPooling();
        decoder = nn.Linear(modelSize, outputs);
        RegisterComponents();
    }

    /// <summary>Ids 0 to <c>VocabularySize − 1</c> are accepted; 0 is padding.</summary>
    public long VocabularySize { get; }

    /// <summary>Logits per row.</summary>
    public long Outputs { get; }

    /// <summary>d: the width of embeddings and states.</summary>
    public long ModelSize { get; }

    /// <summary>Attention heads per layer.</summary>
    public long Heads { get; }

    /// <summary>Hidden width of each layer's feed-forward network.</summary>
    public long FeedForwardSize { get; }

    /// <summary>Encoder layers.</summary>
    public long Layers { get; }

    /// <summary>Dropout after the positional encoding and inside each layer.</summary>
    public double Dropout { get; }

    /// <summary>Maps token ids [batch, time] (int64, 0 is padding) to logits [batch, outputs].</summary>
    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        ids = TokenIds.Checked(ids, VocabularySize, nameof(TransformerTextEncoder));
        var mask = TokenIds.Mask(ids);
        // 11.7: the embedding is scaled by √d so that it and the positional encoding (values in [-1, 1]) are of a size.
        using var scale = Math.Sqrt(ModelSize).ToScalar();
        var x = dropout.call(positions.call(embedding.call(ids).mul(scale)));
        var keyPadding = mask.logical_not().logical_and(mask.any(1, keepdim: true)); // an all-padding row masks nothing
        var states = x.transpose(0, 1);                                               // [time, batch, d]: libtorch's layout
        foreach (var layer in layers) states = layer.call(states, null!, keyPadding);
        return decoder.call(pool.call(states.transpose(0, 1), mask)).MoveToOuterDisposeScope();
    }
}
