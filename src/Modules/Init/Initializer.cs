using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// 6.3 A rule that fills one tensor in place (without autograd). Small and composable: combine a weight rule and a
/// bias rule into an <see cref="InitScheme"/> with <see cref="WithBias"/>, then apply it with
/// <c>module.ApplyInit(scheme)</c>.
/// </summary>
/// <remarks>
/// Random rules sample with an explicit <see cref="Generator"/> when one is given (TorchSharp's <c>torch.nn.init</c>
/// ignores its generator argument, so we draw with <c>torch.rand/randn(generator:)</c> and copy), which makes a
/// seeded scheme bit-reproducible; without one they use the global generator (<c>torch.manual_seed</c>).
/// </remarks>
public abstract class Initializer
{
    /// <summary>Fills <paramref name="tensor"/> in place.</summary>
    public void Fill(Tensor tensor, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var values = Sample(tensor.shape, tensor.dtype, generator);
        tensor.copy_(values);
    }

    /// <summary>Returns a new CPU-or-device-agnostic tensor of <paramref name="shape"/> with this rule's values.</summary>
    protected abstract Tensor Sample(long[] shape, ScalarType dtype, Generator? generator);

    /// <summary>A short description, e.g. <c>Normal(0, 0.01)</c>.</summary>
    public abstract override string ToString();

    /// <summary>Pairs this weight rule with a bias rule.</summary>
    public InitScheme WithBias(Initializer bias) => new(this, bias);

    /// <summary>Uses this rule for weights and leaves biases untouched.</summary>
    public static implicit operator InitScheme(Initializer weight) => new(weight);

    /// <summary>N(mean, std²), as <c>nn.init.normal_</c>.</summary>
    public static Initializer Normal(double mean = 0, double std = 1) => new NormalInit(mean, std);

    /// <summary>U(low, high), as <c>nn.init.uniform_</c>.</summary>
    public static Initializer Uniform(double low = 0, double high = 1) => new UniformInit(low, high);

    /// <summary>All zeros.</summary>
    public static Initializer Zeros { get; } = new ConstantInit(0);

    /// <summary>Every element set to <paramref name="value"/>.</summary>
    public static Initializer Constant(double value) => new ConstantInit(value);

    /// <summary>Glorot/Xavier uniform: U(-a, a) with a = gain·sqrt(6 / (fan_in + fan_out)).</summary>
    public static Initializer XavierUniform(double gain = 1) => new XavierUniformInit(gain);

    /// <summary>Glorot/Xavier normal: N(0, σ²) with σ = gain·sqrt(2 / (fan_in + fan_out)).</summary>
    public static Initializer XavierNormal(double gain = 1) => new FanInit("XavierNormal", gain, FanMode.Both, normal: true);

    /// <summary>
    /// He/Kaiming uniform (PyTorch's <c>kaiming_uniform_</c>): U(-b, b) with b = gain·sqrt(3 / fan), gain = sqrt(2) for
    /// ReLU; fan is fan_in (the default, preserving the forward pass's variance) or fan_out (the backward pass's).
    /// </summary>
    public static Initializer KaimingUniform(FanMode mode = FanMode.FanIn, double gain = 1.4142135623730951) =>
        new FanInit("KaimingUniform", gain, mode, normal: false);

    /// <summary>He/Kaiming normal (PyTorch's <c>kaiming_normal_</c>): N(0, σ²) with σ = gain / sqrt(fan), gain = sqrt(2) for ReLU.</summary>
    public static Initializer KaimingNormal(FanMode mode = FanMode.FanIn, double gain = 1.4142135623730951) =>
        new FanInit("KaimingNormal", gain, mode, normal: true);

    /// <summary>
    /// Fan-in and fan-out of a weight of <paramref name="shape"/>, as PyTorch computes them: a linear weight
    /// (out, in) has fan_in = in and fan_out = out; a convolution kernel (out, in/groups, k…) multiplies both by its
    /// receptive field (the product of the kernel sizes).
    /// </summary>
    public static (double FanIn, double FanOut) Fans(IReadOnlyList<long> shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        if (shape.Count < 2)
            throw new ArgumentException($"Fan-based initialization needs a tensor with at least 2 dimensions; got shape [{string.Join(", ", shape)}].");
        long receptive = shape.Skip(2).Aggregate(1L, (a, b) => a * b);
        return (shape[1] * receptive, shape[0] * receptive);
    }

    /// <summary>
    /// The chapter's custom distribution (<c>my_init</c>): U(5, 10) with probability 1/4, 0 with probability 1/2,
    /// U(-10, -5) with probability 1/4 — drawn as U(-10, 10) with every |w| &lt; 5 set to zero.
    /// </summary>
    public static Initializer ChapterCustom() => new ChapterCustomInit();

    private sealed class NormalInit(double mean, double std) : Initializer
    {
        private readonly double _std = std >= 0 ? std : throw new ArgumentOutOfRangeException(nameof(std), std, "std must be >= 0");
        protected override Tensor Sample(long[] shape, ScalarType dtype, Generator? g)
        {
            using var std = _std.ToScalar();
            using var mu = mean.ToScalar();
            return randn(shape, dtype: ScalarType.Float32, generator: g).mul_(std).add_(mu, Scalars.One).to_type(dtype);
        }
        public override string ToString() => $"Normal({mean}, {_std})";
    }

    private sealed class UniformInit : Initializer
    {
        private readonly double _low, _high;
        public UniformInit(double low, double high)
        {
            if (!(high >= low)) throw new ArgumentOutOfRangeException(nameof(high), high, $"high must be >= low ({low})");
            (_low, _high) = (low, high);
        }
        protected override Tensor Sample(long[] shape, ScalarType dtype, Generator? g)
        {
            using var width = (_high - _low).ToScalar();
            using var low = _low.ToScalar();
            return rand(shape, dtype: ScalarType.Float32, generator: g).mul_(width).add_(low, Scalars.One).to_type(dtype);
        }
        public override string ToString() => $"Uniform({_low}, {_high})";
    }

    private sealed class ConstantInit(double value) : Initializer
    {
        protected override Tensor Sample(long[] shape, ScalarType dtype, Generator? g)
        {
            using var v = value.ToScalar();
            return full(shape, v, dtype: dtype);
        }
        public override string ToString() => value == 0 ? "Zeros" : $"Constant({value})";
    }

    private sealed class XavierUniformInit(double gain) : Initializer
    {
        protected override Tensor Sample(long[] shape, ScalarType dtype, Generator? g)
        {
            var (fanIn, fanOut) = Fans(shape);
            double a = gain * Math.Sqrt(6.0 / (fanIn + fanOut));
            using var width = (2 * a).ToScalar();
            using var minusA = (-a).ToScalar();
            return rand(shape, dtype: ScalarType.Float32, generator: g).mul_(width).add_(minusA, Scalars.One).to_type(dtype);
        }
        public override string ToString() => $"XavierUniform(gain={gain})";
    }

    private sealed class FanInit(string name, double gain, FanMode mode, bool normal) : Initializer
    {
        protected override Tensor Sample(long[] shape, ScalarType dtype, Generator? g)
        {
            var (fanIn, fanOut) = Fans(shape);
            double fan = mode switch { FanMode.FanIn => fanIn, FanMode.FanOut => fanOut, _ => (fanIn + fanOut) / 2 };
            // Xavier's 2 / (fan_in + fan_out) is 1 / mean fan: one formula, std = gain / sqrt(fan), covers both.
            double std = gain / Math.Sqrt(fan);
            if (normal)
            {
                using var sigma = std.ToScalar();
                return randn(shape, dtype: ScalarType.Float32, generator: g).mul_(sigma).to_type(dtype);
            }
            double bound = Math.Sqrt(3.0) * std; // U(-b, b) has standard deviation b / sqrt(3)
            using var width = (2 * bound).ToScalar();
            using var minusBound = (-bound).ToScalar();
            return rand(shape, dtype: ScalarType.Float32, generator: g).mul_(width).add_(minusBound, Scalars.One).to_type(dtype);
        }
        public override string ToString() => $"{name}({(mode == FanMode.Both ? "" : mode + ", ")}gain={gain:0.####})";
    }

    private sealed class ChapterCustomInit : Initializer
    {
        protected override Tensor Sample(long[] shape, ScalarType dtype, Generator? g)
        {
            using var twenty = 20.0.ToScalar();
            using var minusTen = (-10.0).ToScalar();
            using var five = 5.0.ToScalar();
            var w = rand(shape, dtype: ScalarType.Float32, generator: g).mul_(twenty).add_(minusTen, Scalars.One);
            return w.mul_(w.abs().ge(five)).to_type(dtype);
        }
        public override string ToString() => "ChapterCustom(U(5,10) w.p. 1/4, 0 w.p. 1/2, U(-10,-5) w.p. 1/4)";
    }
}

/// <summary>Which fan a fan-based initializer divides by.</summary>
public enum FanMode
{
    /// <summary>fan_in: keeps the variance of activations in the forward pass.</summary>
    FanIn,

    /// <summary>fan_out: keeps the variance of gradients in the backward pass.</summary>
    FanOut,

    /// <summary>The mean of the two (Xavier/Glorot).</summary>
    Both,
}
