using MlNetGuide.Modules;

namespace MlNetGuide.Estimators;

/// <summary>What one model file may still allocate: inflated entries and the networks built from it.</summary>
internal sealed class LoadBudget(long total, string source)
{
    public long Total { get; } = total;
    public long Left => Total - _used;
    private long _used;

    public void Charge(long bytes, string what)
    {
        if (bytes > Left)
            throw new ModelFormatException(
                $"{source}: {what} needs {bytes:N0} bytes, which with the {_used:N0} bytes before it exceeds the load budget of {Total:N0} bytes " +
                "(LoadLimits.MaxLoadBytes; raise it only for a file you trust).");
        _used += bytes;
    }
}
