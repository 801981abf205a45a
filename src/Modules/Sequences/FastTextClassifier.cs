using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// A bag of embeddings (fastText, Joulin et al., 2016; d2l 15.6's subword model without the n-grams): token ids →
/// <c>nn.Embedding</c> (padding id 0) → the mean over the tokens (<see cref="MaskedMeanPooling"/>) → a linear
/// <c>decoder</c> to the logits.
/// </summary>
/// <remarks>
/// <para>Input: int64 token ids [batch, time], 0 is padding (see <see cref="TextCnn"/> for the shared contract);
/// output: logits [batch, outputs]. Padding never changes a row's logits, and a row of padding alone gives the
/// decoder's bias.</para>
/// <para>State dict, as PyTorch's modules name it: <c>embedding.weight</c> [V, d], <c>decoder.weight</c>
/// [outputs, d], <c>decoder.bias</c> [outputs].</para>
/// </remarks>
public sealed class FastTextClassifier : nn.Module<Tensor, Tensor>, ITokenSequenceModule
{
    private readonly Embedding embedding;
    private readonly MaskedMeanPooling pool;
    private readonly Linear decoder;

    /// <summary>Creates the classifier for a vocabulary of <paramref name="vocabularySize"/> ids (id 0 included, as padding).</summary>
    /// <param name="vocabularySize">Ids 0 to V − 1; 0 is padding, so V is the number of tokens + 1.</param>
    /// <param name="outputs">Logits per row (classes).</param>
    /// <param name="embeddingSize">The width d of each token's vector.</param>
    public FastTextClassifier(long vocabularySize, long outputs = 2, long embeddingSize = 100)
        : base(TorchSharpRuntime.Checked(nameof(FastTextClassifier)))
    {
        VocabularySize = TokenIds.VocabularySize(vocabularySize, nameof(FastTextClassifier));
        Outputs = TokenIds.Positive(outputs, nameof(outputs), nameof(FastTextClassifier));
        EmbeddingSize = TokenIds.Positive(embeddingSize, nameof(embeddingSize), nameof(FastTextClassifier));
        embedding = nn.Embedding(vocabularySize, embeddingSize, padding_idx: TokenIds.Padding);
        pool = new MaskedMeanPooling();
        decoder = nn.Linear(embeddingSize, outputs);
        RegisterComponents();
    }

    /// <summary>Ids 0 to <c>VocabularySize − 1</c> are accepted; 0 is padding.</summary>
    public long VocabularySize { get; }

    /// <summary>Logits per row.</summary>
    public long Outputs { get; }

    /// <summary>The width of a token's vector.</summary>
    public long EmbeddingSize { get; }

    /// <summary>Maps token ids [batch, time] (int64, 0 is padding) to logits [batch, outputs].</summary>
    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        ids = TokenIds.Checked(ids, VocabularySize, nameof(FastTextClassifier));
        var bag = pool.call(embedding.call(ids), TokenIds.Mask(ids));
        return decoder.call(bag).MoveToOuterDisposeScope();
    }
}
