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
/// <remarks>
/// These can go once TorchSharp's own <c>optim.SGD</c>/<c>optim.Adam</c> survive the GC-stress test (tests/Probe
/// <c>gc-stress</c>; TorchSharp 0.107 aborts within 1,000 steps while another thread forces GCs: an implicit Scalar
/// finalized during <c>THSTensor_add_</c>).
/// </remarks>
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
