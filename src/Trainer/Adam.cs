using MlNetGuide.Modules;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Training;

// Why our own optimizers, and when they can go: see ParamGroupOptimizer.

/// <summary>
/// Adam (Kingma and Ba, 2015) with bias correction and optional L2 weight decay — PyTorch's <c>torch.optim.Adam</c>
/// (same update, same defaults), safe under GC pressure. For decoupled weight decay use <see cref="AdamW"/>.
/// </summary>
public class Adam : ParamGroupOptimizer, optim.IBetas
{
    private readonly bool _decoupled;

    /// <summary>
    /// Whether a row-sparse gradient of a CPU float32 parameter takes the fused loop (<see cref="FusedSparseAdam"/>) rather
    /// than the tensor ops every device runs; the same update either way. Tests compare the two.
    /// </summary>
    internal bool FuseSparseOnCpu { get; init; } = true;

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

        /// <summary>The fused sparse step's scratch: each row's place among a step's touched rows, -1 between steps.</summary>
        internal int[]? RowSlots { get; set; }

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
            var step = reader.ReadInt64();
            if (step < 0) throw new InvalidDataException($"an Adam state of {step} steps");
            Step = step;
            ExpAvg = OptimizerChecks.LoadStateTensor(reader, ExpAvg, _parameter);
            ExpAvgSq = OptimizerChecks.LoadStateTensor(reader, ExpAvgSq, _parameter);
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
        using var negLrDecay = (-lr * weightDecay).ToScalar();
        foreach (var p in group.Parameters)
        {
            var g = p.grad; // the step's dispose scope releases every wrapper and temporary made here
            if (g is null) continue;
            var s = (State)_state[p.Handle];
            s.ExpAvg ??= zeros_like(p).DetachFromDisposeScope();
            s.ExpAvgSq ??= zeros_like(p).DetachFromDisposeScope();
            s.Step++;
            if (g.is_sparse && FuseSparseOnCpu && FusedSparseAdam.Applies(p, g, s.ExpAvg, s.ExpAvgSq))
            {
                s.RowSlots ??= NewRowSlots(p.shape[0]);
                try
                {
                    FusedSparseAdam.Step(p, g, s.ExpAvg, s.ExpAvgSq, s.RowSlots, s.Step, lr, b1, b2, o.Eps!.Value, weightDecay, _decoupled);
                }
                catch (Exception e) when (e is ArgumentException or NotSupportedException)
                {
                    s.Step--; // refused before anything moved: the step did not happen
                    throw;
                }
                continue;
            }
            if (g.is_sparse)
            {
                LazyStep(p, g, s, lr, b1, b2, beta1, beta2, oneMinusBeta1, oneMinusBeta2, eps, weightDecay == 0 ? null : decay, negLrDecay);
                continue;
            }
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

    private static int[] NewRowSlots(long rows)
    {
        var slots = new int[checked((int)rows)];
        Array.Fill(slots, -1);
        return slots;
    }

    /// <summary>
    /// The update for a row-sparse gradient (PyTorch's <c>SparseAdam</c>, "lazy" Adam): only the rows the gradient touches
    /// move, and only their moments decay; the step count, and so the bias correction, is the parameter's. Weight decay
    /// too reaches only those rows. A dense gradient through it moves every row exactly as <see cref="step"/> does.
    /// </summary>
    private void LazyStep(Parameter p, Tensor gradient, State s, double lr, double b1, double b2, Scalar beta1, Scalar beta2,
        Scalar oneMinusBeta1, Scalar oneMinusBeta2, Scalar eps, Scalar? decay, Scalar negLrDecay)
    {
        var (rows, g) = SparseGradients.Summed(gradient);
        var weights = decay is null ? null : p.index_select(0, rows); // only decay needs the rows' weights
        if (weights is not null && !_decoupled) g = g.add(weights, decay!);
        var m = s.ExpAvg!.index_select(0, rows).mul_(beta1).add_(g, oneMinusBeta1);
        var v = s.ExpAvgSq!.index_select(0, rows).mul_(beta2).addcmul_(g, g, oneMinusBeta2);
        s.ExpAvg.index_copy_(0, rows, m);
        s.ExpAvgSq.index_copy_(0, rows, v);
        double bc1 = 1 - Math.Pow(b1, s.Step), bc2 = 1 - Math.Pow(b2, s.Step);
        using var sqrtBc2 = Math.Sqrt(bc2).ToScalar();
        using var stepSize = (-lr / bc1).ToScalar();
        var denom = v.sqrt().div_(sqrtBc2).add_(eps, Scalars.One);
        var delta = m.div_(denom).mul_(stepSize); // m is no longer needed: the state holds its copy
        if (weights is not null && _decoupled) delta.add_(weights, negLrDecay); // p·(1 − lr·λ) = p + (−lr·λ)·p
        p.index_add_(0, rows, delta, Scalars.One); // adding the change, not copying rows back: one scatter, no gather of p
    }
}
