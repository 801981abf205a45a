using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>A sequence of batches that knows how many it holds (d2l's DataLoader with <c>len()</c>).</summary>
public interface IDataLoader : IEnumerable<Batch>
{
    /// <summary>Number of batches one pass yields.</summary>
    int Count { get; }
}

/// <summary>d2l's DataModule: a training loader and an optional validation loader.</summary>
public abstract class DataModule
{
    /// <summary>The training loader (shuffled where the module supports it).</summary>
    public abstract IDataLoader TrainDataLoader();

    /// <summary>The validation loader, or null for none.</summary>
    public virtual IDataLoader? ValDataLoader() => null;

    /// <summary>
    /// The state of the module's random generators (its shuffle), for checkpoints: training resumed from a checkpoint
    /// then draws the same batches as training that never stopped. Empty for a module without randomness.
    /// </summary>
    public virtual byte[] SaveRandomState() => [];

    /// <summary>Restores what <see cref="SaveRandomState"/> returned.</summary>
    public virtual void LoadRandomState(byte[] state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Length != 0) throw new ArgumentException($"{GetType().Name} has no random state, but the checkpoint holds {state.Length} bytes of it.", nameof(state));
    }
}

/// <summary>
/// Loaders over tensors already in memory. Training batches are drawn in a new order each epoch from a generator
/// seeded with <see cref="Seed"/>; validation batches keep their order. Each batch is one gather (one copy).
/// </summary>
public sealed class TensorDataModule : DataModule, IDisposable
{
    private readonly Tensor[] _train;
    private readonly Tensor[]? _val;
    private readonly Generator _generator;

    /// <summary>Creates the module. The tensors are referenced, not copied; keep them alive while it is used.</summary>
    /// <param name="train">Training tensors, inputs first, target last, same number of rows.</param>
    /// <param name="batchSize">Examples per batch; the last batch may be smaller.</param>
    /// <param name="val">Validation tensors, or null.</param>
    /// <param name="seed">Seed of the shuffling generator.</param>
    public TensorDataModule(Tensor[] train, int batchSize, Tensor[]? val = null, long seed = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        _train = Check(train, nameof(train));
        _val = val is null ? null : Check(val, nameof(val));
        BatchSize = batchSize;
        Seed = seed;
        _generator = new Generator((ulong)seed);
    }

    /// <summary>Examples per batch.</summary>
    public int BatchSize { get; }

    /// <summary>Seed of the training shuffle.</summary>
    public long Seed { get; }

    /// <summary>Training examples.</summary>
    public long TrainCount => _train[0].shape[0];

    /// <inheritdoc />
    public override IDataLoader TrainDataLoader() => new Loader(_train, BatchSize, _generator);

    /// <inheritdoc />
    public override IDataLoader? ValDataLoader() => _val is null ? null : new Loader(_val, BatchSize, null);

    /// <inheritdoc />
    public override byte[] SaveRandomState()
    {
        using var state = _generator.get_state();
        return state.bytes.ToArray();
    }

    /// <inheritdoc />
    public override void LoadRandomState(byte[] state)
    {
        ArgumentNullException.ThrowIfNull(state);
        GeneratorState.Check(state, "the shuffle state", "the checkpoint"); // libtorch aborts on a state it rejects
        using var restored = tensor(state, dtype: ScalarType.Byte);
        _generator.set_state(restored);
    }

    /// <summary>Splits (X, y) into a training and a validation module, holding out <paramref name="valFraction"/> of the rows (seeded).</summary>
    public static TensorDataModule Split(Tensor x, Tensor y, double valFraction, int batchSize, long seed = 0)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        if (valFraction is < 0 or >= 1 || double.IsNaN(valFraction))
            throw new ArgumentOutOfRangeException(nameof(valFraction), valFraction, "must be in [0, 1)");
        long n = x.shape[0];
        long nVal = (long)Math.Round(n * valFraction);
        using var g = new Generator((ulong)seed);
        using var perm = randperm(n, generator: g);
        if (nVal == 0) return new TensorDataModule([x, y], batchSize, null, seed);
        using var trainIdx = perm[TensorIndex.Slice(nVal)];
        using var valIdx = perm[TensorIndex.Slice(0, nVal)];
        return new TensorDataModule(
            [x.index_select(0, trainIdx).DetachFromDisposeScope(), y.index_select(0, trainIdx).DetachFromDisposeScope()], batchSize,
            [x.index_select(0, valIdx).DetachFromDisposeScope(), y.index_select(0, valIdx).DetachFromDisposeScope()], seed)
        { _ownsTensors = true };
    }

    private bool _ownsTensors;

    /// <summary>Disposes the generator (and the tensors when <see cref="Split"/> created them).</summary>
    public void Dispose()
    {
        _generator.Dispose();
        if (!_ownsTensors) return;
        foreach (var t in _train) t.Dispose();
        foreach (var t in _val ?? []) t.Dispose();
    }

    /// <summary>
    /// The rows in order, <paramref name="batchSize"/> at a time (views: the rows stay owned by the caller) — what this
    /// module's validation loader gives, for loaders that mix in-memory rows with streamed ones.
    /// </summary>
    public static IDataLoader InOrder(Tensor[] rows, int batchSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        return new Loader(Check(rows, nameof(rows)), batchSize, null);
    }

    private static Tensor[] Check(Tensor[] tensors, string name)
    {
        ArgumentNullException.ThrowIfNull(tensors, name);
        if (tensors.Length < 2) throw new ArgumentException("Pass inputs and a target (at least two tensors).", name);
        long n = tensors[0].shape[0];
        if (n == 0) throw new ArgumentException("The data set is empty.", name);
        foreach (var t in tensors)
            if (t.shape[0] != n)
                throw new ArgumentException($"All tensors need {n} rows; found [{string.Join(", ", t.shape)}].", name);
        return tensors;
    }

    private sealed class Loader(Tensor[] tensors, int batchSize, Generator? shuffle) : IDataLoader
    {
        private readonly long _n = tensors[0].shape[0];

        public int Count => (int)((_n + batchSize - 1) / batchSize);

        public IEnumerator<Batch> GetEnumerator()
        {
            using var order = shuffle is null ? null : randperm(_n, generator: shuffle).DetachFromDisposeScope();
            for (long start = 0; start < _n; start += batchSize)
            {
                long end = Math.Min(_n, start + batchSize);
                Tensor[] parts;
                if (order is null)
                    parts = tensors.Select(t => t[TensorIndex.Slice(start, end)].DetachFromDisposeScope()).ToArray();
                else
                {
                    using var idx = order.narrow(0, start, end - start); // narrow: a cheaper native call than the TensorIndex indexer
                    parts = tensors.Select(t => t.index_select(0, idx).DetachFromDisposeScope()).ToArray();
                }
                yield return new Batch(parts);
            }
        }

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }
}

/// <summary>
/// Loaders over batches produced on demand — for data that does not fit in memory or streams from elsewhere
/// (the ML.NET estimators feed IDataView cursors through this).
/// </summary>
public sealed class EnumerableDataModule : DataModule
{
    private readonly Func<IEnumerable<Batch>> _train;
    private readonly Func<IEnumerable<Batch>>? _val;
    private readonly int _trainCount, _valCount;

    /// <summary>Creates the module from batch factories, each called once per pass, and the number of batches each yields.</summary>
    public EnumerableDataModule(Func<IEnumerable<Batch>> train, int trainBatches, Func<IEnumerable<Batch>>? val = null, int valBatches = 0)
    {
        ArgumentNullException.ThrowIfNull(train);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(trainBatches);
        if (val is not null) ArgumentOutOfRangeException.ThrowIfNegativeOrZero(valBatches);
        (_train, _trainCount, _val, _valCount) = (train, trainBatches, val, valBatches);
    }

    /// <inheritdoc />
    public override IDataLoader TrainDataLoader() => new Loader(_train, _trainCount);

    /// <inheritdoc />
    public override IDataLoader? ValDataLoader() => _val is null ? null : new Loader(_val, _valCount);

    private sealed class Loader(Func<IEnumerable<Batch>> source, int count) : IDataLoader
    {
        public int Count => count;
        public IEnumerator<Batch> GetEnumerator() => source().GetEnumerator();
        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }
}
