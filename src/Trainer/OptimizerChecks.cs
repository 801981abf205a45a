using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>The argument checks and small helpers <see cref="Sgd"/>, <see cref="Adam"/> and <see cref="AdamW"/> share.</summary>
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
