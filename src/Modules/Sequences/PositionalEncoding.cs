using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// d2l 11.6.3 sinusoidal positional encoding: adds P [time, d] to x [batch, time, d], with
/// P[t, 2j] = sin(t / 10000^(2j/d)) and P[t, 2j+1] = cos(t / 10000^(2j/d)). d must be even.
/// </summary>
/// <remarks>
/// P is computed for the batch's length on each call (time × d sines and cosines, small beside attention's
/// time² × d), so it is neither a parameter nor a buffer: it adds no state-dict key, needs no maximum length, and is
/// on the input's device and dtype by construction. d2l's version also applies dropout; the encoder that holds this
/// module does that itself.
/// </remarks>
public sealed class PositionalEncoding : nn.Module<Tensor, Tensor>
{
    /// <summary>Creates the encoding for vectors of width <paramref name="size"/>.</summary>
    public PositionalEncoding(long size) : base(TorchSharpRuntime.Checked(nameof(PositionalEncoding)))
    {
        if (size < 2 || size % 2 != 0)
            throw new ArgumentOutOfRangeException(nameof(size), size, "PositionalEncoding pairs a sine and a cosine per frequency: its width must be even (and at least 2).");
        Size = size;
    }

    /// <summary>The width d of the vectors it is added to.</summary>
    public long Size { get; }

    /// <summary>x [batch, time, d] + P[:time].</summary>
    public override Tensor forward(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.dim() != 3 || x.shape[2] != Size)
            throw new ArgumentException($"PositionalEncoding({Size}) takes x [batch, time, {Size}]; got [{string.Join(", ", x.shape)}].", nameof(x));
        using var scope = NewDisposeScope();
        return x.add(Table(x.shape[1], Size, x.device).to_type(x.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>P [time, size] in float32, computed as d2l's <c>PositionalEncoding.__init__</c> does.</summary>
    public static Tensor Table(long time, long size, Device? device = null)
    {
        using var scope = NewDisposeScope();
        using Scalar length = time.ToScalar(); // kept alive for the native call (see Scalars)
        var positions = arange(length, ScalarType.Float32, device).reshape(-1, 1);                    // [time, 1]
        var angles = positions.div(Frequencies(size, device));                                         // [time, size/2]
        return stack([angles.sin(), angles.cos()], 2).reshape(time, size).MoveToOuterDisposeScope();  // sin at 2j, cos at 2j+1
    }

    /// <summary>10000^(2j/d) for j = 0 … d/2 − 1, float32 [d/2]: the divisors of the positions.</summary>
    internal static Tensor Frequencies(long size, Device? device = null)
    {
        using var scope = NewDisposeScope();
        using Scalar zero = 0L.ToScalar(), width = size.ToScalar(), two = 2L.ToScalar();
        return tensor(10000f, device: device).pow(arange(zero, width, two, ScalarType.Float32, device).div_(width)).MoveToOuterDisposeScope();
    }
}
