namespace MlNetGuide.Modules;

/// <summary>A lazy layer was used in a way that needs its parameters before its first forward pass.</summary>
public sealed class LazyModuleNotInitializedException(string module)
    : InvalidOperationException(
        $"{module} has uninitialized parameters: its input width is inferred from the first input. " +
        "Run one forward pass (a dry run, e.g. net.call(X) or net.ApplyInit(X, init)) before reading parameters " +
        "or creating an optimizer.")
{
}

/// <summary>Tensors or modules that must share a device were found on different devices.</summary>
public sealed class DeviceMismatchException(string message) : InvalidOperationException(message)
{
}

/// <summary>A state dict does not fit the module it is loaded into (keys, shapes or dtypes). Nothing was loaded.</summary>
public sealed class StateDictMismatchException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    public StateDictMismatchException(string message, IReadOnlyList<string> missingKeys, IReadOnlyList<string> unexpectedKeys,
        IReadOnlyList<string> mismatches)
        : base(message)
    {
        MissingKeys = missingKeys;
        UnexpectedKeys = unexpectedKeys;
        Mismatches = mismatches;
    }

    /// <summary>Keys the module has and the state dict lacks.</summary>
    public IReadOnlyList<string> MissingKeys { get; }

    /// <summary>Keys the state dict has and the module lacks.</summary>
    public IReadOnlyList<string> UnexpectedKeys { get; }

    /// <summary>One line per key whose shape or dtype differs.</summary>
    public IReadOnlyList<string> Mismatches { get; }
}

/// <summary>A file could not be read as the format it claims (truncated, corrupt or another format). Nothing was loaded.</summary>
public sealed class ModelFormatException(string message, Exception? inner = null) : IOException(message, inner)
{
}

/// <summary>
/// TorchSharp's native library cannot be loaded in this process. The message names the cause (e.g. the missing
/// <c>GLIBCXX</c> version, or the missing libtorch package) and the fix; see <see cref="TorchSharpRuntime"/>.
/// </summary>
public sealed class TorchSharpLoadException(string message, string? missingGlibcxxVersion = null, Exception? inner = null)
    : InvalidOperationException(message, inner)
{
    /// <summary>The libstdc++ symbol version the loader could not find (e.g. <c>GLIBCXX_3.4.32</c>), or null for other causes.</summary>
    public string? MissingGlibcxxVersion { get; } = missingGlibcxxVersion;
}
