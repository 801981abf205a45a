using System.Text;
using System.Text.Json;

namespace MlNetGuide.Training;

/// <summary>Chooses the <see cref="ICollectives"/> a process trains with, and what every rank must agree on before training.</summary>
public static class Collectives
{
    /// <summary>The key an exception's <see cref="Exception.Data"/> holds (true) when every rank raised it at the same point.</summary>
    public const string RaisedOnEveryRank = "MlNetGuide.RaisedOnEveryRank";

    /// <summary>One process: rank 0 of 1, every collective a no-op, no native library.</summary>
    public static ICollectives SingleProcess => OneProcess.Instance;

    /// <summary>
    /// The process's collectives for <paramref name="distribution"/>: <see cref="Distribution.Auto"/> is MPI when an MPI
    /// launcher started this process with more than one rank, else <see cref="SingleProcess"/>.
    /// </summary>
    /// <exception cref="DllNotFoundException">MPI is wanted and no MPI library loads; the message names what to install.</exception>
    public static ICollectives For(Distribution distribution) => distribution switch
    {
        Distribution.SingleProcess => OneProcess.Instance,
        Distribution.Mpi => Mpi.Instance,
        Distribution.Auto => MpiLibrary.LaunchedRanks() is > 1 ? Mpi.Instance : OneProcess.Instance,
        _ => throw new ArgumentOutOfRangeException(nameof(distribution), distribution, "not a Distribution"),
    };

    /// <summary>The ranks an MPI launcher says it started for this job, or null when none started this process.</summary>
    public static int? LaunchedRanks() => MpiLibrary.LaunchedRanks();

    /// <summary>
    /// Checks that every rank holds the same <paramref name="settings"/> (name, value pairs in the same order) and throws
    /// the same <see cref="RankMismatchException"/> on every rank when one differs, naming the setting, the first rank
    /// that differs, its value and rank 0's. A collective: every rank calls it at the same point.
    /// </summary>
    public static void Agree(this ICollectives ranks, string what, IReadOnlyList<(string Name, string Value)> settings)
    {
        ArgumentNullException.ThrowIfNull(ranks);
        ArgumentNullException.ThrowIfNull(settings);
        if (ranks.Size == 1) return;
        var root = JsonSerializer.Deserialize<string[][]>(BroadcastString(ranks, JsonSerializer.Serialize(settings.Select(s => new[] { s.Name, s.Value }).ToArray()), 0))!;
        int differs = -1; // the first setting where this rank and rank 0 differ
        for (int i = 0; i < Math.Max(root.Length, settings.Count) && differs < 0; i++)
            if (i >= root.Length || i >= settings.Count || root[i][0] != settings[i].Name || root[i][1] != settings[i].Value) differs = i;
        var found = Gather(ranks, differs + 1);
        int rank = Array.FindIndex(found, f => f != 0);
        if (rank < 0) return;
        int index = (int)found[rank] - 1;
        string theirs = BroadcastString(ranks, ranks.Rank == rank ? Describe(settings, index) : "", rank);
        string ours = index < root.Length ? $"{root[index][0]} = {root[index][1]}" : "(nothing)";
        throw new RankMismatchException(
            $"The ranks of this job disagree on {what}: rank {rank} has {theirs} where rank 0 has {ours}. " +
            "Start every rank with the same program, data, options and seed (e.g. MLContext(seed: 1) or Options.Seed).");
    }

    private static string Describe(IReadOnlyList<(string Name, string Value)> settings, int index) =>
        index < settings.Count ? $"{settings[index].Name} = {settings[index].Value}" : "(nothing)";

    /// <summary>Every rank's <paramref name="value"/>, indexed by rank (one allreduce of <see cref="ICollectives.Size"/> numbers).</summary>
    public static double[] Gather(this ICollectives ranks, double value)
    {
        ArgumentNullException.ThrowIfNull(ranks);
        var all = new double[ranks.Size];
        all[ranks.Rank] = value;
        ranks.AllReduceSum(all);
        return all;
    }

    /// <summary><paramref name="root"/>'s string on every rank (two broadcasts: its length, then its UTF-8 bytes).</summary>
    public static string BroadcastString(this ICollectives ranks, string value, int root)
    {
        ArgumentNullException.ThrowIfNull(ranks);
        ArgumentNullException.ThrowIfNull(value);
        if (ranks.Size == 1) return value;
        var bytes = ranks.Rank == root ? Encoding.UTF8.GetBytes(value) : [];
        var length = BitConverter.GetBytes(bytes.Length);
        ranks.Broadcast(length, root);
        if (ranks.Rank != root) bytes = new byte[BitConverter.ToInt32(length)];
        ranks.Broadcast(bytes, root);
        return Encoding.UTF8.GetString(bytes);
    }

    /// <summary>
    /// With more than one rank, ends the whole job (<see cref="ICollectives.Abort"/>) naming this rank and
    /// <paramref name="error"/>, unless every rank raises that error at the same point (<see cref="RankMismatchException"/>,
    /// <see cref="NonFiniteLossException"/> from the reduced loss): a rank that stops alone leaves the others waiting
    /// forever in their next collective. A cancellation during training steps is shared at the next step's loss reduction,
    /// so every rank throws it there and none ends the job. With one rank, returns (the caller rethrows).
    /// </summary>
    public static void EndJobOnFailure(this ICollectives ranks, Exception error)
    {
        ArgumentNullException.ThrowIfNull(ranks);
        ArgumentNullException.ThrowIfNull(error);
        if (ranks.Size == 1 || error is RankMismatchException or NonFiniteLossException || error.Data[RaisedOnEveryRank] is true) return;
        ranks.Abort($"MlNetGuide: rank {ranks.Rank} of {ranks.Size} failed, ending the job on every rank: {error}", 3);
    }
}
