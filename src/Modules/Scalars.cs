using TorchSharp;

namespace MlNetGuide.Modules;

/// <summary>
/// Scalars that stay reachable for the life of the process, for tensor arithmetic in loops.
/// </summary>
/// <remarks>
/// TorchSharp turns a number in <c>x + 1</c>, <c>x.add_(y)</c> (alpha = 1), <c>x.gt(0)</c> or <c>p.add_(g, alpha: lr)</c>
/// into a temporary <see cref="Scalar"/> whose finalizer frees native memory. Optimized code may let the GC finalize it
/// while the native call still reads it: libtorch then fails with "Expected false to be true … toDouble/toFloat" or the
/// process crashes under a busy GC (TorchSharp PRs #1434/#1496 are open about it; tests/Probe's gc-stress mode reproduces it).
/// Hot paths in MlNetGuide pass these static Scalars, or a <c>using var</c> Scalar, instead of a number.
/// </remarks>
public static class Scalars
{
    /// <summary>0.</summary>
    public static readonly Scalar Zero = 0.0.ToScalar();

    /// <summary>1.</summary>
    public static readonly Scalar One = 1.0.ToScalar();

    /// <summary>-1.</summary>
    public static readonly Scalar MinusOne = (-1.0).ToScalar();

    /// <summary>0.5.</summary>
    public static readonly Scalar Half = 0.5.ToScalar();
}
