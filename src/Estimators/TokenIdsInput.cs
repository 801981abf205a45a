using MlNetGuide.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Estimators;

/// <summary>
/// Where token sequences enter a network: the estimator reads a key column (ML.NET's <c>TokenizeIntoWords</c> +
/// <c>MapValueToKey</c>) into fixed slots of <c>MaxTokens</c> ids per row — key k as id k, exact in float32 below 2²⁴,
/// 0 for padding and for a missing key — so rows travel the numeric path's batches, cursors and scorer unchanged.
/// This module turns a batch of slots into int64 ids cut to the batch's longest row (at least one step) and calls the
/// sequence module (whose contract: ids [batch, time], 0 is padding; see <c>MlNetGuide.Modules.TextCnn</c>).
/// </summary>
internal sealed class TokenIdsInput : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> net;

    public TokenIdsInput(nn.Module<Tensor, Tensor> net) : base(nameof(TokenIdsInput))
    {
        this.net = net;
        RegisterComponents();
    }

    /// <summary>Each row's length in <paramref name="slots"/>: the position of its last token + 1 (0 for a row of padding), as int64.</summary>
    public static Tensor Lengths(Tensor slots)
    {
        long time = slots.shape[1];
        using var positions = arange(1, time + 1, dtype: ScalarType.Int64, device: slots.device);
        using var used = slots.ne(Scalars.Zero);
        using var placed = used.to_type(ScalarType.Int64).mul(positions);
        return placed.amax(1);
    }

    /// <summary>The sequence module.</summary>
    public nn.Module<Tensor, Tensor> Net => net;

    public override Tensor forward(Tensor slots)
    {
        using var scope = NewDisposeScope();
        var ids = slots.to_type(ScalarType.Int64);
        long time = ids.shape[1];
        long length = Math.Max(1, Lengths(ids).max().item<long>()); // the longest row (one host read per batch)
        var trimmed = length == time ? ids : ids.narrow(1, 0, length);
        return net.call(trimmed).MoveToOuterDisposeScope();
    }
}
