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
    private readonly DataParallel _dataParallel; // replicas of the net on TrainingDevices[1..]
    private readonly StepLosses _stepLosses = new(); // on the device: this epoch's training losses, read only at the board's cadence
    private ICollectives? _ranks; // null: chosen from the environment when first needed (see Ranks)
    private RankSync? _rankSync;

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
        _dataParallel = new DataParallel(TrainingDevices);
        GradientClipVal = gradientClipVal;
        Log = log;
    }

    /// <summary>
    /// The processes this trainer trains with, data parallel (see <see cref="ICollectives"/>): by default
    /// <see cref="Collectives.For"/>(<see cref="Distribution.Auto"/>), MPI when an MPI launcher started this process with
    /// several ranks, else one process. With several ranks every rank runs the same Fit on its own share of the data:
    /// rank 0's weights are broadcast before the first step, gradients are averaged across ranks (weighted by each rank's
    /// rows) before clipping and every optimizer step, losses and metrics are reduced, and only rank 0 writes checkpoints.
    /// </summary>
    public ICollectives Ranks
    {
        get => _ranks ??= Collectives.For(Distribution.Auto);
        init => _ranks = value ?? throw new ArgumentNullException(nameof(Ranks));
    }

    private RankSync Sync => _rankSync ??= new RankSync(Ranks);

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
        // With several ranks, every rank takes as many steps as the rank with the most batches (others take empty ones).
        NumTrainBatches = Sync.AgreeBatches(TrainDataLoader.Count);
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
        _dataParallel.Replicate(model);
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
        try
        {
            using var gate = Sync.IsActive ? Sync.EnterFit() : null; // one distributed Fit at a time per process
            return FitAllEpochs(model, data, resumeFrom, cancellationToken);
        }
        catch (Exception e)
        {
            Sync.EndJobUnlessShared(e); // with several ranks, an error of this rank alone ends the job
            throw;
        }
    }

    private History FitAllEpochs(TrainableModule model, DataModule data, string? resumeFrom, CancellationToken cancellationToken)
    {
        PrepareData(data);
        PrepareModel(model);
        // Resume: everything is read and range-checked first; then applied with a roll-back, so a refused checkpoint
        // leaves the model's weights, the data's shuffle state and this trainer's optimizer as they were.
        var resume = Resume.Read(resumeFrom, MaxEpochs, StepsPerEpoch);
        var (optimizer, scheduler) = ConfigureOptimizers(model, data, resume);
        Optim?.Dispose();
        (Optim, Scheduler) = (optimizer, scheduler);
        (Epoch, TrainBatchIdx, ValBatchIdx, SchedulerSteps) = resume?.Counters ?? (0, 0, 0, 0);
        var history = resume?.History() ?? new History();
        if (resume is not null) Log?.Invoke($"resumed from {resume.Path} after epoch {resume.Epoch}.");
        _stepLosses.Allocate(NumTrainBatches, Device);
        using var best = new BestEpoch(EarlyStopping);
        for (; Epoch < MaxEpochs; Epoch++)
        {
            var watch = Stopwatch.StartNew();
            FitEpoch(cancellationToken);
            var metrics = EndEpoch(model, watch);
            history.Add(metrics);
            Log?.Invoke($"epoch {metrics.Epoch}/{MaxEpochs}: " + string.Join(", ", metrics.Values.Select(kv => $"{kv.Key} {kv.Value:F4}")) + $" ({metrics.Elapsed.TotalSeconds:F1} s)");
            EpochCompleted?.Invoke(metrics);
            if (CheckpointPath is not null && (Epoch + 1) % CheckpointEvery == 0)
                Sync.OnRankZero(() => Checkpoint.Write(CheckpointPath, this, model, data, history));
            if (best.Observe(metrics, model))
            {
                Log?.Invoke($"early stopping after epoch {metrics.Epoch}: {EarlyStopping!.Monitor} has not improved for {EarlyStopping.Patience} epoch(s) since epoch {best.Epoch}.");
                break;
            }
        }
        if (best.Restore(model))
            Log?.Invoke($"restored the weights of epoch {best.Epoch} ({EarlyStopping!.Monitor} {best.Value:F4}).");
        Sync.Broadcast(model.Net); // parameters are alike already; buffers (running statistics) are each rank's own until here
        history.BestEpoch = best.Epoch;
        return history;
    }

    /// <summary>
    /// d2l's <c>configure_optimizers</c> as Fit calls it: a resumed run's weights are loaded first and its optimizer,
    /// scheduler and random state applied last; if anything throws, the model and data are rolled back to
    /// <paramref name="resume"/>'s snapshot and the new optimizer is released.
    /// </summary>
    private (optim.Optimizer, optim.lr_scheduler.LRScheduler?) ConfigureOptimizers(TrainableModule model, DataModule data, Resume? resume)
    {
        using var before = resume is null ? null : Snapshot.Take(model, data);
        optim.Optimizer? optimizer = null;
        try
        {
            resume?.LoadWeights(model);
            model.EnsureInitialized();
            Sync.Agree(this, model, resume);
            Sync.Broadcast(model.Net); // every rank starts from rank 0's weights
            _dataParallel.Broadcast(model.Net); // and every replica from the (loaded, broadcast) primary's
            EnsureModelOnDevice(model); // once: PrepareBatch then puts every batch on the same device
            optimizer = model.ConfigureOptimizers();
            EnsureOptimizerOwnsModelParameters(model, optimizer);
            var scheduler = model.ConfigureScheduler(optimizer, checked(MaxEpochs * StepsPerEpoch));
            if (AccumulateGradBatches > 1 && _dataParallel.IsActive)
                throw new NotSupportedException("Gradient accumulation is not supported with data-parallel replicas; use one device or AccumulateGradBatches = 1.");
            resume?.ApplyState(optimizer, scheduler, data);
            return (optimizer, scheduler);
        }
        catch
        {
            before?.Restore(model, data);
            optimizer?.Dispose();
            throw;
        }
    }

    /// <summary>The epoch's metrics: the module's epoch means, the trainer's own training loss if none was plotted, and the rate.</summary>
    private EpochMetrics EndEpoch(TrainableModule model, Stopwatch watch)
    {
        var means = Sync.Reduce(model.TakeEpochSums()).ToDictionary(kv => kv.Key, kv => kv.Value.Sum / kv.Value.Count);
        var values = new Dictionary<string, double>();
        if (!means.ContainsKey("train_loss")) values["train_loss"] = _stepLosses.EpochMean(Epoch, TrainBatchIdx, NumTrainBatches); // the module did not plot it
        foreach (var (key, value) in means) values[key] = value;
        if (Scheduler is not null || Optim!.ParamGroups is not null) values["lr"] = EpochLearningRate;
        return new EpochMetrics(Epoch + 1, values, watch.Elapsed);
    }

    /// <summary>Between batches: the caller's token, then <see cref="CheckAlive"/>; a stop releases the batch not yet taken.</summary>
    private void StopIfAsked(Batch raw, CancellationToken cancellationToken)
    {
        try
        {
            CheckStop(cancellationToken);
        }
        catch
        {
            raw.Dispose();
            throw;
        }
    }

    private void CheckStop(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        CheckAlive?.Invoke();
    }

    /// <summary>The loader's batches, then nulls up to <see cref="NumTrainBatches"/>: the steps every rank agreed to take.</summary>
    private IEnumerable<Batch?> PadToAgreedSteps(IDataLoader loader)
    {
        int taken = 0;
        foreach (var batch in loader)
        {
            if (taken == NumTrainBatches)
            {
                batch.Dispose();
                throw new InvalidOperationException($"The training loader yielded more than the {NumTrainBatches} batches its Count said (and the ranks agreed on).");
            }
            taken++;
            yield return batch;
        }
        for (; taken < NumTrainBatches; taken++) yield return null;
    }

    /// <summary>Optimizer steps per epoch: one per <see cref="AccumulateGradBatches"/> batches, the last window possibly shorter.</summary>
    public int StepsPerEpoch => GradientAccumulation.StepsPerEpoch(NumTrainBatches, AccumulateGradBatches);

    /// <summary>The learning rate of the first step of the current epoch (what History records as "lr").</summary>
    public double EpochLearningRate { get; private set; } = double.NaN;

    private static double CurrentLearningRate(optim.Optimizer optimizer) =>
        optimizer.ParamGroups?.FirstOrDefault() is { } group ? group.LearningRate : double.NaN;

    /// <summary>
    /// One epoch, d2l's <c>fit_epoch</c>: train mode, then every batch: <c>prepare_batch</c> → <c>training_step</c> →
    /// <c>zero_grad</c> → <c>backward</c> → clip → <c>step</c> (with <see cref="AccumulateGradBatches"/> &gt; 1, one
    /// zero_grad and step per window of batches; with several devices, each replica runs its share of the step and backward);
    /// then validation under <c>no_grad</c>.
    /// </summary>
    public void FitEpoch(CancellationToken cancellationToken = default)
    {
        var (model, optimizer, loader) = ReadyForEpoch();
        _stepLosses.BeginEpoch(checkEvery: Math.Max(1, NumTrainBatches / Math.Max(1, model.PlotTrainPerEpoch)));
        EpochLearningRate = CurrentLearningRate(optimizer);
        model.train();
        using var accumulation = new GradientAccumulation(AccumulateGradBatches, NumTrainBatches);
        double windowRows = 0, windowGlobalRows = 0; // this window's rows here and on all ranks (for the ranks' gradient mean)
        foreach (var taken in Sync.IsActive ? PadToAgreedSteps(loader) : loader)
        {
            // raw is null only with several ranks, for a step this rank has no batch for: it still takes part.
            var raw = taken;
            Exception? stop = null; // with several ranks, a stop is shared at this step's loss reduction, so every rank stops here
            if (!Sync.IsActive) StopIfAsked(raw!, cancellationToken);
            else
            {
                try { CheckStop(cancellationToken); }
                catch (Exception e) { stop = e; raw?.Dispose(); raw = null; }
            }
            var batch = raw is null ? null : PrepareBatch(raw);
            try
            {
                using var scope = NewDisposeScope();
                Tensor? loss = null;
                if (!_dataParallel.IsActive)
                {
                    if (accumulation.StartsWindow) optimizer.zero_grad();
                    if (batch is not null)
                    {
                        loss = model.TrainingStep(batch);
                        if (!Sync.IsActive) accumulation.Scale(loss).backward(); // k batches of mean losses, each scaled by 1/k, add up to the gradient of their mean.
                        else
                        {
                            // Across ranks: the sum of the rows' gradients, which AverageGradients divides by the window's rows on all ranks.
                            using var rows = ((double)batch.Size).ToScalar();
                            loss.mul(rows).backward();
                        }
                    }
                }
                else
                {
                    optimizer.zero_grad();
                    if (batch is not null) loss = _dataParallel.Loss(model, batch); // runs each replica's backward itself
                }
                if (Sync.IsActive)
                {
                    long rows = batch?.Size ?? 0;
                    loss = Sync.ReduceLoss(loss, rows, stop is not null, out double globalRows, out int stoppedRank); // every rank tracks (and checks) the same loss
                    if (stoppedRank >= 0) throw RankSync.StoppedOnEveryRank(stop, stoppedRank);
                    (windowRows, windowGlobalRows) = (windowRows + rows, windowGlobalRows + globalRows);
                }
                if (accumulation.EndsWindow())
                {
                    if (Sync.IsActive)
                    {
                        // Replicas' shares are batch means (no accumulation with replicas): weight them by rows; sums already are.
                        Sync.AverageGradients(model.Net, _dataParallel.IsActive ? windowRows : 1, windowGlobalRows);
                        (windowRows, windowGlobalRows) = (0, 0);
                    }
                    if (GradientClipVal > 0) ClipGradients(GradientClipVal, model);
                    optimizer.step();
                    StepScheduler();
                    if (_dataParallel.IsActive) _dataParallel.Broadcast(model.Net); // the stepped weights back to the replicas
                }
                _stepLosses.Track(loss!, TrainBatchIdx, NumTrainBatches);
            }
            finally
            {
                if (batch is not null) Release(batch, raw!);
            }
            TrainBatchIdx++;
            if (_stepLosses.CheckDue(TrainBatchIdx)) ThrowIfNonFinite();
        }
        ThrowIfNonFinite();
        if (ValDataLoader is not null) ValidationEpoch(model, ValDataLoader, cancellationToken);
    }

    /// <summary>What <see cref="FitEpoch"/> needs: the model, the optimizer and the training loader, checked in that order.</summary>
    private (TrainableModule, optim.Optimizer, IDataLoader) ReadyForEpoch() =>
        (Model ?? throw new InvalidOperationException("Call PrepareModel (or Fit) before FitEpoch."),
         Optim ?? throw new InvalidOperationException("Fit creates the optimizer; call Fit, not FitEpoch, first."),
         TrainDataLoader ?? throw new InvalidOperationException("Call PrepareData (or Fit) before FitEpoch."));

    /// <summary>The end of d2l's <c>fit_epoch</c>: eval mode, then <c>validation_step</c> on every batch under <c>no_grad</c>.</summary>
    private void ValidationEpoch(TrainableModule model, IDataLoader loader, CancellationToken cancellationToken)
    {
        model.eval();
        using (no_grad())
        {
            foreach (var raw in loader)
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
                    Release(batch, raw);
                }
                ValBatchIdx++;
            }
        }
    }

    /// <summary>Steps the scheduler, if any, and counts the step (what a checkpoint replays).</summary>
    private void StepScheduler()
    {
        if (Scheduler is null) return;
        Scheduler.step();
        SchedulerSteps++;
    }

    /// <summary>Disposes a prepared batch (when <see cref="PrepareBatch"/> made a copy) and the loader's batch.</summary>
    private static void Release(Batch batch, Batch raw)
    {
        if (!ReferenceEquals(batch, raw)) batch.Dispose();
        raw.Dispose();
    }

    private void ThrowIfNonFinite() => _stepLosses.ThrowIfNonFinite(Epoch, TrainBatchIdx, NumTrainBatches);

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
        var norm = stack(grads.Select(SparseGradients.SquaredNorm).ToArray()).sum().sqrt();
        var scale = norm.add(eps, Scalars.One).reciprocal().mul_(theta).clamp_max(Scalars.One); // min(1, θ / (‖g‖ + ε))
        foreach (var g in grads) (g.is_sparse ? g.SparseValues : g).mul_(scale.to_type(g.dtype)); // a sparse one's entries, in place
    }

    /// <summary>Releases the optimizer, the replicas and the device-side counters.</summary>
    public void Dispose()
    {
        Optim?.Dispose();
        Optim = null;
        _dataParallel.Dispose();
        _stepLosses.Dispose();
    }

    private void EnsureModelOnDevice(nn.Module model)
    {
        foreach (var (name, p) in model.named_parameters())
            if (!Devices.Same(Devices.Of(p), Device))
                throw new DeviceMismatchException($"Parameter '{name}' is on {Devices.Name(Devices.Of(p))} but the trainer's device is {Devices.Name(Device)}.");
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
