using System.Diagnostics;
using MlNetGuide.Modules;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>
/// d2l's Trainer: <see cref="PrepareData"/>, <see cref="PrepareModel"/>, <see cref="PrepareBatch"/>, <see cref="Fit(TrainableModule, DataModule, CancellationToken)"/>,
/// <see cref="FitEpoch"/>, <see cref="ClipGradients"/> — with the model and every batch moved to the first GPU when
/// <c>numGpus</c> &gt; 0, and data-parallel training over several devices.
/// </summary>
/// <remarks>
/// <para>TorchSharp's <c>.to()</c> replaces Parameter objects, so the optimizer is created (by
/// <see cref="TrainableModule.ConfigureOptimizers"/>) after <see cref="PrepareModel"/>; an optimizer that holds
/// parameters the model no longer has is rejected.</para>
/// <para>Per step there is no host sync: losses and metrics are summed on the device and read once per plotted
/// point and once per epoch. A non-finite loss is detected on the device and reported, with its epoch and batch, at
/// the next read.</para>
/// </remarks>
public sealed class Trainer : IDisposable
{
    private readonly List<nn.Module<Tensor, Tensor>> _replicas = [];
    private Tensor? _stepLosses; // on the device: this epoch's training losses, read only at the board's cadence
    private Tensor[] _stepLossSlots = []; // views of _stepLosses, one per batch up to MaxLossSlots, made once per Fit
    private int _checkedUpTo;     // batches of this epoch already checked for non-finite losses

    /// <summary>d2l's <c>Trainer(max_epochs, num_gpus, gradient_clip_val)</c>. More GPUs than exist are clamped (and logged).</summary>
    public Trainer(int maxEpochs, int numGpus = 0, double gradientClipVal = 0, Action<string>? log = null)
        : this(maxEpochs, Devices.TakeGpus(numGpus, log: log is null ? null : m => log("Trainer: " + m)), gradientClipVal, log)
    {
    }

    /// <summary>A trainer over explicit devices: the first holds the model; with several, training is data parallel.</summary>
    public Trainer(int maxEpochs, IReadOnlyList<Device> devices, double gradientClipVal = 0, Action<string>? log = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxEpochs);
        ArgumentNullException.ThrowIfNull(devices);
        TorchSharpRuntime.EnsureLoaded();
        if (!(gradientClipVal >= 0) || double.IsInfinity(gradientClipVal))
            throw new ArgumentOutOfRangeException(nameof(gradientClipVal), gradientClipVal, "must be a finite number >= 0 (0 turns clipping off)");
        MaxEpochs = maxEpochs;
        TrainingDevices = devices.ToList();
        GradientClipVal = gradientClipVal;
        Log = log;
    }

    /// <summary>Epochs <see cref="Fit(TrainableModule, DataModule, CancellationToken)"/> runs (fewer when <see cref="EarlyStopping"/> stops it).</summary>
    public int MaxEpochs { get; }

    /// <summary>Stop when a validation metric stops improving, and restore the best epoch's weights; null: run every epoch.</summary>
    public EarlyStopping? EarlyStopping
    {
        get => _earlyStopping;
        init
        {
            value?.Validate();
            _earlyStopping = value;
        }
    }

    private readonly EarlyStopping? _earlyStopping;

    /// <summary>
    /// Gradient accumulation (Lightning's <c>accumulate_grad_batches</c>): the optimizer steps once every this many
    /// batches, on the mean of their gradients, so the effective batch is this many times the loader's. Default 1.
    /// </summary>
    public int AccumulateGradBatches
    {
        get => _accumulate;
        init => _accumulate = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(AccumulateGradBatches), value, "must be at least 1");
    }

    private readonly int _accumulate = 1;

    /// <summary>
    /// Where to write a checkpoint (see <see cref="Checkpoint"/>: weights, optimizer and scheduler state, epoch, random
    /// state, history) every <see cref="CheckpointEvery"/> epochs, atomically; null: none. Resume with
    /// <see cref="Fit(TrainableModule, DataModule, string, CancellationToken)"/>.
    /// </summary>
    public string? CheckpointPath { get; init; }

    /// <summary>
    /// Called once before every training step and every validation batch; whatever it throws ends <c>Fit</c> (the batch
    /// not yet taken is released) and reaches the caller unchanged. ML.NET's estimator passes its host's check here, so
    /// <c>MLContext.CancelExecution()</c> stops a fit within one batch, as ML.NET's own trainers do.
    /// </summary>
    public Action? CheckAlive { get; set; }

    /// <summary>Epochs between checkpoints (with <see cref="CheckpointPath"/>). Default 1.</summary>
    public int CheckpointEvery
    {
        get => _checkpointEvery;
        init => _checkpointEvery = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(CheckpointEvery), value, "must be at least 1");
    }

    private readonly int _checkpointEvery = 1;

    /// <summary>Scheduler steps taken since Fit began (what a checkpoint replays on resume).</summary>
    public int SchedulerSteps { get; private set; }

    /// <summary>
    /// The devices training uses (d2l's <c>self.gpus</c>, which holds whatever devices it was given): the first holds the
    /// model, any others hold data-parallel replicas; empty means the CPU.
    /// </summary>
    public IReadOnlyList<Device> TrainingDevices { get; }

    /// <summary>The old name of <see cref="TrainingDevices"/> (d2l's <c>self.gpus</c>), kept so that code written against it still builds.</summary>
    [Obsolete("Renamed TrainingDevices: it holds whatever devices training uses, the CPU's empty list included, not only GPUs.")]
    public IReadOnlyList<Device> Gpus => TrainingDevices;

    /// <summary>Where the model and batches live: the first of <see cref="TrainingDevices"/>, or the CPU.</summary>
    public Device Device => TrainingDevices.Count > 0 ? TrainingDevices[0] : CPU;

    /// <summary>Global L2-norm bound on the gradients; 0 turns clipping off.</summary>
    public double GradientClipVal { get; }

    /// <summary>Where the trainer reports what it decided (clamped GPUs, epochs). May be null.</summary>
    public Action<string>? Log { get; }

    /// <summary>Raised after every epoch with its metrics (for progress displays).</summary>
    public event Action<EpochMetrics>? EpochCompleted;

    /// <summary>The current epoch (0-based).</summary>
    public int Epoch { get; private set; }

    /// <summary>Training batches done since Fit began (d2l's <c>train_batch_idx</c>).</summary>
    public int TrainBatchIdx { get; private set; }

    /// <summary>Validation batches done since Fit began.</summary>
    public int ValBatchIdx { get; private set; }

    /// <summary>Training batches per epoch.</summary>
    public int NumTrainBatches { get; private set; }

    /// <summary>Validation batches per epoch (0 without validation data).</summary>
    public int NumValBatches { get; private set; }

    /// <summary>The training loader set by <see cref="PrepareData"/>.</summary>
    public IDataLoader? TrainDataLoader { get; private set; }

    /// <summary>The validation loader, or null.</summary>
    public IDataLoader? ValDataLoader { get; private set; }

    /// <summary>The model set by <see cref="PrepareModel"/>.</summary>
    public TrainableModule? Model { get; private set; }

    /// <summary>The optimizer created by <see cref="Fit(TrainableModule, DataModule, CancellationToken)"/>; disposed with the trainer.</summary>
    public optim.Optimizer? Optim { get; private set; }

    /// <summary>The learning-rate scheduler <see cref="TrainableModule.ConfigureScheduler"/> made, stepped after every optimizer step; or null.</summary>
    public optim.lr_scheduler.LRScheduler? Scheduler { get; private set; }

    /// <summary>Sets the loaders and batch counts.</summary>
    public void PrepareData(DataModule data)
    {
        ArgumentNullException.ThrowIfNull(data);
        TrainDataLoader = data.TrainDataLoader();
        ValDataLoader = data.ValDataLoader();
        NumTrainBatches = TrainDataLoader.Count;
        NumValBatches = ValDataLoader?.Count ?? 0;
        if (NumTrainBatches <= 0) throw new ArgumentException("The training loader yields no batches.", nameof(data));
    }

    /// <summary>
    /// Sets the model's trainer and the board's x range [0, MaxEpochs], and moves the model to <see cref="Device"/>.
    /// With several devices, builds one replica of the net per extra device (needs <see cref="TrainableModule.NetFactory"/>).
    /// </summary>
    public void PrepareModel(TrainableModule model)
    {
        ArgumentNullException.ThrowIfNull(model);
        model.Trainer = this;
        model.Board.XLim = (0, MaxEpochs);
        if (TrainingDevices.Count > 0) model.to(TrainingDevices[0]);
        Model = model;
        foreach (var r in _replicas) r.Dispose();
        _replicas.Clear();
        if (TrainingDevices.Count > 1)
        {
            if (model.NetFactory is null)
                throw new InvalidOperationException(
                    $"Training on {TrainingDevices.Count} devices needs replicas of the net: build the {model.GetType().Name} with a net factory (e.g. new Classifier(() => new MLP(...))).");
            model.Net.EnsureInitialized();
            for (int i = 1; i < TrainingDevices.Count; i++)
            {
                var replica = model.NetFactory();
                replica.to(TrainingDevices[i]);
                _replicas.Add(replica);
            }
            Broadcast();
        }
    }

    /// <summary>Returns the batch on <see cref="Device"/>: the same object when it is already there, else a moved copy.</summary>
    public Batch PrepareBatch(Batch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        // On the CPU, device_type alone decides; Devices.Of builds a TorchSharp Device per tensor (a native call).
        if (Device.type == DeviceType.CPU ? batch.Tensors.All(t => t.device_type == DeviceType.CPU) : batch.Tensors.All(t => Devices.Same(Devices.Of(t), Device))) return batch;
        return new Batch(batch.Tensors.Select(t => t.to(Device).DetachFromDisposeScope()).ToArray());
    }

    /// <summary>Trains <paramref name="model"/> on <paramref name="data"/> for <see cref="MaxEpochs"/> epochs.</summary>
    /// <exception cref="LazyModuleNotInitializedException">The model still has lazy layers: run a dry run (ApplyInit) first.</exception>
    /// <exception cref="NonFiniteLossException">A training loss was NaN or infinite.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled (between batches).</exception>
    public History Fit(TrainableModule model, DataModule data, CancellationToken cancellationToken = default) =>
        Fit(model, data, resumeFrom: null, cancellationToken);

    /// <summary>
    /// Resumes training from a checkpoint written by a trainer with <see cref="CheckpointPath"/>: the model, optimizer,
    /// scheduler, data shuffle and global random state continue where the checkpoint left them, and training runs on to
    /// <see cref="MaxEpochs"/>. On CPU the final weights are bit-identical to training that never stopped. The model,
    /// data and factories must be built as they were for the interrupted run.
    /// </summary>
    /// <exception cref="ModelFormatException">The file is not a readable checkpoint, or its weights do not fit the model.</exception>
    public History Fit(TrainableModule model, DataModule data, string? resumeFrom, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        PrepareData(data);
        PrepareModel(model);
        // Resume: everything is read and range-checked first; then applied with a roll-back, so a refused checkpoint
        // leaves the model's weights, the data's shuffle state and this trainer's optimizer as they were.
        var resume = resumeFrom is null ? null : Checkpoint.Read(resumeFrom, MaxEpochs, StepsPerEpoch);
        var before = resume is null ? null : Snapshot.Take(model, data);
        optim.Optimizer? optimizer = null;
        optim.lr_scheduler.LRScheduler? scheduler = null;
        try
        {
            if (resume is not null) Checkpoint.LoadWeights(resume, model, resumeFrom!);
            model.EnsureInitialized();
            EnsureModelOnDevice(model); // once: PrepareBatch then puts every batch on the same device
            optimizer = model.ConfigureOptimizers();
            EnsureOptimizerOwnsModelParameters(model, optimizer);
            scheduler = model.ConfigureScheduler(optimizer, checked(MaxEpochs * StepsPerEpoch));
            if (AccumulateGradBatches > 1 && _replicas.Count > 0)
                throw new NotSupportedException("Gradient accumulation is not supported with data-parallel replicas; use one device or AccumulateGradBatches = 1.");
            if (resume is not null)
            {
                // Replay the scheduler first: chainable schedulers (StepLR, …) derive each rate from the previous one, starting
                // from the initial rate; then the optimizer's saved state sets rates, momenta and buffers as the run left them.
                for (int i = 0; i < resume.Header.SchedulerSteps; i++) scheduler?.step();
                Checkpoint.ApplyState(resume, optimizer, data, resumeFrom!);
            }
        }
        catch
        {
            before?.Restore(model, data);
            optimizer?.Dispose();
            throw;
        }
        finally
        {
            before?.Dispose();
        }
        Optim?.Dispose();
        (Optim, Scheduler) = (optimizer, scheduler);
        Epoch = 0;
        TrainBatchIdx = 0;
        ValBatchIdx = 0;
        SchedulerSteps = 0;
        var history = new History();
        if (resume is not null)
        {
            var h = resume.Header;
            (Epoch, TrainBatchIdx, ValBatchIdx, SchedulerSteps) = (h.Epoch, h.TrainBatchIdx, h.ValBatchIdx, h.SchedulerSteps);
            foreach (var e in h.History) history.Add(new EpochMetrics(e.Epoch, e.Values, TimeSpan.FromSeconds(e.Seconds)));
            Log?.Invoke($"resumed from {resumeFrom} after epoch {h.Epoch}.");
        }
        DisposeStepLosses();
        _stepLosses = zeros(new long[] { NumTrainBatches }, dtype: ScalarType.Float64, device: Device).DetachFromDisposeScope();
        // One view per batch, made once, up to MaxLossSlots batches per epoch (more would hold that many native handles).
        _stepLossSlots = new Tensor[Math.Min(NumTrainBatches, MaxLossSlots)];
        for (int i = 0; i < _stepLossSlots.Length; i++) _stepLossSlots[i] = _stepLosses.select(0, i).DetachFromDisposeScope();
        var best = new BestEpoch(EarlyStopping);
        try
        {
            for (; Epoch < MaxEpochs; Epoch++)
            {
                var watch = Stopwatch.StartNew();
                FitEpoch(cancellationToken);
                var means = model.TakeEpochMeans();
                var values = new Dictionary<string, double>();
                if (!means.ContainsKey("train_loss")) values["train_loss"] = EpochMeanLoss(); // the module did not plot it
                foreach (var (key, value) in means) values[key] = value;
                if (Scheduler is not null || Optim.ParamGroups is not null) values["lr"] = EpochLearningRate;
                var metrics = new EpochMetrics(Epoch + 1, values, watch.Elapsed);
                history.Add(metrics);
                Log?.Invoke($"epoch {metrics.Epoch}/{MaxEpochs}: " + string.Join(", ", metrics.Values.Select(kv => $"{kv.Key} {kv.Value:F4}")) + $" ({metrics.Elapsed.TotalSeconds:F1} s)");
                EpochCompleted?.Invoke(metrics);
                if (CheckpointPath is not null && (Epoch + 1) % CheckpointEvery == 0)
                    Checkpoint.Write(CheckpointPath, this, model, data, history);
                if (best.Observe(metrics, model))
                {
                    Log?.Invoke($"early stopping after epoch {metrics.Epoch}: {EarlyStopping!.Monitor} has not improved for {EarlyStopping.Patience} epoch(s) since epoch {best.Epoch}.");
                    break;
                }
            }
            if (best.Restore(model))
                Log?.Invoke($"restored the weights of epoch {best.Epoch} ({EarlyStopping!.Monitor} {best.Value:F4}).");
            history.BestEpoch = best.Epoch;
            return history;
        }
        finally
        {
            best.Dispose();
        }
    }

    /// <summary>Between batches: the caller's token, then <see cref="CheckAlive"/>; a stop releases the batch not yet taken.</summary>
    private void StopIfAsked(Batch raw, CancellationToken cancellationToken)
    {
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            CheckAlive?.Invoke();
        }
        catch
        {
            raw.Dispose();
            throw;
        }
    }

    /// <summary>Optimizer steps per epoch: one per <see cref="AccumulateGradBatches"/> batches, the last window possibly shorter.</summary>
    public int StepsPerEpoch => (NumTrainBatches + AccumulateGradBatches - 1) / AccumulateGradBatches;

    /// <summary>The early-stopping bookkeeping: the best value so far, its epoch, and a copy of its weights.</summary>
    private sealed class BestEpoch(EarlyStopping? rule) : IDisposable
    {
        private Dictionary<string, Tensor>? _weights;
        private int _since;

        public int? Epoch { get; private set; }
        public double? Value { get; private set; }

        /// <summary>Records the epoch; true when training should stop.</summary>
        public bool Observe(EpochMetrics metrics, TrainableModule model)
        {
            if (rule is null) return false;
            if (!metrics.Values.TryGetValue(rule.Monitor, out var value))
                throw new InvalidOperationException(
                    $"EarlyStopping monitors '{rule.Monitor}', but the epoch reported {string.Join(", ", metrics.Values.Keys.Select(k => $"'{k}'"))}" +
                    (rule.Monitor.StartsWith("val_", StringComparison.Ordinal) ? ": give the Trainer validation data." : "."));
            if (rule.Improves(value, Value))
            {
                (Epoch, Value, _since) = (metrics.Epoch, value, 0);
                if (rule.RestoreBestWeights) Snapshot(model);
                return false;
            }
            return ++_since >= rule.Patience;
        }

        public bool Restore(TrainableModule model)
        {
            if (_weights is null || rule is null || !rule.RestoreBestWeights) return false;
            StateDict.Load(model, _weights);
            return true;
        }

        private void Snapshot(TrainableModule model)
        {
            Dispose();
            using var noGrad = no_grad();
            _weights = StateDict.Get(model).ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone().DetachFromDisposeScope());
        }

        public void Dispose()
        {
            foreach (var t in _weights?.Values ?? Enumerable.Empty<Tensor>()) t.Dispose();
            _weights = null;
        }
    }

    /// <summary>The learning rate of the first step of the current epoch (what History records as "lr").</summary>
    public double EpochLearningRate { get; private set; } = double.NaN;

    private static double CurrentLearningRate(optim.Optimizer optimizer) =>
        optimizer.ParamGroups?.FirstOrDefault() is { } group ? group.LearningRate : double.NaN;

    /// <summary>One epoch: train mode, then every batch: step → zero_grad → backward → clip → step; then validation under no_grad.</summary>
    public void FitEpoch(CancellationToken cancellationToken = default)
    {
        var model = Model ?? throw new InvalidOperationException("Call PrepareModel (or Fit) before FitEpoch.");
        var optimizer = Optim ?? throw new InvalidOperationException("Fit creates the optimizer; call Fit, not FitEpoch, first.");
        var loader = TrainDataLoader ?? throw new InvalidOperationException("Call PrepareData (or Fit) before FitEpoch.");
        int checkEvery = Math.Max(1, NumTrainBatches / Math.Max(1, model.PlotTrainPerEpoch));
        _checkedUpTo = 0;
        EpochLearningRate = CurrentLearningRate(optimizer);
        model.train();
        int k = AccumulateGradBatches, inWindow = 0, batchInEpoch = 0;
        using var accumulationScale = (1.0 / k).ToScalar();
        foreach (var raw in loader)
        {
            StopIfAsked(raw, cancellationToken);
            var batch = PrepareBatch(raw);
            try
            {
                using var scope = NewDisposeScope();
                Tensor loss;
                if (_replicas.Count == 0)
                {
                    loss = model.TrainingStep(batch);
                    if (inWindow == 0) optimizer.zero_grad();
                    // k batches of mean losses, each scaled by 1/k, add up to the gradient of their mean.
                    (k == 1 ? loss : loss.mul(accumulationScale)).backward();
                }
                else
                {
                    optimizer.zero_grad();
                    loss = DataParallelLoss(model, batch); // runs each replica's backward itself
                }
                batchInEpoch++;
                if (++inWindow == k || batchInEpoch == NumTrainBatches)
                {
                    if (GradientClipVal > 0) ClipGradients(GradientClipVal, model);
                    optimizer.step();
                    if (Scheduler is not null)
                    {
                        Scheduler.step();
                        SchedulerSteps++;
                    }
                    if (_replicas.Count > 0) Broadcast();
                    inWindow = 0;
                }
                TrackFinite(loss);
            }
            finally
            {
                if (!ReferenceEquals(batch, raw)) batch.Dispose();
                raw.Dispose();
            }
            TrainBatchIdx++;
            if (TrainBatchIdx % checkEvery == 0) ThrowIfNonFinite();
        }
        ThrowIfNonFinite();
        if (ValDataLoader is null) return;
        model.eval();
        using (no_grad())
        {
            foreach (var raw in ValDataLoader)
            {
                StopIfAsked(raw, cancellationToken);
                var batch = PrepareBatch(raw);
                try
                {
                    using var scope = NewDisposeScope();
                    model.ValidationStep(batch);
                }
                finally
                {
                    if (!ReferenceEquals(batch, raw)) batch.Dispose();
                    raw.Dispose();
                }
                ValBatchIdx++;
            }
        }
    }

    /// <summary>
    /// Scales all trainable gradients so that their global L2 norm is at most <paramref name="gradClipVal"/>:
    /// scale = min(1, θ / (‖g‖ + 1e-6)), computed on the device — no host sync.
    /// </summary>
    public static void ClipGradients(double gradClipVal, nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!(gradClipVal > 0)) throw new ArgumentOutOfRangeException(nameof(gradClipVal), gradClipVal, "must be > 0");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var grads = model.parameters().Where(p => p.requires_grad).Select(p => p.grad).OfType<Tensor>().ToList();
        if (grads.Count == 0) return;
        using var theta = gradClipVal.ToScalar();
        using var eps = 1e-6.ToScalar();
        var norm = stack(grads.Select(g => g.mul(g).sum().to_type(ScalarType.Float32)).ToArray()).sum().sqrt();
        var scale = norm.add(eps, Scalars.One).reciprocal().mul_(theta).clamp_max(Scalars.One); // min(1, θ / (‖g‖ + ε))
        foreach (var g in grads) g.mul_(scale.to_type(g.dtype));
    }

    /// <summary>Releases the optimizer, the replicas and the device-side counters.</summary>
    public void Dispose()
    {
        Optim?.Dispose();
        Optim = null;
        foreach (var r in _replicas) r.Dispose();
        _replicas.Clear();
        DisposeStepLosses();
    }

    private void DisposeStepLosses()
    {
        foreach (var slot in _stepLossSlots) slot.Dispose();
        _stepLossSlots = [];
        _stepLosses?.Dispose();
        _stepLosses = null;
    }

    // Chapter 13's data parallelism: split the batch, each replica computes its share of the (batch-mean) loss and its
    // gradients, the gradients are summed into the primary model, which steps; Broadcast then copies its parameters back.
    private Tensor DataParallelLoss(TrainableModule model, Batch batch)
    {
        var modules = new List<nn.Module<Tensor, Tensor>> { model.Net };
        modules.AddRange(_replicas);
        int k = Math.Min(modules.Count, (int)batch.Size);
        var xs = batch.X.tensor_split(k);
        var ys = batch.Y.tensor_split(k);
        foreach (var m in modules) m.zero_grad();
        Tensor total = zeros(1, device: Device).squeeze();
        for (int i = 0; i < k; i++)
        {
            var dev = TrainingDevices[i];
            var x = xs[i].to(dev);
            var y = ys[i].to(dev);
            using var weight = ((double)x.shape[0] / batch.Size).ToScalar();
            var share = model.Loss(modules[i].call(x), y).mul(weight);
            share.backward();
            total = total.add(share.detach().to(Device), Scalars.One);
        }
        using (no_grad())
        {
            var primary = model.Net.parameters().ToList();
            for (int i = 1; i < k; i++)
                foreach (var (p, r) in primary.Zip(modules[i].parameters()))
                    if (r.grad is { } g)
                    {
                        if (p.grad is null) p.grad = g.to(p.device);
                        else p.grad.add_(g.to(p.device));
                    }
        }
        model.Plot("loss", total, train: true);
        return total;
    }

    private void Broadcast()
    {
        if (_replicas.Count == 0) return;
        using var noGrad = no_grad();
        var source = StateDict.Get(Model!.Net);
        foreach (var replica in _replicas)
        {
            var target = StateDict.Get(replica);
            foreach (var (key, t) in source) target[key].copy_(t);
        }
    }

    private void EnsureModelOnDevice(nn.Module model)
    {
        foreach (var (name, p) in model.named_parameters())
            if (!Devices.Same(Devices.Of(p), Device))
                throw new DeviceMismatchException($"Parameter '{name}' is on {Devices.Name(Devices.Of(p))} but the trainer's device is {Devices.Name(Device)}.");
    }

    private void TrackFinite(Tensor loss)
    {
        if (_stepLosses is null) return;
        int i = TrainBatchIdx % NumTrainBatches;
        using var noGrad = no_grad();
        if (i < _stepLossSlots.Length)
        {
            _stepLossSlots[i].copy_(loss); // one device op per step into a view made once; nothing is read here
            return;
        }
        using var slot = _stepLosses.select(0, i); // past MaxLossSlots: a view for this step only
        slot.copy_(loss);
    }

    /// <summary>Batches per epoch whose loss slots are made once per Fit (each is a native tensor handle).</summary>
    private const int MaxLossSlots = 1 << 16;

    /// <summary>The mean of this epoch's training losses as recorded for the non-finite check (one host sync).</summary>
    private double EpochMeanLoss()
    {
        int n = Math.Min((int)(_stepLosses?.shape[0] ?? 0), TrainBatchIdx - Epoch * NumTrainBatches);
        if (n <= 0) return double.NaN;
        using var window = _stepLosses!.narrow(0, 0, n);
        using var mean = window.mean();
        return mean.item<double>();
    }

    /// <summary>Reads the losses logged since the last check (one host sync) and names the first non-finite one.</summary>
    private void ThrowIfNonFinite()
    {
        if (_stepLosses is null) return;
        int upTo = Math.Min((int)_stepLosses.shape[0], TrainBatchIdx - Epoch * NumTrainBatches);
        if (upTo <= _checkedUpTo) return;
        using var scope = NewDisposeScope();
        var window = _stepLosses.narrow(0, _checkedUpTo, upTo - _checkedUpTo);
        var bad = window.isfinite().logical_not();
        if (bad.any().item<bool>())
        {
            int first = _checkedUpTo + (int)bad.to_type(ScalarType.Int64).argmax().item<long>();
            throw new NonFiniteLossException(Epoch + 1, first + 1, NumTrainBatches);
        }
        _checkedUpTo = upTo;
    }

    private static void EnsureOptimizerOwnsModelParameters(nn.Module model, optim.Optimizer optimizer)
    {
        var current = model.parameters().Select(p => p.Handle).ToHashSet();
        if (optimizer.parameters().Any(p => !current.Contains(p.Handle)))
            throw new InvalidOperationException(
                "The optimizer holds parameters the model no longer has. TorchSharp's .to(device) replaces Parameter objects, " +
                "so create the optimizer in ConfigureOptimizers, which the Trainer calls after PrepareModel.");
    }
}

/// <summary>Training produced a NaN or infinite loss.</summary>
public sealed class NonFiniteLossException(int epoch, int batch, int batchesPerEpoch)
    : ArithmeticException($"The training loss became non-finite (NaN or infinity) at epoch {epoch}, batch {batch} of {batchesPerEpoch}. " +
                          "Lower the learning rate, clip gradients (gradientClipVal) or check the data for NaN/infinite values.")
{
    /// <summary>The epoch (1-based).</summary>
    public int Epoch { get; } = epoch;

    /// <summary>The batch within the epoch (1-based).</summary>
    public int Batch { get; } = batch;
}
