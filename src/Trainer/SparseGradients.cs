using MlNetGuide.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>
/// Row-sparse gradients (what <c>nn.EmbeddingBag(sparse: true)</c>, e.g. <see cref="FeatureBag"/>'s, gives its weight):
/// a COO tensor whose entries are rows of the weight, possibly repeated. TorchSharp 0.107 binds no <c>coalesce()</c>, so
/// the repeated rows are summed here (<c>unique</c>, then <c>index_add_</c>).
/// </summary>
internal static class SparseGradients
{
    /// <summary>The distinct rows a gradient touches (ascending) and each one's summed gradient [rows, …].</summary>
    public static (Tensor Rows, Tensor Values) Summed(Tensor gradient)
    {
        var indices = gradient.SparseIndices;
        if (indices.shape[0] != 1)
            throw new NotSupportedException($"A sparse gradient over {indices.shape[0]} dimensions; only row-sparse ones (an embedding's) are supported.");
        var (rows, inverse, _) = unique(indices[0], sorted: true, return_inverse: true);
        var values = gradient.SparseValues;
        var shape = values.shape.ToArray();
        shape[0] = rows.shape[0];
        var summed = zeros(shape, values.dtype, values.device).index_add_(0, inverse!, values, Scalars.One);
        return (rows, summed);
    }

    /// <summary>‖g‖² of a gradient, sparse or dense, as a float32 scalar tensor.</summary>
    public static Tensor SquaredNorm(Tensor gradient)
    {
        var g = gradient.is_sparse ? Summed(gradient).Values : gradient;
        return g.mul(g).sum().to_type(ScalarType.Float32);
    }
}
