using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// The mean of a sequence's vectors over its tokens only: (x [batch, time, d], mask [batch, time]) → [batch, d],
/// Σₜ maskₜ xₜ / max(1, Σₜ maskₜ). A row of padding alone gives zeros, not 0/0. fastText's bag of embeddings
/// (Joulin et al., 2016; PyTorch's <c>nn.EmbeddingBag(mode="mean")</c>) and the pooling after d2l's encoders (16.2).
/// </summary>
/// <remarks>It has no parameters, so it adds no state-dict keys to the module that holds it.</remarks>
public sealed class MaskedMeanPooling : nn.Module<Tensor, Tensor, Tensor>
{
    /// <summary>Creates the pooling.</summary>
    public MaskedMeanPooling() : base(TorchSharpRuntime.Checked(nameof(MaskedMeanPooling)))
    {
    }

    /// <summary>Pools <paramref name="x"/> [batch, time, d] over the positions where <paramref name="mask"/> [batch, time] is true (or non-zero).</summary>
    public override Tensor forward(Tensor x, Tensor mask)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(mask);
        if (x.dim() != 3 || mask.dim() != 2 || x.shape[0] != mask.shape[0] || x.shape[1] != mask.shape[1])
            throw new ArgumentException(
                $"MaskedMeanPooling takes x [batch, time, d] and a mask [batch, time]; got x [{string.Join(", ", x.shape)}] and mask [{string.Join(", ", mask.shape)}].");
        using var scope = NewDisposeScope();
        var weights = mask.unsqueeze(-1).to_type(x.dtype);          // [batch, time, 1]
        var count = weights.sum(1).clamp_min(Scalars.One);                    // [batch, 1]: an all-padding row divides 0 by 1
        return x.mul(weights).sum(1).div_(count).MoveToOuterDisposeScope();
    }
}
