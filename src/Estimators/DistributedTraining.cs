using Microsoft.ML;
using MlNetGuide.Modules;
using MlNetGuide.Training;

namespace MlNetGuide.Estimators;

/// <summary>
/// What a program that runs under <c>mpirun</c> asks about its rank: which one it is, and how to save the model that
/// every rank ended <c>Fit</c> with exactly once. The estimator itself needs nothing more (see
/// <see cref="NeuralNetworkOptions.Distribution"/>); docs/distributed.md has the whole story.
/// </summary>
public static class DistributedTraining
{
    /// <summary>This process's rank under an MPI launcher (<see cref="Distribution.Auto"/>), 0 otherwise.</summary>
    public static int Rank => Collectives.For(Distribution.Auto).Rank;

    /// <summary>The number of ranks under an MPI launcher (<see cref="Distribution.Auto"/>), 1 otherwise.</summary>
    public static int Size => Collectives.For(Distribution.Auto).Size;

    /// <summary>True on rank 0, the one that writes files and prints reports; true in a single process.</summary>
    public static bool IsRankZero => Rank == 0;

    /// <summary>
    /// <c>mlContext.Model.Save</c> on rank 0 only, written to a temporary file beside <paramref name="path"/> and renamed
    /// over it, so no reader ever sees half a zip; every rank returns once the file is complete. Call it on every rank
    /// (a rank that skips it leaves the others waiting forever). If rank 0 cannot write it, the job ends on every rank
    /// with rank 0's error. Pass the <paramref name="distribution"/> the model was trained with: under
    /// <see cref="Distribution.SingleProcess"/> every process saves its own model (name the paths apart).
    /// </summary>
    public static void SaveOnRankZero(this ModelOperationsCatalog catalog, ITransformer model, DataViewSchema inputSchema, string path,
        Distribution distribution = Distribution.Auto)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(path);
        var ranks = Collectives.For(distribution);
        if (ranks.Rank == 0)
        {
            try
            {
                AtomicFile.Write(path, stream => catalog.Save(model, inputSchema, stream));
            }
            catch (Exception e)
            {
                ranks.EndJobOnFailure(e);
                throw;
            }
        }
        ranks.Barrier();
    }
}
