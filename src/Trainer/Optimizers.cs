using MlNetGuide.Modules;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>
/// Minibatch SGD, <c>p ← p − lr · g</c>, written here because TorchSharp's <c>optim.SGD</c> creates a temporary Scalar
/// for the learning rate on every parameter update, which the GC may finalize during the native call (a crash seen here
/// after ~3,000 steps; see <see cref="Scalars"/>). This one keeps its Scalars in fields for its whole life.
/// </summary>
public sealed class Sgd : optim.Optimizer
{
    private readonly List<Parameter> _parameters;
    private Scalar _negLr;
    private double _lr;

    /// <summary>Creates the optimizer over <paramref name="parameters"/>.</summary>
    public Sgd(IEnumerable<Parameter> parameters, double lr) : base(IntPtr.Zero)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        _parameters = parameters.ToList();
        _negLr = (-CheckLr(lr)).ToScalar();
        _lr = lr;
    }

    /// <summary>The learning rate; may be changed between steps.</summary>
    public double LearningRate
    {
        get => _lr;
        set
        {
            var old = _negLr;
            _negLr = (-CheckLr(value)).ToScalar();
            _lr = value;
            old.Dispose();
        }
    }

    /// <inheritdoc />
    public override IEnumerable<Parameter> parameters() => _parameters;

    /// <summary>Zeroes every gradient in place.</summary>
    public override void zero_grad() => GradientSteps.ZeroGrad(_parameters);

    /// <inheritdoc />
    public override Tensor step(Func<Tensor>? closure = null)
    {
        Tensor? loss = closure?.Invoke();
        using (no_grad())
            foreach (var p in _parameters)
            {
                using var g = p.grad;
                if (g is not null) p.add_(g, _negLr);
            }
        return loss!;
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) _negLr.Dispose();
        base.Dispose(disposing);
    }

    internal static double CheckLr(double lr) =>
        lr > 0 && double.IsFinite(lr) ? lr : throw new ArgumentOutOfRangeException(nameof(lr), lr, "The learning rate must be a positive, finite number.");
}

/// <summary>
/// Adam (Kingma and Ba, 2015) with bias correction, written here for the same reason as <see cref="Sgd"/>: every Scalar
/// it passes to native code is held by a field or a <c>using</c> variable until the call returns.
/// </summary>
public sealed class Adam : optim.Optimizer
{
    private readonly List<Parameter> _parameters;
    private readonly Dictionary<Parameter, (Tensor m, Tensor v)> _state = new(ReferenceEqualityComparer.Instance);
    private readonly Scalar _beta1, _beta2, _oneMinusBeta1, _oneMinusBeta2, _eps;
    private readonly double _b1, _b2, _lr;
    private long _t;

    /// <summary>Creates the optimizer with the usual defaults β₁ = 0.9, β₂ = 0.999, ε = 1e-8.</summary>
    public Adam(IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8) : base(IntPtr.Zero)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (beta1 is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(beta1), beta1, "must be in [0, 1)");
        if (beta2 is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(beta2), beta2, "must be in [0, 1)");
        if (!(eps > 0)) throw new ArgumentOutOfRangeException(nameof(eps), eps, "must be > 0");
        _parameters = parameters.ToList();
        _lr = Sgd.CheckLr(lr);
        (_b1, _b2) = (beta1, beta2);
        _beta1 = beta1.ToScalar();
        _beta2 = beta2.ToScalar();
        _oneMinusBeta1 = (1 - beta1).ToScalar();
        _oneMinusBeta2 = (1 - beta2).ToScalar();
        _eps = eps.ToScalar();
    }

    /// <inheritdoc />
    public override IEnumerable<Parameter> parameters() => _parameters;

    /// <inheritdoc />
    public override void zero_grad() => GradientSteps.ZeroGrad(_parameters);

    /// <inheritdoc />
    public override Tensor step(Func<Tensor>? closure = null)
    {
        Tensor? loss = closure?.Invoke();
        _t++;
        double bc1 = 1 - Math.Pow(_b1, _t), bc2 = 1 - Math.Pow(_b2, _t);
        using var sqrtBc2 = Math.Sqrt(bc2).ToScalar();
        using var stepSize = (-_lr / bc1).ToScalar();
        using (no_grad())
            foreach (var p in _parameters)
            {
                using var g = p.grad;
                if (g is null) continue;
                if (!_state.TryGetValue(p, out var s))
                    _state[p] = s = (zeros_like(p).DetachFromDisposeScope(), zeros_like(p).DetachFromDisposeScope());
                s.m.mul_(_beta1).add_(g, _oneMinusBeta1);
                s.v.mul_(_beta2).addcmul_(g, g, _oneMinusBeta2);
                using var denom = s.v.sqrt().div_(sqrtBc2).add_(_eps, Scalars.One);
                p.addcdiv_(s.m, denom, stepSize);
            }
        return loss!;
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            foreach (var (m, v) in _state.Values) { m.Dispose(); v.Dispose(); }
            _state.Clear();
            foreach (var s in new[] { _beta1, _beta2, _oneMinusBeta1, _oneMinusBeta2, _eps }) s.Dispose();
        }
        base.Dispose(disposing);
    }
}

internal static class GradientSteps
{
    /// <summary>
    /// Zeroes the gradients in place. (PyTorch's default, setting them to None, measured slower here: backward then
    /// allocates fresh gradient buffers every step, and on glibc buffers this size come from mmap, page faults included.)
    /// </summary>
    public static void ZeroGrad(IEnumerable<Parameter> parameters)
    {
        foreach (var p in parameters)
        {
            using var g = p.grad;
            g?.zero_();
        }
    }
}
