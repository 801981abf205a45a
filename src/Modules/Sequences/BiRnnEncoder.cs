using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// d2l 16.2's BiRNN for sentiment (built from 10.3–10.4's deep and bidirectional RNNs): token ids →
/// <c>nn.Embedding</c> (padding id 0) → a bidirectional, batch-first <c>nn.LSTM</c> or <c>nn.GRU</c> named
/// <c>encoder</c> → the mean of both directions' states over the row's tokens → a linear <c>decoder</c>.
/// </summary>
/// <remarks>
/// <para>Input and output as for every sequence module (see <see cref="TextCnn"/>): int64 ids [batch, time], 0 is
/// padding; logits [batch, outputs].</para>
/// <para><b>Padding.</b> A plain bidirectional RNN over right-padded rows would let the backward direction read the
/// padding before the row's last token, so appending padding would change every state. Instead each row is packed
/// (<c>pack_padded_sequence</c>, unsorted) to its length — the position of its last token + 1 — so the backward
/// direction starts at the last token, as in PyTorch with packed input and ONNX's <c>sequence_lens</c>. A padding id
/// inside a row is read as the (zero) padding embedding and left out of the mean. A row of padding alone is run as
/// one step of padding (a packed length must be at least 1) and pools to zeros. The lengths are read back to the host
/// (PyTorch's packing needs them on the CPU): one copy per batch. d2l's BiRNN concatenates the first and last steps'
/// states; the masked mean over all steps is the pooling this module uses instead, since the first and last steps of
/// a padded batch are not each row's.</para>
/// <para>State dict, as PyTorch's modules name it: <c>embedding.weight</c>; <c>encoder.weight_ih_l{k}</c>,
/// <c>encoder.weight_hh_l{k}</c>, <c>encoder.bias_ih_l{k}</c>, <c>encoder.bias_hh_l{k}</c> and the same with
/// <c>_reverse</c> for each layer k (an LSTM's rows stack gates i, f, g, o; a GRU's r, z, n);
/// <c>decoder.weight</c> [outputs, 2·hidden], <c>decoder.bias</c>.</para>
/// </remarks>
public sealed class BiRnnEncoder : nn.Module<Tensor, Tensor>, ITokenSequenceModule
{
    private readonly Embedding embedding;
    private readonly nn.Module encoder;
    private readonly MaskedMeanPooling pool;
    private readonly Linear decoder;

    /// <summary>Creates the network; the defaults are d2l 16.2's (d = 100, 100 hidden units, 2 layers).</summary>
    /// <param name="vocabularySize">Ids 0 to V − 1; 0 is padding, so V is the number of tokens + 1.</param>
    /// <param name="outputs">Logits per row (classes).</param>
    /// <param name="cell">LSTM or GRU.</param>
    /// <param name="embeddingSize">The width d of each token's vector.</param>
    /// <param name="hiddenSize">Hidden units per direction.</param>
    /// <param name="layers">Stacked bidirectional layers.</param>
    /// <param name="dropout">Dropout between stacked layers (PyTorch's <c>dropout</c> argument; unused with one layer).</param>
    public BiRnnEncoder(long vocabularySize, long outputs = 2, RecurrentCell cell = RecurrentCell.Lstm,
        long embeddingSize = 100, long hiddenSize = 100, long layers = 2, double dropout = 0)
        : base(TorchSharpRuntime.Checked(nameof(BiRnnEncoder)))
    {
        VocabularySize = TokenIds.VocabularySize(vocabularySize, nameof(BiRnnEncoder));
        Outputs = TokenIds.Positive(outputs, nameof(outputs), nameof(BiRnnEncoder));
        EmbeddingSize = TokenIds.Positive(embeddingSize, nameof(embeddingSize), nameof(BiRnnEncoder));
        HiddenSize = TokenIds.Positive(hiddenSize, nameof(hiddenSize), nameof(BiRnnEncoder));
        Layers = TokenIds.Positive(layers, nameof(layers), nameof(BiRnnEncoder));
        Dropout = TokenIds.Probability(dropout, nameof(dropout), nameof(BiRnnEncoder));
        if (!Enum.IsDefined(cell)) throw new ArgumentOutOfRangeException(nameof(cell), cell, "BiRnnEncoder runs an LSTM or a GRU.");
        Cell = cell;

        embedding = nn.Embedding(vocabularySize, embeddingSize, padding_idx: TokenIds.Padding);
        encoder = cell == RecurrentCell.Lstm
            ? nn.LSTM(embeddingSize, hiddenSize, layers, batchFirst: true, dropout: dropout, bidirectional: true)
            : nn.GRU(embeddingSize, hiddenSize, layers, batchFirst: true, dropout: dropout, bidirectional: true);
        pool = new MaskedMeanPooling();
        decoder = nn.Linear(2 * hiddenSize, outputs);
        RegisterComponents();
    }

    /// <summary>Ids 0 to <c>VocabularySize − 1</c> are accepted; 0 is padding.</summary>
    public long VocabularySize { get; }

    /// <summary>Logits per row.</summary>
    public long Outputs { get; }

    /// <summary>LSTM or GRU.</summary>
    public RecurrentCell Cell { get; }

    /// <summary>The width of a token's vector.</summary>
    public long EmbeddingSize { get; }

    /// <summary>Hidden units per direction.</summary>
    public long HiddenSize { get; }

    /// <summary>Stacked bidirectional layers.</summary>
    public long Layers { get; }

    /// <summary>Dropout between stacked layers.</summary>
    public double Dropout { get; }

    /// <summary>The recurrent layer: a TorchSharp <see cref="LSTM"/> or <see cref="GRU"/> (bidirectional, batch first).</summary>
    public nn.Module Encoder => encoder;

    /// <summary>Maps token ids [batch, time] (int64, 0 is padding) to logits [batch, outputs].</summary>
    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        ids = TokenIds.Checked(ids, VocabularySize, nameof(BiRnnEncoder));
        long time = ids.shape[1];
        var mask = TokenIds.Mask(ids);
        var packed = nn.utils.rnn.pack_padded_sequence(embedding.call(ids), Lengths(mask), batch_first: true, enforce_sorted: false);
        var states = encoder switch
        {
            LSTM lstm => lstm.call(packed).Item1,
            GRU gru => gru.call(packed).Item1,
            _ => throw new InvalidOperationException($"BiRnnEncoder's encoder is a {encoder.GetType().Name}."),
        };
        var (padded, _) = nn.utils.rnn.pad_packed_sequence(states, batch_first: true, total_length: time); // [batch, time, 2·hidden]
        return decoder.call(pool.call(padded, mask)).MoveToOuterDisposeScope();
    }

    /// <summary>Each row's packed length on the CPU: the position of its last token + 1, and 1 for a row of padding.</summary>
    internal static Tensor Lengths(Tensor mask)
    {
        using Scalar one = 1L.ToScalar(), end = (mask.shape[1] + 1).ToScalar(); // Scalars kept alive for the native calls
        using var positions = arange(one, end, ScalarType.Int64, mask.device);   // 1 … time
        using var last = mask.to_type(ScalarType.Int64).mul(positions).amax(1);
        using var lengths = last.clamp_min(one);
        return lengths.cpu();
    }
}
