using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// The input every sequence module takes: token ids as an int64 tensor [batch, time], where id 0 is padding and ids
/// 1 to V − 1 are tokens of a vocabulary of V (ML.NET's key k ≥ 1 becomes id k; key 0, a missing value, is padding).
/// </summary>
internal static class TokenIds
{
    /// <summary>The id of the padding token (and of a missing key).</summary>
    public const long Padding = 0;

    /// <summary>
    /// Checks <paramref name="ids"/> at a module's boundary and returns the ids to embed: the same tensor, or one
    /// padding column when the batch has no time steps (every row empty), so that pooling sees a row of padding.
    /// Reading the smallest and largest id back costs one device-to-host copy per batch; without it an id outside the
    /// vocabulary would be a native index error (or a device assert) instead of an exception that names it.
    /// </summary>
    public static Tensor Checked(Tensor ids, long vocabularySize, string module)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (ids.dtype != ScalarType.Int64)
            throw new ArgumentException(
                $"{module} takes token ids as an int64 tensor [batch, time] (0 is padding); got a {ids.dtype} tensor of shape [{string.Join(", ", ids.shape)}]. " +
                "Convert keys with ids.to_type(ScalarType.Int64), or use the estimator, which does.", nameof(ids));
        if (ids.dim() != 2)
            throw new ArgumentException(
                $"{module} takes token ids of shape [batch, time]; got shape [{string.Join(", ", ids.shape)}].", nameof(ids));
        if (ids.shape[1] == 0) return zeros(ids.shape[0], 1, ScalarType.Int64, ids.device);
        if (ids.shape[0] == 0) return ids;
        using var scope = NewDisposeScope();
        var range = stack([ids.min(), ids.max()]).cpu().data<long>().ToArray();
        if (range[0] < 0)
            throw new ArgumentException(
                $"{module} found token id {range[0]}: ids are 0 (padding) to {vocabularySize - 1} for a vocabulary of {vocabularySize}; negative ids have no embedding.", nameof(ids));
        if (range[1] >= vocabularySize)
            throw new ArgumentException(
                $"{module} found token id {range[1]}, outside its vocabulary of {vocabularySize} (ids 0 to {vocabularySize - 1}, 0 is padding). " +
                "Build the module with the vocabulary size the key type gives (its count of keys + 1).", nameof(ids));
        return ids;
    }

    /// <summary>True where a position holds a token, false where it holds padding: <c>ids != 0</c>, shape [batch, time].</summary>
    public static Tensor Mask(Tensor ids) => ids.ne(Scalars.Zero); // a kept-alive Scalar (see Scalars): 0 is Padding

    /// <summary>Checks a vocabulary size at a constructor: padding plus at least one token.</summary>
    public static long VocabularySize(long vocabularySize, string module) => vocabularySize >= 2 ? vocabularySize
        : throw new ArgumentOutOfRangeException(nameof(vocabularySize), vocabularySize,
            $"{module} needs a vocabulary of at least 2 ids: 0 for padding and one token.");

    /// <summary>Checks a width at a constructor (an embedding size, a number of outputs, channels).</summary>
    public static long Positive(long value, string name, string module) => value >= 1 ? value
        : throw new ArgumentOutOfRangeException(name, value, $"{module} needs {name} of at least 1.");

    /// <summary>Checks a dropout probability at a constructor.</summary>
    public static double Probability(double p, string name, string module) => p is >= 0 and < 1 ? p
        : throw new ArgumentOutOfRangeException(name, p, $"{module} needs {name} in [0, 1).");
}
