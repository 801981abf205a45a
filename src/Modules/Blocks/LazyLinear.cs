using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// 6.4 Lazy initialization: a linear layer whose <c>in_features</c> is inferred from the first input it sees.
/// TorchSharp has no lazy modules, so this is PyTorch's <c>nn.LazyLinear</c> rebuilt.
/// </summary>
/// <remarks>
/// Until the first forward pass (a "dry run") the layer holds no parameters: <see cref="IsInitialized"/> is false and
/// <see cref="weight"/> throws <see cref="LazyModuleNotInitializedException"/>. The first forward creates weight and bias
/// with <c>nn.Linear</c>'s default initialization, U(-1/sqrt(in), 1/sqrt(in)), on the input's device and dtype.
/// Create optimizers after the dry run: parameters that do not exist yet cannot be handed to an optimizer.
/// </remarks>
public sealed class LazyLinear : nn.Module<Tensor, Tensor>, ILinearLayer
{
    private Parameter? _weight;
    private Parameter? _bias;
    private readonly bool _hasBias;
    private Device? _target; // set by .to() before materialization; parameters are then created there

    /// <summary>Creates a lazy linear layer with the given number of outputs.</summary>
    public LazyLinear(long outFeatures, bool hasBias = true) : base(TorchSharpRuntime.Checked(nameof(LazyLinear)))
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outFeatures);
        OutFeatures = outFeatures;
        _hasBias = hasBias;
    }

    /// <summary>Number of outputs.</summary>
    public long OutFeatures { get; }

    /// <summary>Whether the layer adds a bias.</summary>
    public bool HasBias => _hasBias;

    /// <summary>Number of inputs, or null before the first forward pass.</summary>
    public long? InFeatures => _weight is null ? null : _weight.shape[1];

    /// <summary>True once the first forward pass (or a state-dict load) has created the parameters.</summary>
    public bool IsInitialized => _weight is not null;

    /// <summary>The (out, in) weight. Throws <see cref="LazyModuleNotInitializedException"/> before the dry run.</summary>
    public Parameter weight
    {
        get => _weight ?? throw new LazyModuleNotInitializedException(Describe());
        private set
        {
            _weight = (Parameter)value.DetachFromDisposeScope();
            ConditionallyRegisterParameter(nameof(weight), _weight);
        }
    }

    /// <summary>The bias, or null when built without one. Throws before the dry run.</summary>
    public Parameter? bias
    {
        get => IsInitialized ? _bias : throw new LazyModuleNotInitializedException(Describe());
        private set
        {
            _bias = value?.DetachFromDisposeScope() as Parameter;
            ConditionallyRegisterParameter(nameof(bias), _bias);
        }
    }

    Parameter? ILinearLayer.Weight => _weight;
    Parameter? ILinearLayer.Bias => _bias;

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        if (input.dim() == 0)
            throw new ArgumentException($"{Describe()} needs an input with at least one dimension; got a scalar.", nameof(input));
        long width = input.shape[^1];
        if (_weight is null)
            Materialize(width, input.device, input.dtype);
        else if (width != _weight.shape[1])
            throw new ArgumentException(
                $"{Describe()} was initialized for inputs of width {_weight.shape[1]} but got width {width} (input shape [{string.Join(", ", input.shape)}]).",
                nameof(input));
        return nn.functional.linear(input, _weight!, _bias);
    }

    /// <summary>
    /// Creates the parameters for inputs of width <paramref name="inFeatures"/> (what the first forward pass does).
    /// Used by state-dict loading to materialize a lazy net from saved shapes.
    /// </summary>
    public void Materialize(long inFeatures, Device? device = null, ScalarType? dtype = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inFeatures);
        if (_weight is not null)
            throw new InvalidOperationException($"{Describe()} is already initialized.");
        if (_target is not null && device is not null && _target.type != device.type)
            throw new DeviceMismatchException($"{Describe()} was moved to {_target} but its first input is on {device}.");
        var dev = _target ?? device ?? CPU;
        var type = dtype ?? get_default_dtype();
        if (type is not (ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Float32 or ScalarType.Float64))
            throw new ArgumentException($"{Describe()} needs floating-point inputs; got {type}.", nameof(dtype));
        double bound = 1.0 / Math.Sqrt(inFeatures);
        using var noGrad = no_grad();
        // Parameters must outlive any dispose scope the dry run happens in: the setters detach them.
        var w = empty(OutFeatures, inFeatures, dtype: type, device: dev);
        nn.init.uniform_(w, -bound, bound);
        weight = new Parameter(w);
        if (_hasBias)
        {
            var b = empty(OutFeatures, dtype: type, device: dev);
            nn.init.uniform_(b, -bound, bound);
            bias = new Parameter(b);
        }
    }

    private string Describe() =>
        $"LazyLinear(in_features={(InFeatures?.ToString() ?? "?")}, out_features={OutFeatures}, bias={_hasBias})";

    /// <inheritdoc />
    public override string ToString() => IsInitialized ? Describe() : Describe() + " [uninitialized]";

    /// <inheritdoc />
    protected override nn.Module _to(Device device, ScalarType dtype, bool non_blocking)
    {
        MoveParameters(device, dtype);
        _target = device;
        _deviceType = device.type;
        _deviceIndex = device.index;
        return this;
    }

    /// <inheritdoc />
    protected override nn.Module _to(DeviceType deviceType, int deviceIndex, bool non_blocking)
    {
        var device = new Device(deviceType, deviceType == DeviceType.CUDA ? deviceIndex : -1);
        MoveParameters(device, null);
        _target = device;
        _deviceType = device.type;
        _deviceIndex = device.index;
        return this;
    }

    /// <inheritdoc />
    protected override nn.Module _to(ScalarType dtype, bool non_blocking)
    {
        MoveParameters(null, dtype);
        return this;
    }

    private void MoveParameters(Device? device, ScalarType? dtype)
    {
        if (device is { type: DeviceType.CUDA } && !cuda.is_available())
            throw new InvalidOperationException("CUDA is not available.");
        if (_weight is not null && ReplaceParameter(dtype, device, _weight, out var w))
        {
            _weight.Dispose();
            weight = w!;
        }
        if (_bias is not null && ReplaceParameter(dtype, device, _bias, out var b))
        {
            _bias.Dispose();
            bias = b!;
        }
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _weight?.Dispose();
            _bias?.Dispose();
        }
        base.Dispose(disposing);
    }
}
