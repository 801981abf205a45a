using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// d2l 16.3 textCNN (Kim, 2014): token ids → <c>nn.Embedding</c> (padding id 0) → one <c>nn.Conv1d</c> per kernel
/// width → ReLU → max over time → concatenation → dropout → a linear <c>decoder</c> to the logits.
/// </summary>
/// <remarks>
/// <para><b>The contract of every sequence module here</b> (<see cref="FastTextClassifier"/>, <see cref="TextCnn"/>,
/// <see cref="BiRnnEncoder"/>, <see cref="TransformerTextEncoder"/>): the input is an int64 tensor of token ids
/// [batch, time]; id 0 is padding, ids 1 to V − 1 are tokens; a position holds a token where <c>ids != 0</c>. The
/// output is logits [batch, outputs]. Appending padding to a row leaves its logits unchanged; a row of padding alone
/// (or a batch with no time steps) gives finite logits. An id outside [0, V) is an <see cref="ArgumentException"/>
/// that names it and V.</para>
/// <para><b>Masking.</b> Each position t that holds a token starts one window [t, t + k) per kernel width k; the
/// sequence is padded on the right by k_max − 1 zero vectors first, so rows shorter than the widest kernel work and
/// the windows near a row's end read zeros however much padding follows. Windows that start on padding are left out
/// of the max (multiplied by 0 after the ReLU: ReLU(max x) = max ReLU(x) ≥ 0, so this is d2l's max-then-ReLU over
/// the row's own windows, and 0 for a row of padding). Pad embeddings are zeroed before the convolutions, so a loaded
/// weight row 0 that is not zero changes nothing. Unlike d2l, there is one trainable embedding, not a frozen GloVe
/// copy beside it.</para>
/// <para>State dict, as PyTorch's modules name it: <c>embedding.weight</c>, <c>convs.{i}.weight</c>
/// [channels_i, d, k_i], <c>convs.{i}.bias</c>, <c>decoder.weight</c> [outputs, Σ channels], <c>decoder.bias</c>.</para>
/// </remarks>
public sealed class TextCnn : nn.Module<Tensor, Tensor>, ITokenSequenceModule
{
    private readonly Embedding embedding;
    private readonly ModuleList<Conv1d> convs;
    private readonly Dropout dropout;
    private readonly Linear decoder;
    private readonly long[] _kernelSizes;
    private readonly long[] _channels;

    /// <summary>Creates the network; the defaults are d2l 16.3's (d = 100, widths 3, 4, 5 with 100 channels each, dropout 0.5).</summary>
    /// <param name="vocabularySize">Ids 0 to V − 1; 0 is padding, so V is the number of tokens + 1.</param>
    /// <param name="outputs">Logits per row (classes).</param>
    /// <param name="embeddingSize">The width d of each token's vector.</param>
    /// <param name="kernelSizes">The convolutions' widths in tokens (default 3, 4, 5).</param>
    /// <param name="channels">Output channels per convolution, one per width (default 100 each).</param>
    /// <param name="dropout">Dropout before the decoder.</param>
    public TextCnn(long vocabularySize, long outputs = 2, long embeddingSize = 100,
        IReadOnlyList<long>? kernelSizes = null, IReadOnlyList<long>? channels = null, double dropout = 0.5)
        : base(TorchSharpRuntime.Checked(nameof(TextCnn)))
    {
        VocabularySize = TokenIds.VocabularySize(vocabularySize, nameof(TextCnn));
        Outputs = TokenIds.Positive(outputs, nameof(outputs), nameof(TextCnn));
        EmbeddingSize = TokenIds.Positive(embeddingSize, nameof(embeddingSize), nameof(TextCnn));
        _kernelSizes = [.. kernelSizes ?? [3, 4, 5]];
        _channels = [.. channels ?? Enumerable.Repeat(100L, _kernelSizes.Length)];
        if (_kernelSizes.Length == 0)
            throw new ArgumentException("TextCnn needs at least one kernel width.", nameof(kernelSizes));
        if (_channels.Length != _kernelSizes.Length)
            throw new ArgumentException(
                $"TextCnn needs one channel count per kernel width: {_kernelSizes.Length} widths, {_channels.Length} channel counts.", nameof(channels));
        foreach (var k in _kernelSizes) TokenIds.Positive(k, nameof(kernelSizes), nameof(TextCnn));
        foreach (var c in _channels) TokenIds.Positive(c, nameof(channels), nameof(TextCnn));
        Dropout = TokenIds.Probability(dropout, nameof(dropout), nameof(TextCnn));

        embedding = nn.Embedding(vocabularySize, embeddingSize, padding_idx: TokenIds.Padding);
        convs = nn.ModuleList(_kernelSizes.Zip(_channels, (k, c) => nn.Conv1d(embeddingSize, c, k)).ToArray());
        this.dropout = nn.Dropout(dropout);
        decoder = nn.Linear(_channels.Sum(), outputs);
        RegisterComponents();
    }

    /// <summary>Ids 0 to <c>VocabularySize − 1</c> are accepted; 0 is padding.</summary>
    public long VocabularySize { get; }

    /// <summary>Logits per row.</summary>
    public long Outputs { get; }

    /// <summary>The width of a token's vector.</summary>
    public long EmbeddingSize { get; }

    /// <summary>The convolutions' widths, in tokens.</summary>
    public IReadOnlyList<long> KernelSizes => _kernelSizes;

    /// <summary>Output channels per convolution.</summary>
    public IReadOnlyList<long> Channels => _channels;

    /// <summary>The dropout probability before the decoder.</summary>
    public double Dropout { get; }

    /// <summary>Maps token ids [batch, time] (int64, 0 is padding) to logits [batch, outputs].</summary>
    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        ids = TokenIds.Checked(ids, VocabularySize, nameof(TextCnn));
        long time = ids.shape[1];
        var x = embedding.call(ids).transpose(1, 2);                                         // [batch, d, time]
        var mask = TokenIds.Mask(ids).unsqueeze(1).to_type(x.dtype);                         // [batch, 1, time]
        x = x.mul(mask);                                                                     // pads zeroed
        x = nn.functional.pad(x, [0, _kernelSizes.Max() - 1]);                               // every token starts a window
        var encodings = convs.Select(conv =>
            nn.functional.relu(conv.call(x).narrow(2, 0, time)).mul(mask).amax(2)).ToArray(); // [batch, channels_i]
        return decoder.call(dropout.call(cat(encodings, 1))).MoveToOuterDisposeScope();
    }
}
