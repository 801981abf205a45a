using MlNetGuide.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>
/// d2l's <c>Module</c>: a network plus how to train it — <see cref="Loss"/>, <see cref="TrainingStep"/>,
/// <see cref="ValidationStep"/>, <see cref="ConfigureOptimizers"/> — and a <see cref="ProgressBoard"/> it plots to.
/// (Named TrainableModule so it does not collide with TorchSharp's <c>nn.Module</c>.)
/// </summary>
public abstract class TrainableModule : nn.Module<Tensor, Tensor>
{
    private nn.Module<Tensor, Tensor>? net; // null once ReleaseNet handed it to a new owner
    private readonly Dictionary<string, (Tensor sum, int count)> _epochSums = [];

    /// <summary>Wraps <paramref name="net"/>. A module built this way trains on one device.</summary>
    protected TrainableModule(string name, nn.Module<Tensor, Tensor> net, double lr) : base(name)
    {
        ArgumentNullException.ThrowIfNull(net);
        LearningRate = LearningRates.Check(lr, nameof(lr));
        this.net = net;
        register_module(nameof(net), net);
    }

    /// <summary>Builds the net with <paramref name="netFactory"/>; the factory also builds replicas for multi-device training.</summary>
    protected TrainableModule(string name, Func<nn.Module<Tensor, Tensor>> netFactory, double lr)
        : this(name, (netFactory ?? throw new ArgumentNullException(nameof(netFactory)))(), lr)
    {
        NetFactory = netFactory;
    }

    /// <summary>The wrapped network.</summary>
    /// <exception cref="InvalidOperationException">The net was handed over with <see cref="ReleaseNet"/>.</exception>
    public nn.Module<Tensor, Tensor> Net => net ?? throw new InvalidOperationException($"This {GetType().Name}'s net was handed over with ReleaseNet.");

    /// <summary>
    /// Hands the network to the caller, who owns it from now on: it is no longer a submodule, so disposing this module
    /// leaves it alive (what a product keeps after training, without the trainer's bookkeeping).
    /// </summary>
    public nn.Module<Tensor, Tensor> ReleaseNet()
    {
        var released = Net;
        register_module(nameof(net), null!); // TorchSharp unregisters a submodule given null
        net = null;
        return released;
    }

    /// <summary>Builds a fresh copy of the network's architecture, or null when the module was given a net instance.</summary>
    public Func<nn.Module<Tensor, Tensor>>? NetFactory { get; }

    /// <summary>Learning rate used by the default <see cref="ConfigureOptimizers"/>.</summary>
    public double LearningRate
    {
        get => _learningRate;
        set => _learningRate = LearningRates.Check(value, nameof(LearningRate));
    }

    private double _learningRate;

    /// <summary>Plotted training points per epoch (d2l: 2).</summary>
    public int PlotTrainPerEpoch { get; init; } = 2;

    /// <summary>Plotted validation points per epoch (d2l: 1).</summary>
    public int PlotValidPerEpoch { get; init; } = 1;

    /// <summary>The board this module plots to.</summary>
    public ProgressBoard Board { get; } = new();

    /// <summary>
    /// Whether <see cref="Plot"/> draws on <see cref="Board"/> (d2l: always). With false, plotted values still reach the
    /// epoch's means in <see cref="History"/>, and no board points are kept: for a caller nobody watches draw.
    /// </summary>
    public bool DrawsBoard { get; init; } = true;

    /// <summary>
    /// Whether <see cref="TrainingStep"/> plots the training loss (d2l's <c>self.plot('loss', l, train=True)</c>).
    /// Without it History's train_loss still comes from the Trainer's own per-step record; the ML.NET estimator turns it
    /// off, since it draws no board.
    /// </summary>
    public bool PlotsTrainingLoss { get; init; } = true;

    /// <summary>The trainer that prepared this module, or null.</summary>
    public Trainer? Trainer { get; internal set; }

    /// <summary>The loss of predictions <paramref name="yHat"/> against targets <paramref name="y"/>, averaged over the batch.</summary>
    public abstract Tensor Loss(Tensor yHat, Tensor y);

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => Net.call(x);

    /// <summary>Computes and plots the training loss of one batch; returns it for backward.</summary>
    public virtual Tensor TrainingStep(Batch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        using var yHat = call(batch.X);
        var l = Loss(yHat, batch.Y);
        if (PlotsTrainingLoss) Plot("loss", l, train: true);
        return l;
    }

    /// <summary>Computes and plots the validation loss of one batch.</summary>
    public virtual void ValidationStep(Batch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        using var yHat = call(batch.X);
        using var l = Loss(yHat, batch.Y);
        Plot("loss", l, train: false);
    }

    /// <summary>Builds the optimizer from the parameters and the learning rate; null means SGD.</summary>
    public Func<IEnumerable<TorchSharp.Modules.Parameter>, double, optim.Optimizer>? OptimizerFactory { get; set; }

    /// <summary>The optimizer: <see cref="OptimizerFactory"/>, else <see cref="Sgd"/> with <see cref="LearningRate"/>. Called by the Trainer after PrepareModel.</summary>
    public virtual optim.Optimizer ConfigureOptimizers() =>
        OptimizerFactory is { } make ? make(parameters(), LearningRate) : new Sgd(parameters(), LearningRate);

    /// <summary>
    /// Builds a learning-rate scheduler (any of TorchSharp's <c>optim.lr_scheduler</c>) for the optimizer and the total
    /// number of training steps; the Trainer steps it after every optimizer step. Null: a constant rate.
    /// </summary>
    public Func<optim.Optimizer, int, optim.lr_scheduler.LRScheduler>? SchedulerFactory { get; set; }

    /// <summary>The scheduler from <see cref="SchedulerFactory"/>, or null. Called by the Trainer after <see cref="ConfigureOptimizers"/>.</summary>
    public virtual optim.lr_scheduler.LRScheduler? ConfigureScheduler(optim.Optimizer optimizer, int totalSteps) =>
        SchedulerFactory?.Invoke(optimizer, totalSteps);

    /// <summary>
    /// Plots <paramref name="value"/> as <c>train_key</c> or <c>val_key</c> with d2l's x positions and averaging, and
    /// adds it to the epoch's means reported in <see cref="History"/>. No host sync happens here.
    /// </summary>
    public void Plot(string key, Tensor value, bool train)
    {
        ArgumentNullException.ThrowIfNull(value);
        var t = Trainer ?? throw new InvalidOperationException("Plot needs a Trainer: call Trainer.PrepareModel (or Fit) first.");
        double x;
        int n;
        if (train)
        {
            x = (double)t.TrainBatchIdx / t.NumTrainBatches;
            n = Math.Max(1, t.NumTrainBatches / PlotTrainPerEpoch);
        }
        else
        {
            x = t.Epoch + 1;
            n = Math.Max(1, t.NumValBatches / PlotValidPerEpoch);
        }
        string label = (train ? "train_" : "val_") + key;
        using (no_grad())
        {
            // Two tiny device ops per step (one add into the board's sum, one into the epoch's); nothing is read here.
            if (DrawsBoard) Board.Draw(x, value, label, n);
            _epochSums.TryGetValue(label, out var acc); // (null, 0) for the epoch's first value
            _epochSums[label] = (DeviceSum.Add(acc.sum, value), acc.count + 1);
        }
    }

    /// <summary>Means of everything plotted since the last call, read from the device once; resets the sums.</summary>
    internal Dictionary<string, double> TakeEpochMeans() => TakeEpochSums().ToDictionary(kv => kv.Key, kv => kv.Value.Sum / kv.Value.Count);

    /// <summary>Sums and counts of everything plotted since the last call (what ranks add up), read once; resets them.</summary>
    internal Dictionary<string, (double Sum, int Count)> TakeEpochSums()
    {
        var result = new Dictionary<string, (double Sum, int Count)>();
        foreach (var (label, (sum, count)) in _epochSums)
        {
            result[label] = (sum.item<double>(), count);
            sum.Dispose();
        }
        _epochSums.Clear();
        return result;
    }

    /// <summary>6.4 d2l's <c>apply_init</c>: a dry run with <paramref name="inputs"/>, then <paramref name="init"/> on the net.</summary>
    public TrainableModule ApplyInit(Tensor inputs, InitScheme? init = null)
    {
        Net.ApplyInit(inputs, init);
        return this;
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            Board.Dispose();
            foreach (var (sum, _) in _epochSums.Values) sum.Dispose();
            _epochSums.Clear();
        }
        base.Dispose(disposing);
    }
}

/// <summary>d2l's <c>Classifier</c>: cross-entropy loss over logits and integer labels, and validation accuracy.</summary>
public class Classifier : TrainableModule
{
    /// <summary>Wraps a network whose output is one logit per class.</summary>
    public Classifier(nn.Module<Tensor, Tensor> net, double lr = 0.1) : base(nameof(Classifier), net, lr) { }

    /// <summary>Builds the network with a factory (needed to train on several devices).</summary>
    public Classifier(Func<nn.Module<Tensor, Tensor>> netFactory, double lr = 0.1) : base(nameof(Classifier), netFactory, lr) { }

    /// <inheritdoc />
    public override Tensor Loss(Tensor yHat, Tensor y) => Losses.CrossEntropy(yHat, y);

    /// <summary>Fraction of rows whose arg-max logit is the label (a one-element tensor on the logits' device).</summary>
    public static Tensor Accuracy(Tensor yHat, Tensor y) => Losses.Accuracy(yHat, y);

    /// <inheritdoc />
    public override void ValidationStep(Batch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        using var yHat = call(batch.X);
        using var l = Loss(yHat, batch.Y);
        using var acc = Accuracy(yHat, batch.Y);
        Plot("loss", l, train: false);
        Plot("acc", acc, train: false);
    }
}

/// <summary>A regressor: mean squared error between a one-column output and a float target.</summary>
public class Regressor : TrainableModule
{
    /// <summary>Wraps a network with one output.</summary>
    public Regressor(nn.Module<Tensor, Tensor> net, double lr = 0.01) : base(nameof(Regressor), net, lr) { }

    /// <summary>Builds the network with a factory (needed to train on several devices).</summary>
    public Regressor(Func<nn.Module<Tensor, Tensor>> netFactory, double lr = 0.01) : base(nameof(Regressor), netFactory, lr) { }

    /// <inheritdoc />
    public override Tensor Loss(Tensor yHat, Tensor y) => Losses.MeanSquaredError(yHat, y);
}

/// <summary>A binary classifier: one logit per row, binary cross-entropy against 0/1 targets, and accuracy.</summary>
public class BinaryClassifier : TrainableModule
{
    /// <summary>Wraps a network with one output (the logit of the positive class).</summary>
    public BinaryClassifier(nn.Module<Tensor, Tensor> net, double lr = 0.1) : base(nameof(BinaryClassifier), net, lr) { }

    /// <summary>Builds the network with a factory (needed to train on several devices).</summary>
    public BinaryClassifier(Func<nn.Module<Tensor, Tensor>> netFactory, double lr = 0.1) : base(nameof(BinaryClassifier), netFactory, lr) { }

    /// <inheritdoc />
    public override Tensor Loss(Tensor yHat, Tensor y) => Losses.BinaryCrossEntropyWithLogits(yHat, y);

    /// <inheritdoc />
    public override void ValidationStep(Batch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        using var yHat = call(batch.X);
        using var l = Loss(yHat, batch.Y);
        using var acc = Losses.BinaryAccuracy(yHat, batch.Y);
        Plot("loss", l, train: false);
        Plot("acc", acc, train: false);
    }
}
