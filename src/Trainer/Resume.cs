using MlNetGuide.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>
/// A checkpoint <see cref="Trainer.Fit(TrainableModule, DataModule, string, CancellationToken)"/> resumes from: read and
/// range-checked by <see cref="Read"/> before anything is applied; then the trainer loads its weights before building
/// the optimizer (<see cref="LoadWeights"/>), applies the optimizer, scheduler and random state after
/// (<see cref="ApplyState"/>), and continues its counters and history. Holds only bytes; the copy that rolls a refused
/// checkpoint back is a <see cref="Snapshot"/>, which the trainer takes and disposes itself.
/// </summary>
internal sealed class Resume
{
    private readonly Checkpoint.Contents _contents;

    private Resume(string path, Checkpoint.Contents contents, string digest) => (Path, _contents, Digest) = (path, contents, digest);

    /// <summary>The first 16 hex digits of the file's SHA-256: what ranks compare before resuming together.</summary>
    public string Digest { get; }

    /// <summary>The checkpoint's file.</summary>
    public string Path { get; }

    /// <summary>The epoch the checkpoint was written after (1-based), where training goes on.</summary>
    public int Epoch => _contents.Header.Epoch;

    /// <summary>
    /// Reads and checks the checkpoint at <paramref name="path"/> against a trainer of <paramref name="maxEpochs"/> epochs
    /// of <paramref name="stepsPerEpoch"/> optimizer steps; null when <paramref name="path"/> is null (a fresh Fit).
    /// </summary>
    /// <exception cref="ModelFormatException">The file is not a readable checkpoint of this trainer.</exception>
    public static Resume? Read(string? path, int maxEpochs, int stepsPerEpoch)
    {
        if (path is null) return null;
        var contents = Checkpoint.Read(path, maxEpochs, stepsPerEpoch);
        using var file = File.OpenRead(path);
        return new Resume(path, contents, Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(file))[..16]);
    }

    /// <summary>Loads the checkpoint's weights into the model (all or nothing; a lazy model is materialized from them).</summary>
    public void LoadWeights(TrainableModule model) => Checkpoint.LoadWeights(_contents, model, Path);

    /// <summary>Replays the scheduler's steps, then applies the optimizer's, the data's and the global random state.</summary>
    public void ApplyState(optim.Optimizer optimizer, optim.lr_scheduler.LRScheduler? scheduler, DataModule data)
    {
        // Replay the scheduler first: chainable schedulers (StepLR, …) derive each rate from the previous one, starting
        // from the initial rate; then the optimizer's saved state sets rates, momenta and buffers as the run left them.
        for (int i = 0; i < _contents.Header.SchedulerSteps; i++) scheduler?.step();
        Checkpoint.ApplyState(_contents, optimizer, data, Path);
    }

    /// <summary>The trainer's counters as the checkpoint left them.</summary>
    public (int Epoch, int TrainBatchIdx, int ValBatchIdx, int SchedulerSteps) Counters
    {
        get
        {
            var h = _contents.Header;
            return (h.Epoch, h.TrainBatchIdx, h.ValBatchIdx, h.SchedulerSteps);
        }
    }

    /// <summary>The history of the epochs before the checkpoint, which the resumed Fit goes on adding to.</summary>
    public History History()
    {
        var history = new History();
        foreach (var e in _contents.Header.History) history.Add(new EpochMetrics(e.Epoch, e.Values, TimeSpan.FromSeconds(e.Seconds)));
        return history;
    }
}
