using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>
/// One minibatch as d2l passes it around: the inputs, then the target last. The batch owns its tensors.
/// </summary>
public sealed class Batch : IDisposable
{
    /// <summary>Creates a batch from its tensors (inputs first, target last).</summary>
    public Batch(params Tensor[] tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (tensors.Length < 2) throw new ArgumentException("A batch needs at least one input tensor and a target.", nameof(tensors));
        ArgumentNullException.ThrowIfNull(tensors[0], nameof(tensors));
        var first = tensors[0].shape; // one native call per tensor: shape allocates its array each time
        long n = first.Length > 0 ? first[0] : throw new ArgumentException("Batch tensors need a leading batch dimension.", nameof(tensors));
        for (int i = 1; i < tensors.Length; i++)
        {
            ArgumentNullException.ThrowIfNull(tensors[i], nameof(tensors));
            var shape = tensors[i].shape;
            if (shape.Length == 0 || shape[0] != n)
                throw new ArgumentException($"All tensors of a batch must have {n} rows; found shape [{string.Join(", ", shape)}].", nameof(tensors));
        }
        Tensors = tensors;
    }

    /// <summary>Every tensor, target last.</summary>
    public IReadOnlyList<Tensor> Tensors { get; }

    /// <summary>The inputs (all tensors but the last).</summary>
    public IEnumerable<Tensor> Inputs => Tensors.Take(Tensors.Count - 1);

    /// <summary>The first input: what a one-input module is called with.</summary>
    public Tensor X => Tensors[0];

    /// <summary>The target (the last tensor).</summary>
    public Tensor Y => Tensors[^1];

    /// <summary>Number of examples.</summary>
    public long Size => Tensors[0].shape[0];

    /// <summary>Disposes every tensor.</summary>
    public void Dispose()
    {
        foreach (var t in Tensors) t.Dispose();
    }
}
