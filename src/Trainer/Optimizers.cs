using MlNetGuide.Modules;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Training;

// Why our own optimizers: TorchSharp 0.107's optim.SGD and optim.Adam turn numbers into temporary Scalars inside their
// update (e.g. add_(grad, alpha: lr)); the GC may finalize such a Scalar while the native call still reads it, and the
// process dies ("Expected false to be true" from Scalar::toFloat) — the on-demand negative control in OptimizerTests
// shows it. These do the same arithmetic with every Scalar held by a `using` until the call returns. They derive from
// TorchSharp's OptimizerHelper, so ParamGroups, every optim.lr_scheduler and state_dict()/load_state_dict work.

/// <summary>
/// What <see cref="Sgd"/> and <see cref="Adam"/> share on top of TorchSharp's <see cref="OptimizerHelper"/>: one
/// learning rate for every group, gradients zeroed in place, a state per parameter, and that state's tensors released
/// with the optimizer.
/// </summary>
public abstract class ParamGroupOptimizer : OptimizerHelper
{
    /// <summary>The learning rate of every group: reading gives the first group's; setting sets them all (schedulers set groups one by one).</summary>
    public double LearningRate
    {
        get => _parameter_groups[0].LearningRate;
        set
        {
            OptimizerChecks.LearningRate(value);
            foreach (var g in _parameter_groups) g.LearningRate = value;
        }
    }

    /// <inheritdoc />
    public override void zero_grad() => OptimizerChecks.ZeroGrad(parameters());

    /// <summary>Adds <paramref name="group"/> (its parameters fixed as a list) with a fresh state for each parameter.</summary>
    protected void Track(ParamGroup group, Func<Parameter, OptimizerState> newState)
    {
        group.Parameters = group.Parameters.ToList();
        _parameter_groups.Add(group);
        foreach (var p in group.Parameters) _state[p.Handle] = newState(p);
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
            foreach (var (_, state) in _state) (state as IDisposable)?.Dispose();
        base.Dispose(disposing);
    }
}

/// <summary>
/// Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay — PyTorch's
/// <c>torch.optim.SGD</c> (same update, same defaults), safe under GC pressure.
/// </summary>
/// <remarks>
/// With momentum μ, dampening τ and weight decay λ, for each parameter p with gradient g:
/// <c>g ← g + λ·p</c>; <c>b ← g</c> on the first step, else <c>b ← μ·b + (1 − τ)·g</c>; <c>g ← g + μ·b</c> (Nesterov) or
/// <c>g ← b</c>; <c>p ← p − lr·g</c>. With all of them 0 this is the chapter's minibatch SGD, <c>p ← p − lr·g</c>.
/// </remarks>
public sealed class Sgd : ParamGroupOptimizer, optim.IMomentum
{
    /// <summary>Creates the optimizer over <paramref name="parameters"/> (one parameter group).</summary>
    public Sgd(IEnumerable<Parameter> parameters, double lr, double momentum = 0, double dampening = 0, double weightDecay = 0, bool nesterov = false)
        : this([new Group(Checked(parameters))], lr, momentum, dampening, weightDecay, nesterov)
    {
    }

    /// <summary>Creates the optimizer over parameter groups; a group's own <see cref="Options"/> override the defaults given here.</summary>
    public Sgd(IEnumerable<ParamGroup<Options>> groups, double lr, double momentum = 0, double dampening = 0, double weightDecay = 0, bool nesterov = false)
    {
        ArgumentNullException.ThrowIfNull(groups);
        _defaults = new Options
        {
            LearningRate = OptimizerChecks.LearningRate(lr), InitialLearningRate = lr,
            Momentum = OptimizerChecks.NonNegative(momentum, nameof(momentum)),
            Dampening = OptimizerChecks.NonNegative(dampening, nameof(dampening)),
            WeightDecay = OptimizerChecks.NonNegative(weightDecay, nameof(weightDecay)),
            Nesterov = nesterov,
        };
        _parameter_groups = new List<ParamGroup>();
        foreach (var group in groups) add_param_group(group);
    }

    /// <summary>Hyperparameters of one parameter group (null: the optimizer's default).</summary>
    public sealed class Options : OptimizerOptions
    {
        /// <summary>Momentum factor μ.</summary>
        public double? Momentum { get; set; }

        /// <summary>Dampening τ of the momentum.</summary>
        public double? Dampening { get; set; }

        /// <summary>L2 penalty λ, added to the gradient.</summary>
        public double? WeightDecay { get; set; }

        /// <summary>Nesterov momentum.</summary>
        public bool? Nesterov { get; set; }

        /// <inheritdoc />
        public override void SaveStateDict(BinaryWriter writer)
        {
            base.SaveStateDict(writer);
            writer.Write(Momentum!.Value);
            writer.Write(Dampening!.Value);
            writer.Write(WeightDecay!.Value);
            writer.Write(Nesterov!.Value);
        }

        /// <inheritdoc />
        public override void LoadStateDict(BinaryReader reader)
        {
            base.LoadStateDict(reader);
            Momentum = reader.ReadDouble();
            Dampening = reader.ReadDouble();
            WeightDecay = reader.ReadDouble();
            Nesterov = reader.ReadBoolean();
        }

        /// <inheritdoc />
        public override void LoadStateDict(OptimizerOptions source)
        {
            base.LoadStateDict(source);
            var o = (Options)source;
            (Momentum, Dampening, WeightDecay, Nesterov) = (o.Momentum, o.Dampening, o.WeightDecay, o.Nesterov);
        }
    }

    /// <summary>A parameter group; its momentum is what <c>OneCycleLR</c> cycles per group.</summary>
    public sealed class Group(IEnumerable<Parameter> parameters, Options? options = null) : ParamGroup<Options>(parameters, options!), optim.IMomentum
    {
        /// <inheritdoc />
        public double Momentum { get => Options.Momentum!.Value; set => Options.Momentum = OptimizerChecks.NonNegative(value, nameof(Momentum)); }
    }

    /// <summary>Per-parameter state: the momentum buffer (null until the first step with momentum).</summary>
    public sealed class State(Parameter parameter) : OptimizerState(parameter), IDisposable
    {
        /// <summary>The momentum buffer b.</summary>
        public Tensor? MomentumBuffer { get; internal set; }

        /// <summary>Starts empty: the buffer is made on the first step with momentum.</summary>
        public override void Initialize(OptimizerOptions options) => Dispose();

        /// <inheritdoc />
        public override void SaveStateDict(BinaryWriter writer) => SaveConditionalStateTensor(writer, MomentumBuffer);

        /// <inheritdoc />
        public override void LoadStateDict(BinaryReader reader)
        {
            var buffer = MomentumBuffer;
            LoadConditionalStateTensor(reader, ref buffer, _parameter.device);
            MomentumBuffer = buffer?.DetachFromDisposeScope();
        }

        /// <inheritdoc />
        public override void LoadStateDict(OptimizerState source)
        {
            MomentumBuffer?.Dispose();
            MomentumBuffer = ((State)source).MomentumBuffer?.clone().DetachFromDisposeScope();
        }

        /// <inheritdoc />
        public override bool ApproximatelyEquals(OptimizerState other) =>
            other is State s && (MomentumBuffer is null ? s.MomentumBuffer is null : s.MomentumBuffer is not null && MomentumBuffer.allclose(s.MomentumBuffer));

        /// <inheritdoc />
        public override void to(Device device) => MomentumBuffer = OptimizerChecks.Move(MomentumBuffer, device);

        /// <inheritdoc />
        public void Dispose()
        {
            MomentumBuffer?.Dispose();
            MomentumBuffer = null;
        }
    }

    /// <summary>The momentum of every group (what <c>OneCycleLR</c> cycles when asked to).</summary>
    public double Momentum
    {
        get => ((Options)_parameter_groups[0].Options).Momentum!.Value;
        set
        {
            OptimizerChecks.NonNegative(value, nameof(Momentum));
            foreach (var g in _parameter_groups) ((Options)g.Options).Momentum = value;
        }
    }

    /// <inheritdoc />
    public override void add_param_group(ParamGroup param_group)
    {
        ArgumentNullException.ThrowIfNull(param_group);
        var d = (Options)_defaults;
        var o = param_group.Options as Options ?? new Options();
        var group = param_group as Group ?? new Group(param_group.Parameters, o);
        o.LearningRate ??= d.LearningRate;
        o.Momentum ??= d.Momentum;
        o.Dampening ??= d.Dampening;
        o.WeightDecay ??= d.WeightDecay;
        o.Nesterov ??= d.Nesterov;
        if (o.Nesterov == true && (o.Momentum <= 0 || o.Dampening != 0))
            throw new ArgumentException("Nesterov momentum needs a positive momentum and zero dampening.", nameof(param_group));
        o.InitialLearningRate = o.LearningRate!.Value;
        group.Options = o;
        Track(group, p => new State(p));
    }

    /// <inheritdoc />
    public override Tensor step(Func<Tensor>? closure = null) => _step<ParamGroup>(group =>
    {
        var o = (Options)group.Options;
        double momentum = o.Momentum!.Value, weightDecay = o.WeightDecay!.Value;
        using var negLr = (-group.LearningRate).ToScalar();
        using var decay = weightDecay.ToScalar();
        using var mu = momentum.ToScalar();
        using var keep = (1 - o.Dampening!.Value).ToScalar();
        foreach (var p in group.Parameters)
        {
            var g = p.grad; // the step's dispose scope releases every wrapper and temporary made here
            if (g is null) continue;
            if (weightDecay != 0) g = g.add(p, decay);
            if (momentum != 0)
            {
                var state = (State)_state[p.Handle];
                if (state.MomentumBuffer is null)
                    state.MomentumBuffer = g.clone().DetachFromDisposeScope();
                else
                    state.MomentumBuffer.mul_(mu).add_(g, keep);
                g = o.Nesterov == true ? g.add(state.MomentumBuffer, mu) : state.MomentumBuffer;
            }
            p.add_(g, negLr);
        }
    }, closure)!;

    private static IEnumerable<Parameter> Checked(IEnumerable<Parameter> parameters) => OptimizerChecks.NotEmpty(parameters);
}

/// <summary>
/// Adam (Kingma and Ba, 2015) with bias correction and optional L2 weight decay — PyTorch's <c>torch.optim.Adam</c>
/// (same update, same defaults), safe under GC pressure. For decoupled weight decay use <see cref="AdamW"/>.
/// </summary>
public class Adam : ParamGroupOptimizer, optim.IBetas
{
    private readonly bool _decoupled;

    /// <summary>Creates the optimizer with the usual defaults β₁ = 0.9, β₂ = 0.999, ε = 1e-8, no weight decay.</summary>
    public Adam(IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0)
        : this(parameters, lr, beta1, beta2, eps, weightDecay, decoupled: false)
    {
    }

    private protected Adam(IEnumerable<Parameter> parameters, double lr, double beta1, double beta2, double eps, double weightDecay, bool decoupled)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        _decoupled = decoupled;
        _defaults = new Options
        {
            LearningRate = OptimizerChecks.LearningRate(lr), InitialLearningRate = lr,
            Beta1 = OptimizerChecks.Beta(beta1, nameof(beta1)), Beta2 = OptimizerChecks.Beta(beta2, nameof(beta2)),
            Eps = eps > 0 ? eps : throw new ArgumentOutOfRangeException(nameof(eps), eps, "must be > 0"),
            WeightDecay = OptimizerChecks.NonNegative(weightDecay, nameof(weightDecay)),
        };
        _parameter_groups = new List<ParamGroup>();
        add_param_group(new Group(OptimizerChecks.NotEmpty(parameters)));
    }

    /// <summary>Hyperparameters of one parameter group.</summary>
    public sealed class Options : OptimizerOptions
    {
        /// <summary>β₁, the first moment's decay.</summary>
        public double? Beta1 { get; set; }

        /// <summary>β₂, the second moment's decay.</summary>
        public double? Beta2 { get; set; }

        /// <summary>ε, added to the denominator.</summary>
        public double? Eps { get; set; }

        /// <summary>Weight decay λ (L2 in the gradient for Adam; decoupled for AdamW).</summary>
        public double? WeightDecay { get; set; }

        /// <inheritdoc />
        public override void SaveStateDict(BinaryWriter writer)
        {
            base.SaveStateDict(writer);
            writer.Write(Beta1!.Value);
            writer.Write(Beta2!.Value);
            writer.Write(Eps!.Value);
            writer.Write(WeightDecay!.Value);
        }

        /// <inheritdoc />
        public override void LoadStateDict(BinaryReader reader)
        {
            base.LoadStateDict(reader);
            Beta1 = reader.ReadDouble();
            Beta2 = reader.ReadDouble();
            Eps = reader.ReadDouble();
            WeightDecay = reader.ReadDouble();
        }

        /// <inheritdoc />
        public override void LoadStateDict(OptimizerOptions source)
        {
            base.LoadStateDict(source);
            var o = (Options)source;
            (Beta1, Beta2, Eps, WeightDecay) = (o.Beta1, o.Beta2, o.Eps, o.WeightDecay);
        }
    }

    /// <summary>A parameter group; its betas are what <c>OneCycleLR</c> cycles per group.</summary>
    public sealed class Group(IEnumerable<Parameter> parameters, Options? options = null) : ParamGroup<Options>(parameters, options!), optim.IBetas
    {
        /// <inheritdoc />
        public (double, double) Betas
        {
            get => (Options.Beta1!.Value, Options.Beta2!.Value);
            set => (Options.Beta1, Options.Beta2) = (OptimizerChecks.Beta(value.Item1, "beta1"), OptimizerChecks.Beta(value.Item2, "beta2"));
        }
    }

    /// <summary>Per-parameter state: steps taken and the two moment estimates.</summary>
    public sealed class State(Parameter parameter) : OptimizerState(parameter), IDisposable
    {
        /// <summary>Steps taken for this parameter.</summary>
        public long Step { get; internal set; }

        /// <summary>First moment m.</summary>
        public Tensor? ExpAvg { get; internal set; }

        /// <summary>Second moment v.</summary>
        public Tensor? ExpAvgSq { get; internal set; }

        /// <summary>Starts empty: the moments are made on the first step.</summary>
        public override void Initialize(OptimizerOptions options)
        {
            Dispose();
            Step = 0;
        }

        /// <inheritdoc />
        public override void SaveStateDict(BinaryWriter writer)
        {
            writer.Write(Step);
            SaveConditionalStateTensor(writer, ExpAvg);
            SaveConditionalStateTensor(writer, ExpAvgSq);
        }

        /// <inheritdoc />
        public override void LoadStateDict(BinaryReader reader)
        {
            Step = reader.ReadInt64();
            var (m, v) = (ExpAvg, ExpAvgSq);
            LoadConditionalStateTensor(reader, ref m, _parameter.device);
            LoadConditionalStateTensor(reader, ref v, _parameter.device);
            (ExpAvg, ExpAvgSq) = (m?.DetachFromDisposeScope(), v?.DetachFromDisposeScope());
        }

        /// <inheritdoc />
        public override void LoadStateDict(OptimizerState source)
        {
            var s = (State)source;
            Dispose();
            Step = s.Step;
            ExpAvg = s.ExpAvg?.clone().DetachFromDisposeScope();
            ExpAvgSq = s.ExpAvgSq?.clone().DetachFromDisposeScope();
        }

        /// <inheritdoc />
        public override bool ApproximatelyEquals(OptimizerState other) =>
            other is State s && s.Step == Step && Same(ExpAvg, s.ExpAvg) && Same(ExpAvgSq, s.ExpAvgSq);

        private static bool Same(Tensor? a, Tensor? b) => a is null ? b is null : b is not null && a.allclose(b);

        /// <inheritdoc />
        public override void to(Device device)
        {
            ExpAvg = OptimizerChecks.Move(ExpAvg, device);
            ExpAvgSq = OptimizerChecks.Move(ExpAvgSq, device);
        }

        /// <inheritdoc />
        public void Dispose()
        {
            ExpAvg?.Dispose();
            ExpAvgSq?.Dispose();
            (ExpAvg, ExpAvgSq) = (null, null);
        }
    }

    /// <summary>(β₁, β₂) of every group (what <c>OneCycleLR</c> cycles when asked to).</summary>
    public (double, double) Betas
    {
        get
        {
            var o = (Options)_parameter_groups[0].Options;
            return (o.Beta1!.Value, o.Beta2!.Value);
        }
        set
        {
            OptimizerChecks.Beta(value.Item1, "beta1");
            OptimizerChecks.Beta(value.Item2, "beta2");
            foreach (var g in _parameter_groups) ((Options)g.Options).Beta1 = value.Item1;
            foreach (var g in _parameter_groups) ((Options)g.Options).Beta2 = value.Item2;
        }
    }

    /// <inheritdoc />
    public override void add_param_group(ParamGroup param_group)
    {
        ArgumentNullException.ThrowIfNull(param_group);
        var d = (Options)_defaults;
        var o = param_group.Options as Options ?? new Options();
        var group = param_group as Group ?? new Group(param_group.Parameters, o);
        o.LearningRate ??= d.LearningRate;
        o.Beta1 ??= d.Beta1;
        o.Beta2 ??= d.Beta2;
        o.Eps ??= d.Eps;
        o.WeightDecay ??= d.WeightDecay;
        o.InitialLearningRate = o.LearningRate!.Value;
        group.Options = o;
        Track(group, p => new State(p));
    }

    /// <inheritdoc />
    public override Tensor step(Func<Tensor>? closure = null) => _step<ParamGroup>(group =>
    {
        var o = (Options)group.Options;
        double lr = group.LearningRate, b1 = o.Beta1!.Value, b2 = o.Beta2!.Value, weightDecay = o.WeightDecay!.Value;
        using var beta1 = b1.ToScalar();
        using var beta2 = b2.ToScalar();
        using var oneMinusBeta1 = (1 - b1).ToScalar();
        using var oneMinusBeta2 = (1 - b2).ToScalar();
        using var eps = o.Eps!.Value.ToScalar();
        using var decay = weightDecay.ToScalar();
        using var shrink = (1 - lr * weightDecay).ToScalar();
        foreach (var p in group.Parameters)
        {
            var g = p.grad; // the step's dispose scope releases every wrapper and temporary made here
            if (g is null) continue;
            var s = (State)_state[p.Handle];
            s.ExpAvg ??= zeros_like(p).DetachFromDisposeScope();
            s.ExpAvgSq ??= zeros_like(p).DetachFromDisposeScope();
            s.Step++;
            if (weightDecay != 0)
            {
                if (_decoupled) p.mul_(shrink);
                else g = g.add(p, decay);
            }
            s.ExpAvg.mul_(beta1).add_(g, oneMinusBeta1);
            s.ExpAvgSq.mul_(beta2).addcmul_(g, g, oneMinusBeta2);
            double bc1 = 1 - Math.Pow(b1, s.Step), bc2 = 1 - Math.Pow(b2, s.Step);
            using var sqrtBc2 = Math.Sqrt(bc2).ToScalar();
            using var stepSize = (-lr / bc1).ToScalar();
            var denom = s.ExpAvgSq.sqrt().div_(sqrtBc2).add_(eps, Scalars.One);
            p.addcdiv_(s.ExpAvg, denom, stepSize);
        }
    }, closure)!;
}

/// <summary>
/// AdamW (Loshchilov and Hutter, 2019): Adam with decoupled weight decay, <c>p ← p·(1 − lr·λ)</c> before the Adam update
/// — PyTorch's <c>torch.optim.AdamW</c> (default λ = 0.01), safe under GC pressure.
/// </summary>
public sealed class AdamW : Adam
{
    /// <summary>Creates the optimizer with PyTorch's defaults β₁ = 0.9, β₂ = 0.999, ε = 1e-8, λ = 0.01.</summary>
    public AdamW(IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0.01)
        : base(parameters, lr, beta1, beta2, eps, weightDecay, decoupled: true)
    {
    }
}

internal static class OptimizerChecks
{
    /// <summary>PyTorch's "optimizer got an empty parameter list", with the usual cause (6.4: a lazy net before its dry run).</summary>
    public static List<Parameter> NotEmpty(IEnumerable<Parameter> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        var list = parameters.ToList();
        return list.Count > 0 ? list : throw new ArgumentException(
            "The optimizer got an empty parameter list. If the module has lazy layers (LazyLinear), run one forward pass " +
            "(a dry run) before creating the optimizer (6.4).", nameof(parameters));
    }

    public static double LearningRate(double lr) => LearningRates.Check(lr, nameof(lr));

    public static double NonNegative(double value, string name) =>
        value >= 0 && double.IsFinite(value) ? value : throw new ArgumentOutOfRangeException(name, value, $"{name} must be a finite number ≥ 0.");

    public static double Beta(double value, string name) =>
        value is >= 0 and < 1 ? value : throw new ArgumentOutOfRangeException(name, value, "must be in [0, 1)");

    public static Tensor? Move(Tensor? tensor, Device device)
    {
        if (tensor is null || tensor.device == device) return tensor;
        var moved = tensor.to(device).DetachFromDisposeScope();
        tensor.Dispose();
        return moved;
    }

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
