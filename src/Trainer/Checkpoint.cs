using System.IO.Compression;
using System.Text.Json;
using MlNetGuide.Modules;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>
/// What <see cref="Trainer"/> writes every <see cref="Trainer.CheckpointEvery"/> epochs and <see cref="Trainer.Fit(TrainableModule, DataModule, CancellationToken)"/>
/// resumes from: the model's state dict, the optimizer's state, how many scheduler steps were taken, the epoch, the
/// data module's shuffle state, the global generator's state and the history so far. A zip of named entries, written
/// atomically (the previous checkpoint survives an interrupted write) and read with the same size checks as any model file.
/// </summary>
/// <remarks>
/// Resuming rebuilds the optimizer and scheduler with the model's factories, loads their state and replays the
/// scheduler's steps, so training resumed on CPU ends with weights bit-identical to training that never stopped. Not
/// kept: the ProgressBoard's points before the checkpoint, and early stopping's best-so-far (patience restarts).
/// </remarks>
internal static class Checkpoint
{
    private const int FormatVersion = 2; // 2: the whole file is sealed (1 sealed model.weights only)

    public sealed record Header(int Version, string Optimizer, int Epoch, int TrainBatchIdx, int ValBatchIdx, int SchedulerSteps,
        List<EpochRecord> History);

    public sealed record EpochRecord(int Epoch, Dictionary<string, double> Values, double Seconds);

    public static void Write(string path, Trainer trainer, TrainableModule model, DataModule data, History history)
    {
        var optimizer = trainer.Optim as OptimizerHelper
            ?? throw new NotSupportedException($"Checkpoints need an optimizer with a state dict (TorchSharp's OptimizerHelper, e.g. MlNetGuide's Sgd/Adam); {trainer.Optim?.GetType().Name} has none.");
        var header = new Header(FormatVersion, optimizer.GetType().FullName!, trainer.Epoch + 1, trainer.TrainBatchIdx, trainer.ValBatchIdx,
            trainer.SchedulerSteps, history.Epochs.Select(e => new EpochRecord(e.Epoch, e.Values.ToDictionary(), e.Elapsed.TotalSeconds)).ToList());
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            Entry(zip, "checkpoint.json", s => JsonSerializer.Serialize(s, header));
            Entry(zip, "model.weights", s => StateDict.Save(model, s));
            Entry(zip, "optimizer.state", s =>
            {
                using var writer = new BinaryWriter(s, System.Text.Encoding.UTF8, leaveOpen: true);
                optimizer.save_state_dict(writer);
            });
            Entry(zip, "data.rng", s => s.Write(data.SaveRandomState()));
            Entry(zip, "global.rng", s =>
            {
                using var state = random.get_rng_state();
                s.Write(state.bytes);
            });
        }
        // A SHA-256 trailer over every byte of the zip: a flipped bit or a cut anywhere is refused at resume.
        var sealedFile = Integrity.SealNative(buffer.ToArray());
        AtomicFile.Write(path, stream => stream.Write(sealedFile));
    }

    /// <summary>Everything a checkpoint holds, read and checked, nothing applied yet.</summary>
    public sealed record Contents(Header Header, byte[] Weights, byte[] OptimizerState, byte[] DataRng, byte[] GlobalRng);

    /// <summary>
    /// Reads every entry and checks each against its range before anything is applied: the header's numbers against
    /// this trainer (<paramref name="maxEpochs"/> epochs of <paramref name="stepsPerEpoch"/> optimizer steps), the
    /// optimizer's type, and each generator state against what libtorch accepts (a bad one aborts the process there).
    /// </summary>
    /// <exception cref="ModelFormatException">Any entry is missing, unreadable or out of range.</exception>
    public static Contents Read(string path, int maxEpochs, int stepsPerEpoch)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"No checkpoint at {Path.GetFullPath(path)}.", path);
        var file = File.ReadAllBytes(path);
        var payload = Integrity.OpenNative(file, path); // checks the trailer when there is one
        if (payload.Length == file.Length)
            throw new ModelFormatException($"{path} has no seal: not a checkpoint of this version, or one cut short.");
        var bytes = payload.ToArray();
        try
        {
            using var zip = new ZipArchive(new MemoryStream(bytes, writable: false), ZipArchiveMode.Read);
            ZipBounds.Check(zip, LoadLimits.Default.BudgetFor(bytes.Length), path);
            var header = JsonSerializer.Deserialize<Header>(ZipBounds.ReadAll(Get(zip, "checkpoint.json", path), 16 << 20, path))
                ?? throw new ModelFormatException($"{path}: checkpoint.json is empty.");
            CheckHeader(header, maxEpochs, stepsPerEpoch, path);
            var contents = new Contents(header,
                ZipBounds.ReadAll(Get(zip, "model.weights", path), bytes.Length * 8L, path),
                ZipBounds.ReadAll(Get(zip, "optimizer.state", path), bytes.Length * 8L, path),
                ZipBounds.ReadAll(Get(zip, "data.rng", path), 1 << 20, path),
                ZipBounds.ReadAll(Get(zip, "global.rng", path), 1 << 20, path));
            GeneratorState.Check(contents.GlobalRng, "global.rng", path); // data.rng is checked by the data module that reads it
            return contents;
        }
        catch (Exception ex) when (ex is InvalidDataException or JsonException or EndOfStreamException or NotSupportedException)
        {
            throw new ModelFormatException($"{path} is not a readable checkpoint: {ex.Message}", ex);
        }
    }

    private static void CheckHeader(Header h, int maxEpochs, int stepsPerEpoch, string path)
    {
        void Range(string what, long value, long min, long max)
        {
            if (value < min || value > max)
                throw new ModelFormatException($"{path}: {what} is {value}; a checkpoint of this trainer has {min} to {max}.");
        }
        if (h.Version != FormatVersion)
            throw new ModelFormatException($"{path} is checkpoint format {h.Version}; this version reads {FormatVersion}.");
        Range("the epoch", h.Epoch, 1, maxEpochs);
        Range("the scheduler's steps", h.SchedulerSteps, 0, (long)h.Epoch * stepsPerEpoch);
        Range("the training batch index", h.TrainBatchIdx, 0, (long)h.Epoch * Math.Max(1, stepsPerEpoch) * 1024);
        Range("the validation batch index", h.ValBatchIdx, 0, int.MaxValue);
        if (h.History is null || h.History.Any(e => e is null || e.Values is null))
            throw new ModelFormatException($"{path}: the checkpoint's history is missing or has an empty epoch.");
        Range("the history's length", h.History.Count, 0, h.Epoch);
    }

    /// <summary>Loads the checkpoint's weights into the model (all or nothing; a lazy model is materialized from them).</summary>
    public static void LoadWeights(Contents c, TrainableModule model, string path)
    {
        using var weights = new MemoryStream(c.Weights, writable: false);
        try { StateDict.Load(model, weights, TensorFileFormat.TorchSharp); }
        catch (Exception ex) when (ex is StateDictMismatchException or ModelFormatException)
        {
            throw new ModelFormatException($"{path}: the checkpoint's model.weights: {ex.Message}", ex);
        }
    }

    /// <summary>Applies the optimizer, data and global random state; the caller rolls the model and data back if this throws.</summary>
    public static void ApplyState(Contents c, optim.Optimizer optimizer, DataModule data, string path)
    {
        if (optimizer is not OptimizerHelper helper || helper.GetType().FullName != c.Header.Optimizer)
            throw new ModelFormatException($"{path} was written with a {c.Header.Optimizer}; this model's ConfigureOptimizers made a {optimizer.GetType().FullName}.");
        try
        {
            using (var reader = new BinaryReader(new MemoryStream(c.OptimizerState, writable: false)))
                helper.load_state_dict(reader);
            data.LoadRandomState(c.DataRng);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            throw new ModelFormatException($"{path}: the optimizer or shuffle state does not fit this run: {ex.Message}", ex);
        }
        using var rng = tensor(c.GlobalRng, dtype: ScalarType.Byte);
        random.set_rng_state(rng);
    }

    private static ZipArchiveEntry Get(ZipArchive zip, string name, string path) =>
        zip.GetEntry(name) ?? throw new ModelFormatException($"{path} lacks {name}: not a checkpoint, or an incomplete one.");

    private static void Entry(ZipArchive zip, string name, Action<Stream> write)
    {
        using var s = zip.CreateEntry(name, CompressionLevel.Fastest).Open();
        write(s);
    }
}
