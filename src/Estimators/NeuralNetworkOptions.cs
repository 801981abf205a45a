using MlNetGuide.Modules;
using MlNetGuide.Training;

namespace MlNetGuide.Estimators;

/// <summary>The three tasks an estimator can train for.</summary>
public enum NeuralTask
{
    /// <summary>Predict a number: <c>Score</c> (Single) against a Single label.</summary>
    Regression,

    /// <summary>Predict true/false: <c>Score</c> (logit), <c>Probability</c>, <c>PredictedLabel</c> (Boolean) against a Boolean label.</summary>
    BinaryClassification,

    /// <summary>Predict one of K classes: <c>Score</c> (K probabilities), <c>PredictedLabel</c> (key) against a key label.</summary>
    MulticlassClassification,
}

/// <summary>How training reacts to a NaN or infinite feature value.</summary>
public enum NonFiniteFeaturePolicy
{
    /// <summary>Fail at Fit, naming the column and the row (default: nothing is dropped silently).</summary>
    Throw,

    /// <summary>Leave such rows out of training and validation, and log how many were skipped.</summary>
    SkipRow,
}

/// <summary>The optimizer <see cref="TrainableModule.ConfigureOptimizers"/> creates.</summary>
public enum OptimizerKind
{
    /// <summary>Plain minibatch SGD (d2l's default).</summary>
    Sgd,

    /// <summary>Adam (with <see cref="NeuralNetworkOptions.WeightDecay"/> as an L2 term in the gradient).</summary>
    Adam,

    /// <summary>AdamW: Adam with decoupled weight decay (<see cref="NeuralNetworkOptions.WeightDecay"/>).</summary>
    AdamW,
}

/// <summary>How the learning rate changes over training (stepped after every batch, through TorchSharp's schedulers).</summary>
public enum LearningRateSchedule
{
    /// <summary>The same rate throughout (the chapter's).</summary>
    Constant,

    /// <summary>Cosine annealing from the rate to 0 over all steps (<c>CosineAnnealingLR</c>).</summary>
    Cosine,

    /// <summary>
    /// One cycle (<c>OneCycleLR</c>): up from rate/25 to the rate over the first 30 % of steps, then down to rate/25/10⁴;
    /// SGD with momentum and Adam also cycle their momentum (β₁) between 0.95 and 0.85.
    /// </summary>
    OneCycle,

    /// <summary>Step decay (<c>StepLR</c>): the rate times 0.1 after each third of training.</summary>
    Step,
}

/// <summary>
/// Options shared by the neural-network estimators. Defaults are chosen to train a small MLP on tabular or image
/// features in seconds on a CPU.
/// </summary>
public abstract class NeuralNetworkOptions
{
    /// <summary>Input column: a known-size vector of Single (or one Single). Default "Features".</summary>
    public string FeatureColumnName { get; set; } = "Features";

    /// <summary>Label column. Default "Label".</summary>
    public string LabelColumnName { get; set; } = "Label";

    /// <summary>Output column with the score. Default "Score".</summary>
    public string ScoreColumnName { get; set; } = "Score";

    /// <summary>The network. Default <c>NetworkArchitecture.Mlp(256)</c>.</summary>
    public NetworkArchitecture Architecture { get; set; } = NetworkArchitecture.Mlp(256);

    /// <summary>How the network's linear layers are initialized (<see cref="NetworkInit"/>: the chapter's schemes); null keeps the layers' own defaults. Default Xavier weights, zero biases.</summary>
    public InitScheme? Init { get; set; } = InitScheme.Xavier;

    /// <summary>Passes over the training data. Default 10.</summary>
    public int Epochs { get; set; } = 10;

    /// <summary>Rows per training batch. Default 128.</summary>
    public int BatchSize { get; set; } = 128;

    /// <summary>Learning rate. Default 0.1 (SGD).</summary>
    public double LearningRate { get; set; } = 0.1;

    /// <summary>Optimizer. Default <see cref="OptimizerKind.Sgd"/>.</summary>
    public OptimizerKind Optimizer { get; set; } = OptimizerKind.Sgd;

    /// <summary>SGD's momentum μ (0 is the chapter's plain SGD; 0.9 is usual). Default 0.</summary>
    public double Momentum { get; set; }

    /// <summary>Weight decay λ: an L2 term for SGD and Adam, decoupled for AdamW. Default 0.</summary>
    public double WeightDecay { get; set; }

    /// <summary>How the learning rate changes over training; <see cref="History"/> records it per epoch. Default constant.</summary>
    public LearningRateSchedule Schedule { get; set; } = LearningRateSchedule.Constant;

    /// <summary>
    /// Epochs of linear warm-up: the rate rises from rate/steps to the rate over them, then follows <see cref="Schedule"/>
    /// (not with <see cref="LearningRateSchedule.OneCycle"/>, which warms up itself). Default 0.
    /// </summary>
    public int WarmupEpochs { get; set; }

    /// <summary>
    /// Stop when a validation metric stops improving and keep the best epoch's weights, e.g.
    /// <c>EarlyStopping = new("val_loss", Patience: 3)</c> (needs <see cref="ValidationFraction"/> &gt; 0 for val_* metrics).
    /// The transformer's <see cref="NeuralNetworkTransformer.History"/> says which epoch was kept. Default null (off).
    /// </summary>
    public EarlyStopping? EarlyStopping { get; set; }

    /// <summary>Batches whose gradients are averaged before each optimizer step: the effective batch is this × <see cref="BatchSize"/>. Default 1.</summary>
    public int GradientAccumulationSteps { get; set; } = 1;

    /// <summary>GPUs to train on (d2l's <c>num_gpus</c>); more than exist are clamped, with a log line. Default 0 (CPU).
    /// <c>MLContext.GpuDeviceId</c>, when set, picks the first device and takes precedence.</summary>
    public int NumGpus { get; set; }

    /// <summary>Global gradient-norm bound; 0 turns clipping off. Default 0.</summary>
    public double GradientClipVal { get; set; }

    /// <summary>Fraction of rows held out (by a seeded hash of the row id) to report validation loss/accuracy. Default 0.</summary>
    public double ValidationFraction { get; set; }

    /// <summary>What to do with NaN or infinite features at Fit. Default <see cref="NonFiniteFeaturePolicy.Throw"/>.
    /// At scoring, such a row, or one whose finite features make the network overflow, gets NaN scores without affecting
    /// other rows: multiclass, the missing PredictedLabel key (0); binary, NaN Probability and PredictedLabel false (a
    /// Boolean has no missing value, as with ML.NET's own binary scorers).</summary>
    public NonFiniteFeaturePolicy NonFiniteFeatures { get; set; } = NonFiniteFeaturePolicy.Throw;

    /// <summary>
    /// Training data up to this many megabytes (features as float32, plus labels) is read from the IDataView once, at
    /// the start of Fit, and shuffled in memory every epoch, as ML.NET's own LBFGS and SDCA trainers cache theirs. Larger
    /// data (or 0 here) streams from the IDataView every epoch: globally shuffled when the view can shuffle (e.g. after
    /// <c>AppendCacheCheckpoint</c>), otherwise within windows of 16 batches. Default 1024 (1 GiB).
    /// </summary>
    public int InMemoryLimitMB { get; set; } = 1024;

    /// <summary>
    /// Threads libtorch uses while Fit trains (ML.NET's <c>NumberOfThreads</c>), set on the thread that calls Fit and
    /// restored there when Fit ends. Default null: one thread, which trains the tabular networks this estimator mostly
    /// sees as fast as more threads do and slows in proportion when other processes load the machine (OpenMP's workers
    /// spin waiting for each other while a neighbour holds a core); the README's "Threads" paragraph gives the
    /// measurements. On a quiet machine, wide convolutional networks may gain from <c>Environment.ProcessorCount</c>.
    /// </summary>
    public int? NumberOfThreads { get; set; }

    /// <summary>
    /// Training across processes. Default <see cref="Distribution.Auto"/>: when an MPI launcher started this program with
    /// several ranks (<c>mpirun -np 4 dotnet MyApp.dll</c>), Fit trains data parallel: every rank runs the same pipeline,
    /// reads its own share of the rows (a seeded hash of each row's id), trains on <see cref="BatchSize"/> / ranks rows per
    /// step so that a step still sees <see cref="BatchSize"/> rows in all, averages gradients with the others, and ends
    /// with the same transformer as every other rank. Save it on one rank with
    /// <see cref="DistributedTraining.SaveOnRankZero"/>. <see cref="Distribution.SingleProcess"/>: each process trains
    /// alone whatever launched it. See docs/distributed.md.
    /// </summary>
    public Distribution Distribution { get; set; } = Distribution.Auto;

    /// <summary>
    /// For a token column (a vector of keys, e.g. <c>TokenizeIntoWords</c> then <c>MapValueToKey</c>): the tokens of a
    /// row a network reads, the first ones; a longer row is cut, a shorter one padded (each batch only to its longest
    /// row). Default 256. Ignored for numeric features.
    /// </summary>
    public int MaxTokens { get; set; } = 256;

    /// <summary>
    /// For a token column: the text column <c>TokenizeIntoWords</c> split to make it (after <c>NormalizeText</c>, if the
    /// pipeline has one). ML.NET's OnnxTransformer takes no variable-length vector, so the plain zip
    /// <c>mlContext.Model.Save</c> writes splits this column and numbers its words itself (ONNX StringSplit and
    /// LabelEncoder, with the key mapping's words); Fit checks on the training rows (up to 100,000) that this gives the
    /// token column exactly, and names the first row that differs. Default null: Fit looks for such a column among the
    /// data's text columns (split on <see cref="TokenSeparators"/>), the last one that fits; when none does,
    /// the network trains as well and only <c>mlContext.Model.Save</c> refuses it (<c>NeuralModel.Save</c> still works).
    /// </summary>
    public string? TextColumnName { get; set; }

    /// <summary>
    /// The separators <c>TokenizeIntoWords</c> was given, for <see cref="TextColumnName"/>. Default null: a space, as its
    /// default. They must include the space: <c>TokenizeIntoWords</c> trims spaces around each piece, which the zip's
    /// ONNX model cannot do otherwise.
    /// </summary>
    public char[]? TokenSeparators { get; set; }

    /// <summary>Rows per forward pass when scoring with Transform. Default 512.</summary>
    public int ScoringBatchSize { get; set; } = 512;

    /// <summary>Seed for initialization and shuffling; null derives it from the MLContext's seed. Default null.</summary>
    public int? Seed { get; set; }

    /// <summary>Called after every epoch (progress displays). May be null.</summary>
    public Action<EpochMetrics>? EpochCompleted { get; set; }

    /// <summary>Cancels training between batches. Default none.</summary>
    public CancellationToken CancellationToken { get; set; }

    internal abstract NeuralTask Task { get; }

    internal virtual string? ProbabilityColumnName => null;

    internal virtual string? PredictedLabelColumnName => null;

    internal void Validate()
    {
        static void Name(string? value, string what)
        {
            if (string.IsNullOrWhiteSpace(value)) throw new ArgumentException($"{what} must name a column.", what);
        }
        Name(FeatureColumnName, nameof(FeatureColumnName));
        Name(LabelColumnName, nameof(LabelColumnName));
        Name(ScoreColumnName, nameof(ScoreColumnName));
        ArgumentNullException.ThrowIfNull(Architecture, nameof(Architecture));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(Epochs, nameof(Epochs));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(BatchSize, nameof(BatchSize));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(ScoringBatchSize, nameof(ScoringBatchSize));
        ArgumentOutOfRangeException.ThrowIfNegative(NumGpus, nameof(NumGpus));
        ArgumentOutOfRangeException.ThrowIfNegative(InMemoryLimitMB, nameof(InMemoryLimitMB)); // 0 streams every epoch
        if (NumberOfThreads is { } threads) ArgumentOutOfRangeException.ThrowIfNegativeOrZero(threads, nameof(NumberOfThreads));
        if (TokenSeparators is { Length: 0 }) throw new ArgumentException("TokenSeparators must list at least one character (or be null: a space).", nameof(TokenSeparators));
        if (MaxTokens is < 1 or > 65536) throw new ArgumentOutOfRangeException(nameof(MaxTokens), MaxTokens, "must be between 1 and 65,536 tokens");
        if (!Enum.IsDefined(Distribution)) throw new ArgumentOutOfRangeException(nameof(Distribution), Distribution, "not a Distribution");
        LearningRates.Check(LearningRate, nameof(LearningRate));
        if (!(Momentum >= 0 && Momentum < 1))
            throw new ArgumentOutOfRangeException(nameof(Momentum), Momentum, "Must be in [0, 1).");
        if (Momentum > 0 && Optimizer != OptimizerKind.Sgd)
            throw new ArgumentException($"Momentum applies to SGD; {Optimizer} has its own betas.", nameof(Momentum));
        if (!(WeightDecay >= 0) || double.IsInfinity(WeightDecay))
            throw new ArgumentOutOfRangeException(nameof(WeightDecay), WeightDecay, "Must be a finite number >= 0.");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(GradientAccumulationSteps, nameof(GradientAccumulationSteps));
        if (WarmupEpochs < 0 || WarmupEpochs >= Epochs)
            throw new ArgumentOutOfRangeException(nameof(WarmupEpochs), WarmupEpochs, $"Must be in [0, Epochs) = [0, {Epochs}).");
        if (WarmupEpochs > 0 && Schedule == LearningRateSchedule.OneCycle)
            throw new ArgumentException("OneCycle warms up by itself (its first 30 % of steps); leave WarmupEpochs at 0.", nameof(WarmupEpochs));
        if (EarlyStopping is { } stop)
        {
            stop.Validate();
            if (stop.Monitor.StartsWith("val_", StringComparison.Ordinal) && ValidationFraction == 0)
                throw new ArgumentException($"EarlyStopping monitors '{stop.Monitor}', which needs validation rows: set ValidationFraction (e.g. 0.1).", nameof(EarlyStopping));
        }
        if (!(GradientClipVal >= 0) || double.IsInfinity(GradientClipVal))
            throw new ArgumentOutOfRangeException(nameof(GradientClipVal), GradientClipVal, "Must be a finite number >= 0 (0 turns clipping off).");
        if (!(ValidationFraction >= 0 && ValidationFraction < 1))
            throw new ArgumentOutOfRangeException(nameof(ValidationFraction), ValidationFraction, "Must be in [0, 1).");
        if (PredictedLabelColumnName is { } p) Name(p, "PredictedLabelColumnName");
        if (ProbabilityColumnName is { } q) Name(q, "ProbabilityColumnName");
    }
}

/// <summary>Options of <see cref="NeuralNetworkEstimator"/> for regression.</summary>
public sealed class RegressionNeuralNetworkOptions : NeuralNetworkOptions
{
    /// <summary>Creates options with a smaller default learning rate (0.01) suited to squared error.</summary>
    public RegressionNeuralNetworkOptions() => LearningRate = 0.01;

    internal override NeuralTask Task => NeuralTask.Regression;
}

/// <summary>Options of <see cref="NeuralNetworkEstimator"/> for binary classification.</summary>
public sealed class BinaryNeuralNetworkOptions : NeuralNetworkOptions
{
    /// <summary>Output column with the probability of <c>true</c>. Default "Probability".</summary>
    public string ProbabilityColumn { get; set; } = "Probability";

    /// <summary>Output column with the predicted Boolean. Default "PredictedLabel".</summary>
    public string PredictedLabelColumn { get; set; } = "PredictedLabel";

    internal override NeuralTask Task => NeuralTask.BinaryClassification;
    internal override string? ProbabilityColumnName => ProbabilityColumn;
    internal override string? PredictedLabelColumnName => PredictedLabelColumn;
}

/// <summary>Options of <see cref="NeuralNetworkEstimator"/> for multiclass classification.</summary>
public sealed class MulticlassNeuralNetworkOptions : NeuralNetworkOptions
{
    /// <summary>Output column with the predicted key. Default "PredictedLabel".</summary>
    public string PredictedLabelColumn { get; set; } = "PredictedLabel";

    internal override NeuralTask Task => NeuralTask.MulticlassClassification;
    internal override string? PredictedLabelColumnName => PredictedLabelColumn;
}
