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
    private const int FormatVersion = 1;

    public sealed record Header(int Version, string Optimizer, int Epoch, int TrainBatchIdx, int ValBatchIdx, int SchedulerSteps,
        List<EpochRecord> History);

    public sealed record EpochRecord(int Epoch, Dictionary<string, double> Values, double Seconds);

    public static void Write(string path, Trainer trainer, TrainableModule model, DataModule data, History history)
    {
        var optimizer = trainer.Optim as OptimizerHelper
            ?? throw new NotSupportedException($"Checkpoints need an optimizer with a state dict (TorchSharp's OptimizerHelper, e.g. MlNetGuide's Sgd/Adam); {trainer.Optim?.GetType().Name} has none.");
        var header = new Header(FormatVersion, optimizer.GetType().FullName!, trainer.Epoch + 1, trainer.TrainBatchIdx, trainer.ValBatchIdx,
            trainer.SchedulerSteps, history.Epochs.Select(e => new EpochRecord(e.Epoch, e.Values.ToDictionary(), e.Elapsed.TotalSeconds)).ToList());
        AtomicFile.Write(path, stream =>
        {
            using var zip = new ZipArchive(stream, ZipArchiveMode.Create, leaveOpen: true);
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
        });
    }

    /// <summary>Loads the model's weights and returns the header; the optimizer and random state are applied by <see cref="Restore"/>.</summary>
    public static Header Read(string path, TrainableModule model, out byte[] optimizerState, out byte[] dataRng, out byte[] globalRng)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"No checkpoint at {Path.GetFullPath(path)}.", path);
        var bytes = File.ReadAllBytes(path);
        try
        {
            using var zip = new ZipArchive(new MemoryStream(bytes, writable: false), ZipArchiveMode.Read);
            ZipBounds.Check(zip, LoadLimits.Default.BudgetFor(bytes.Length), path);
            var header = JsonSerializer.Deserialize<Header>(ZipBounds.ReadAll(Get(zip, "checkpoint.json", path), 16 << 20, path))
                ?? throw new ModelFormatException($"{path}: checkpoint.json is empty.");
            if (header.Version != FormatVersion)
                throw new ModelFormatException($"{path} is checkpoint format {header.Version}; this version reads {FormatVersion}.");
            using (var weights = new MemoryStream(ZipBounds.ReadAll(Get(zip, "model.weights", path), bytes.Length * 8L, path), writable: false))
                StateDict.Load(model, weights, TensorFileFormat.TorchSharp);
            optimizerState = ZipBounds.ReadAll(Get(zip, "optimizer.state", path), bytes.Length * 8L, path);
            dataRng = ZipBounds.ReadAll(Get(zip, "data.rng", path), 1 << 20, path);
            globalRng = ZipBounds.ReadAll(Get(zip, "global.rng", path), 1 << 20, path);
            return header;
        }
        catch (Exception ex) when (ex is InvalidDataException or JsonException or EndOfStreamException)
        {
            throw new ModelFormatException($"{path} is not a readable checkpoint: {ex.Message}", ex);
        }
    }

    /// <summary>Applies the optimizer, data and global random state read from a checkpoint.</summary>
    public static void Restore(Header header, optim.Optimizer optimizer, DataModule data, byte[] optimizerState, byte[] dataRng, byte[] globalRng, string path)
    {
        if (optimizer is not OptimizerHelper helper || helper.GetType().FullName != header.Optimizer)
            throw new InvalidOperationException($"{path} was written with a {header.Optimizer}; this model's ConfigureOptimizers made a {optimizer.GetType().FullName}.");
        using (var reader = new BinaryReader(new MemoryStream(optimizerState, writable: false)))
            helper.load_state_dict(reader);
        data.LoadRandomState(dataRng);
        using var rng = tensor(globalRng, dtype: ScalarType.Byte);
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
