namespace MlNetGuide.Modules;

/// <summary>
/// How much memory a loader may allocate for what one file describes: tensors, inflated zip entries, a network built
/// from a saved architecture. Every loader (<see cref="TensorIO"/>, <see cref="StateDict"/>, and the Estimators'
/// <c>NeuralModel.Load</c>) checks the sizes a file declares against this budget <em>before</em> allocating, and refuses
/// a file that exceeds it with a <see cref="ModelFormatException"/>.
/// </summary>
/// <remarks>
/// The default is derived from the file: at least <see cref="FloorBytes"/>, or <see cref="DefaultInflation"/> times the
/// file's length, whichever is larger. An uncompressed file (TorchSharp's format, safetensors, PyTorch's zip) never needs
/// more than its own length; a deflated model zip needs little more. A small crafted file that claims gigabytes is
/// therefore refused, while a legitimate model of any size loads. Pass
/// <c>new LoadLimits { MaxLoadBytes = … }</c> to raise or lower the budget.
/// </remarks>
public sealed record LoadLimits
{
    /// <summary>The smallest default budget, whatever the file's length: 64 MiB.</summary>
    public const long FloorBytes = 64L << 20;

    /// <summary>The default budget in multiples of the file's length.</summary>
    public const int DefaultInflation = 8;

    /// <summary>The limits every loader uses when none are passed.</summary>
    public static LoadLimits Default { get; } = new();

    /// <summary>
    /// The most bytes a loader may allocate for one file (all tensors and inflated entries together); null derives it
    /// from the file's length (see the remarks).
    /// </summary>
    public long? MaxLoadBytes
    {
        get => _maxLoadBytes;
        init
        {
            if (value is <= 0) throw new ArgumentOutOfRangeException(nameof(MaxLoadBytes), value, "MaxLoadBytes must be positive (or null for the default).");
            _maxLoadBytes = value;
        }
    }

    private readonly long? _maxLoadBytes;

    /// <summary>The budget for a file of <paramref name="fileLength"/> bytes.</summary>
    public long BudgetFor(long fileLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fileLength);
        if (_maxLoadBytes is long max) return max;
        return fileLength > long.MaxValue / DefaultInflation ? long.MaxValue : Math.Max(FloorBytes, fileLength * DefaultInflation);
    }
}
