namespace MlNetGuide.Training;

/// <summary>How training spreads across processes (see <see cref="Collectives.For"/>).</summary>
public enum Distribution
{
    /// <summary>Data parallel on MPI when an MPI launcher (<c>mpirun</c>, <c>mpiexec</c>, <c>srun</c>) started this process with more than one rank; else one process.</summary>
    Auto,

    /// <summary>One process, whatever launched it: e.g. each rank of an MPI job trains a model of its own.</summary>
    SingleProcess,

    /// <summary>Data parallel on MPI; a process started without a launcher is a job of one rank.</summary>
    Mpi,
}
