using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>Which LeNet: the book's (sigmoid, average pooling) or the one people train today (ReLU, max pooling).</summary>
public enum LeNetStyle
{
    /// <summary>D2L 7.6 as printed: sigmoid activations and 2×2 average pooling (LeCun et al., 1998).</summary>
    Book,

    /// <summary>The same layers with ReLU and 2×2 max pooling: trains much faster with SGD or Adam.</summary>
    Modern,
}

/// <summary>
/// D2L 7.6 LeNet: two convolution blocks (5×5 kernels, 6 then 16 channels, each followed by an activation and 2×2
/// pooling), then three fully connected layers (120, 84, classes). The dense layers are <see cref="LazyLinear"/>, so
/// the flattened width (16 × 5 × 5 for a 28×28 image) is inferred on the first forward pass, as the book's
/// <c>nn.LazyLinear</c> does.
/// </summary>
/// <remarks>
/// Takes images (N, C, H, W), or rows of C·H·W pixels (N, C·H·W) as an ML.NET feature vector holds them, which it
/// reshapes to (N, C, H, W). <see cref="LayerSummary"/> is d2l's <c>layer_summary</c>.
/// </remarks>
public sealed class LeNet : nn.Module<Tensor, Tensor>
{
    private readonly Sequential layers;
    private readonly long[] _image;

    /// <summary>Creates LeNet for <paramref name="classes"/> classes and images of the given shape.</summary>
    public LeNet(long classes = 10, long channels = 1, long height = 28, long width = 28, LeNetStyle style = LeNetStyle.Modern)
        : base(TorchSharpRuntime.Checked(nameof(LeNet)))
    {
        if (classes < 1) throw new ArgumentOutOfRangeException(nameof(classes), classes, "LeNet needs at least one output.");
        if (channels < 1) throw new ArgumentOutOfRangeException(nameof(channels), channels, "An image has at least one channel.");
        // Two 5x5 convolutions (the first padded by 2) and two 2x2 poolings: H/2 - 4 must leave at least one 2x2 window.
        if (height < 12 || width < 12)
            throw new ArgumentOutOfRangeException(nameof(height), $"{height}x{width}", "LeNet needs images of at least 12x12 pixels.");
        _image = [channels, height, width];
        Style = style;
        nn.Module<Tensor, Tensor> Act() => style == LeNetStyle.Book ? nn.Sigmoid() : nn.ReLU();
        nn.Module<Tensor, Tensor> Pool() => style == LeNetStyle.Book ? nn.AvgPool2d(2, 2) : nn.MaxPool2d(2, 2);
        layers = nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding: 2), Act(), Pool(),
            nn.Conv2d(6, 16, 5), Act(), Pool(),
            nn.Flatten(),
            new LazyLinear(120), Act(),
            new LazyLinear(84), Act(),
            new LazyLinear(classes));
        RegisterComponents();
    }

    /// <summary>The activation and pooling used.</summary>
    public LeNetStyle Style { get; }

    /// <summary>The layers, in order (index them as the book does: <c>net[0]</c> is the first convolution).</summary>
    public Sequential Layers => layers;

    /// <summary>The image shape (C, H, W) this LeNet reshapes flat rows to.</summary>
    public IReadOnlyList<long> ImageShape => _image;

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => layers.call(AsImages(x));

    private Tensor AsImages(Tensor x)
    {
        long pixels = _image[0] * _image[1] * _image[2];
        return x.dim() switch
        {
            4 => x,
            2 when x.shape[1] == pixels => x.view(x.shape[0], _image[0], _image[1], _image[2]),
            _ => throw new ArgumentException(
                $"LeNet takes images of shape (N, {_image[0]}, {_image[1]}, {_image[2]}) or rows of {pixels} pixels; got shape [{string.Join(", ", x.shape)}]."),
        };
    }

    /// <summary>
    /// d2l's <c>layer_summary</c>: runs one input of <paramref name="inputShape"/> (default: one image) through the
    /// layers and returns each layer's name and output shape, materializing the lazy layers on the way.
    /// </summary>
    public IReadOnlyList<(string Layer, long[] OutputShape)> LayerSummary(params long[] inputShape)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var x = zeros(inputShape.Length == 0 ? [1, _image[0], _image[1], _image[2]] : inputShape);
        return ModuleSummary.LayerShapes(layers, AsImages(x));
    }

    /// <summary>Parameters a LeNet of this shape holds, computed without building one (for loaders that check first).</summary>
    public static long ParameterCount(long classes, long channels, long height, long width)
    {
        long h = (height / 2 - 4) / 2, w = (width / 2 - 4) / 2; // after conv(pad 2), pool, conv(5), pool
        long flat = checked(16 * h * w);
        return checked(6 * channels * 25 + 6 + 16 * 6 * 25 + 16 + flat * 120 + 120 + 120 * 84 + 84 + 84 * classes + classes);
    }
}
