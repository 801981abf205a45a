namespace MlNetGuide.Training;

/// <summary>One process is the whole job: rank 0 of 1, every collective a no-op. The Trainer's default outside an MPI launcher.</summary>
internal sealed class OneProcess : ICollectives
{
    public static readonly OneProcess Instance = new();

    private OneProcess() { }

    public int Rank => 0;
    public int Size => 1;
    public void AllReduceSum(Span<float> values) { }
    public void AllReduceSum(Span<double> values) { }
    public void Broadcast(Span<byte> bytes, int root) => ArgumentOutOfRangeException.ThrowIfNotEqual(root, 0);
    public void Barrier() { }

    public void Abort(string message, int exitCode)
    {
        Console.Error.WriteLine(message);
        Environment.Exit(exitCode);
    }

    public override string ToString() => "single process";
}
