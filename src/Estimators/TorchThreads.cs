using static TorchSharp.torch;

namespace MlNetGuide.Estimators;

/// <summary>
/// The one seam for libtorch's intra-op thread count while the estimator trains. libtorch's CPU build parallelizes with
/// OpenMP, whose thread count belongs to the calling thread: Fit sets <see cref="NeuralNetworkOptions.NumberOfThreads"/>
/// on the thread that trains (the one calling Fit) and restores that thread's previous value when it ends, so other
/// threads, and scoring after Fit, keep their own setting.
/// </summary>
internal sealed class TorchThreads : IDisposable
{
    private readonly int _before;
    private readonly int _threadId = Environment.CurrentManagedThreadId;
    private bool _disposed;

    private TorchThreads(int before) => _before = before;

    /// <summary>Sets <paramref name="threads"/> intra-op threads on this thread until the returned object is disposed (on this thread).</summary>
    public static TorchThreads Use(int threads)
    {
        // The first libtorch call on a thread copies in the process's last setting; get_num_threads makes that happen
        // before the value to restore is read.
        var scope = new TorchThreads(get_num_threads());
        set_num_threads(threads);
        return scope;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (Environment.CurrentManagedThreadId != _threadId)
            throw new InvalidOperationException("TorchThreads must be disposed on the thread that set them.");
        set_num_threads(_before);
    }
}
