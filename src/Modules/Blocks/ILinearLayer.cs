using TorchSharp.Modules;

namespace MlNetGuide.Modules;

/// <summary>
/// A layer with a weight matrix and an optional bias: what initializers act on (6.3). TorchSharp's
/// <c>nn.Linear</c> is recognized directly; our own layers implement this interface.
/// </summary>
public interface ILinearLayer
{
    /// <summary>The weight, or null when not yet materialized (a lazy layer before its dry run).</summary>
    Parameter? Weight { get; }

    /// <summary>The bias, or null when the layer has none or is not yet materialized.</summary>
    Parameter? Bias { get; }
}
