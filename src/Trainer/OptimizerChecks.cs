using MlNetGuide.Modules;
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
            if (g is { is_sparse: true }) p.grad = null; // a sparse gradient's next backward starts afresh (PyTorch's set_to_none)
            else g?.zero_();
        }
    }

    /// <summary>
    /// Reads a state tensor that TorchSharp's <c>SaveConditionalStateTensor</c> wrote (a flag, then dtype, rank and dims
    /// as LEB128, read with the state-dict codec's reader, then the bytes), refusing one whose dtype or shape is not <paramref name="parameter"/>'s before
    /// allocating: TorchSharp's own reader allocates whatever shape the file declares (4 TiB from a 12 KB checkpoint) and
    /// a wrong shape fails only at the first step, inside libtorch. Returns the new tensor (the old one is disposed).
    /// </summary>
    /// <exception cref="InvalidDataException">The dtype, rank or a dimension differs from the parameter's.</exception>
    /// <exception cref="EndOfStreamException">The bytes end early.</exception>
    public static Tensor? LoadStateTensor(BinaryReader reader, Tensor? current, Parameter parameter)
    {
        if (!reader.ReadBoolean())
        {
            current?.Dispose();
            return null;
        }
        string Expected() => $"this {parameter.dtype} parameter of shape [{string.Join(", ", parameter.shape)}]";
        var type = TensorDictCodec.ReadLeb(reader);
        if (type != (long)parameter.dtype) throw new InvalidDataException($"an optimizer state of dtype {type} for {Expected()}");
        var rank = TensorDictCodec.ReadLeb(reader);
        if (rank != parameter.dim()) throw new InvalidDataException($"an optimizer state of rank {rank} for {Expected()}");
        for (int i = 0; i < rank; i++)
        {
            var d = TensorDictCodec.ReadLeb(reader);
            if (d != parameter.shape[i]) throw new InvalidDataException($"an optimizer state with dimension {i} = {d} for {Expected()}");
        }
        var loaded = empty(parameter.shape, parameter.dtype).DetachFromDisposeScope();
        try
        {
            loaded.ReadBytesFromStream(reader.BaseStream);
        }
        catch
        {
            loaded.Dispose();
            throw;
        }
        current?.Dispose();
        return loaded.device == parameter.device ? loaded : loaded.to(parameter.device, disposeAfter: true).DetachFromDisposeScope();
    }
}
