using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// Factories and typed accessors that let the chapter's code read like the book: <c>Layers.LazyLinear(256)</c> beside
/// TorchSharp's <c>nn.Linear(20, 256)</c> (PyTorch's <c>nn.LazyLinear(256)</c>), and <c>net.Layer&lt;Linear&gt;(2).bias</c>
/// for the book's <c>net[2].bias</c> (TorchSharp's indexer returns an untyped module).
/// </summary>
public static class Layers
{
    /// <summary>PyTorch's <c>nn.LazyLinear(out_features)</c>: a <see cref="Modules.LazyLinear"/> (6.4).</summary>
    public static LazyLinear LazyLinear(long outFeatures, bool hasBias = true) => new(outFeatures, hasBias);

    /// <summary>
    /// The layer at <paramref name="index"/> as a <typeparamref name="T"/>: the book's <c>net[2]</c> with the layer's
    /// own members (<c>net.Layer&lt;Linear&gt;(2).weight</c>). Throws naming the layer's actual type when it is not a
    /// <typeparamref name="T"/>.
    /// </summary>
    public static T Layer<T>(this Sequential net, int index) where T : nn.Module
    {
        ArgumentNullException.ThrowIfNull(net);
        var count = net.Count;
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        if (index >= count)
            throw new ArgumentOutOfRangeException(nameof(index), index, $"The Sequential has {count} layers (0 to {count - 1}).");
        var layer = net[index];
        return layer as T ?? throw new InvalidCastException(
            $"Layer {index} of the Sequential is a {layer.GetType().Name}, not a {typeof(T).Name}.");
    }
}
