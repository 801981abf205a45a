using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// fastText's linear model over a bag of weighted features (Joulin et al., 2016, whose inputs are hashed word and
/// character n-grams): each of the <c>inputs</c> features has a vector of size d, a row is the sum of its features'
/// vectors weighted by their values, and a linear <c>decoder</c> maps that sum to the logits. For a wide, sparse
/// column (FeaturizeText's n-gram counts, OneHotEncoding) it reads only a row's non-zeros, and its gradient is sparse: a
/// step touches only the vectors of the features a batch holds (see <c>MlNetGuide.Training.Adam</c>'s lazy update).
/// </summary>
/// <remarks>
/// <para>Input: float features [batch, inputs], a sparse COO tensor or a dense one (the same logits either way);
/// output: logits [batch, outputs]. It is <c>x · bag.weight</c> then the decoder: a linear model of rank d.</para>
/// <para>State dict, as PyTorch's modules name it: <c>bag.weight</c> [inputs, d] (an <c>nn.EmbeddingBag(inputs, d,
/// mode='sum')</c>, called with the non-zeros as <c>per_sample_weights</c>), <c>decoder.weight</c> [outputs, d],
/// <c>decoder.bias</c> [outputs].</para>
/// </remarks>
public sealed class FeatureBag : nn.Module<Tensor, Tensor>
{
    private readonly EmbeddingBag bag;
    private readonly Linear decoder;

    /// <summary>Creates the model; the feature vectors start uniform in ±1/d (fastText's initialization).</summary>
    /// <param name="inputs">Features per row (the column's width).</param>
    /// <param name="outputs">Logits per row.</param>
    /// <param name="size">d, the width of each feature's vector.</param>
    public FeatureBag(long inputs, long outputs = 2, long size = 16) : base(TorchSharpRuntime.Checked(nameof(FeatureBag)))
    {
        Inputs = TokenIds.Positive(inputs, nameof(inputs), nameof(FeatureBag));
        Outputs = TokenIds.Positive(outputs, nameof(outputs), nameof(FeatureBag));
        Size = TokenIds.Positive(size, nameof(size), nameof(FeatureBag));
        bag = nn.EmbeddingBag(inputs, size, mode: EmbeddingBagMode.Sum, sparse: true);
        decoder = nn.Linear(size, outputs);
        RegisterComponents();
        using var noGrad = no_grad();
        using var weight = bag.weight!;
        nn.init.uniform_(weight, -1.0 / size, 1.0 / size);
    }

    /// <summary>Features per row.</summary>
    public long Inputs { get; }

    /// <summary>Logits per row.</summary>
    public long Outputs { get; }

    /// <summary>The width d of a feature's vector.</summary>
    public long Size { get; }

    /// <summary>Maps features [batch, inputs] (sparse COO or dense float) to logits [batch, outputs].</summary>
    public override Tensor forward(Tensor x)
    {
        if (x.dim() != 2 || x.shape[1] != Inputs)
            throw new ArgumentException($"{nameof(FeatureBag)} takes [batch, {Inputs}] features; got [{string.Join(", ", x.shape)}].", nameof(x));
        using var scope = NewDisposeScope();
        Tensor sum;
        if (x.is_sparse)
        {
            // TorchSharp 0.107 binds no coalesce(); the raw entries serve, since a bag sums duplicates as a product
            // does. The bag's offsets need them in row order: the estimator's batches come so, others are sorted
            // (stably, so a row's own order stays).
            var indices = x.SparseIndices;
            Tensor rows = indices[0], columns = indices[1], values = x.SparseValues;
            if (!InRowOrder(rows))
            {
                var (sorted, order) = rows.sort(0, descending: false, stable: true);
                (rows, columns, values) = (sorted, columns.index_select(0, order), values.index_select(0, order));
            }
            var counts = rows.bincount(null, x.shape[0]);
            var offsets = counts.cumsum(0).sub_(counts); // where each row's non-zeros start
            sum = bag.call(columns, offsets, values);
        }
        else
        {
            sum = x.matmul(bag.weight!); // the getter's new handle goes with the scope
        }
        return decoder.call(sum).MoveToOuterDisposeScope();
    }

    private static bool InRowOrder(Tensor rows)
    {
        long n = rows.shape[0];
        if (n < 2) return true;
        using var later = rows.narrow(0, 1, n - 1);
        using var earlier = rows.narrow(0, 0, n - 1);
        using var ascending = later.ge(earlier);
        using var all = ascending.all();
        return all.item<bool>();
    }
}
