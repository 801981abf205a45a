namespace MlNetGuide.Training;

/// <summary>
/// What data-parallel training across processes needs from a communication library (MPI's names in brackets): this
/// process's rank and the number of ranks, an in-place sum over all ranks (<c>MPI_Allreduce</c> with <c>MPI_SUM</c>),
/// a broadcast from one rank (<c>MPI_Bcast</c>), a barrier, and ending the whole job (<c>MPI_Abort</c>).
/// </summary>
/// <remarks>
/// Every rank calls the same collectives in the same order with the same sizes; a rank that calls a different one waits
/// forever, which is why the Trainer agrees its step counts and settings before the first step (see
/// <see cref="Collectives.Agree"/>). <see cref="Collectives.SingleProcess"/> is the default: one rank, every call a no-op.
/// </remarks>
public interface ICollectives
{
    /// <summary>This process's rank, 0 to <see cref="Size"/> − 1 (<c>MPI_Comm_rank</c>).</summary>
    int Rank { get; }

    /// <summary>The number of ranks in the job (<c>MPI_Comm_size</c>).</summary>
    int Size { get; }

    /// <summary>Replaces every element with its sum over all ranks (<c>MPI_Allreduce</c>, in place).</summary>
    void AllReduceSum(Span<float> values);

    /// <inheritdoc cref="AllReduceSum(Span{float})"/>
    void AllReduceSum(Span<double> values);

    /// <summary>Copies <paramref name="root"/>'s bytes into every other rank's <paramref name="bytes"/>, of the same length (<c>MPI_Bcast</c>).</summary>
    void Broadcast(Span<byte> bytes, int root);

    /// <summary>Returns once every rank has called it (<c>MPI_Barrier</c>).</summary>
    void Barrier();

    /// <summary>
    /// Ends every rank of the job with <paramref name="exitCode"/> after writing <paramref name="message"/> to this
    /// process's standard error (<c>MPI_Abort</c>): what a rank does when it cannot go on, since the others would wait
    /// for it forever. Does not return.
    /// </summary>
    void Abort(string message, int exitCode);
}
