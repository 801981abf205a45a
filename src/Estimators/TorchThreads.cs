using static TorchSharp.torch;

namespace MlNetGuide.Estimators;

/// <summary>
/// The one seam for libtorch's intra-op thread count while the estimator trains (process-wide in libtorch): Fit sets
/// <see cref="NeuralNetworkOptions.NumberOfThreads"/> for its duration and the last Fit to end restores what was there
/// before, so scoring and other code in the process keep their setting.
/// </summary>
internal sealed class TorchThreads : IDisposable
{
    private static readonly object Gate = new();
    private static int s_active;
    private static int s_before;
    private bool _disposed;

    private TorchThreads() { }

    /// <summary>Sets <paramref name="threads"/> intra-op threads until the returned object is disposed.</summary>
    public static TorchThreads Use(int threads)
    {
        lock (Gate)
        {
            if (s_active++ == 0) s_before = get_num_threads();
            set_num_threads(threads);
        }
        return new TorchThreads();
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        lock (Gate)
            if (--s_active == 0) set_num_threads(s_before);
    }
}
