using MlNetGuide.Modules;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Training;

// Why our own optimizers, and when they can go: see ParamGroupOptimizer.

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
            MomentumBuffer = OptimizerChecks.LoadStateTensor(reader, MomentumBuffer, _parameter);
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
            if (g.is_sparse && (weightDecay != 0 || momentum != 0)) g = g.to_dense(); // a sparse gradient (FeatureBag's) adds as it is only without them
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
