using MlNetGuide.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>A running float64 sum kept on the value's device, so adding a step's loss never syncs with the host.</summary>
internal static class DeviceSum
{
    /// <summary>
    /// Adds <paramref name="value"/> (a one-element tensor) to <paramref name="sum"/> in place and returns the sum; with no
    /// sum yet, starts one (float64, detached, outliving dispose scopes). Call under <c>no_grad</c>.
    /// </summary>
    public static Tensor Add(Tensor? sum, Tensor value)
    {
        if (sum is null) return value.detach().reshape(1).to_type(ScalarType.Float64).DetachFromDisposeScope();
        sum.add_(value, Scalars.One); // a float32 value is promoted in place; kept-alive alpha (see Scalars)
        return sum;
    }
}
