using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using MlNetGuide.Modules;
using MlNetGuide.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Estimators;

/// <summary>
/// Trains a TorchSharp network — a built-in MLP, the chapter's modules, or your own registered module — with an
/// initialization scheme from <c>MlNetGuide.Modules</c>, through the d2l-style <see cref="Trainer"/>, as one step of an
/// ML.NET pipeline.
/// </summary>
/// <remarks>
/// <para><b>Input and output columns</b></para>
/// <list type="table">
/// <listheader><term>Column</term><description>Type</description></listheader>
/// <item><term>Features (input)</term><description>known-size vector of Single (or one Single)</description></item>
/// <item><term>Label (input)</term><description>regression: Single · binary: Boolean · multiclass: key (use MapValueToKey)</description></item>
/// <item><term>Score</term><description>regression: Single · binary: Single (logit) · multiclass: vector of K class probabilities</description></item>
/// <item><term>Probability</term><description>binary only: Single, the sigmoid of Score</description></item>
/// <item><term>PredictedLabel</term><description>binary: Boolean · multiclass: key with the label's key values</description></item>
/// </list>
/// <para><b>Trainer characteristics</b></para>
/// <list type="table">
/// <item><term>Machine learning task</term><description>regression, binary or multiclass classification</description></item>
/// <item><term>Is normalization required?</term><description>yes (e.g. NormalizeMinMax): SGD on raw pixel values diverges</description></item>
/// <item><term>Is caching required?</term><description>no: training data up to <see cref="NeuralNetworkOptions.InMemoryLimitMB"/> is read into memory once and shuffled there each epoch; larger data streams every epoch, shuffled globally after AppendCacheCheckpoint, otherwise within windows of 16 batches</description></item>
/// <item><term>Required NuGet in addition to Microsoft.ML</term><description>MlNetGuide.Estimators (TorchSharp-cpu, or TorchSharp-cuda-* for GPUs)</description></item>
/// <item><term>Deterministic</term><description>on CPU, the same MLContext seed (or Options.Seed) gives bit-identical weights</description></item>
/// </list>
/// <para>Devices: <c>MLContext.GpuDeviceId</c> picks the GPU, as in Microsoft.ML.TorchSharp; without CUDA the estimator
/// falls back to the CPU when <c>MLContext.FallbackToCpu</c> is true and fails otherwise. <see cref="NeuralNetworkOptions.NumGpus"/>
/// above 1 trains data parallel.</para>
/// </remarks>
public sealed class NeuralNetworkEstimator : IEstimator<NeuralNetworkTransformer>
{
    private readonly IHostEnvironment _env;
    private readonly NeuralNetworkOptions _options;

    internal NeuralNetworkEstimator(IHostEnvironment env, NeuralNetworkOptions options)
    {
        ArgumentNullException.ThrowIfNull(env);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        TorchSharpRuntime.EnsureLoaded();
        _env = env;
        _options = options;
    }

    /// <summary>The options this estimator trains with.</summary>
    public NeuralNetworkOptions Options => _options;

    /// <inheritdoc />
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        var o = _options;
        var features = Find(inputSchema, o.FeatureColumnName, ColumnChecks.FeaturesExpected);
        if (!ColumnChecks.FeaturesFit(ColumnChecks.Shape.Of(features)))
            throw new SchemaMismatchException(o.FeatureColumnName, ColumnChecks.FeaturesExpected, $"{features.Kind} of {features.ItemType}{(features.IsKey ? " (key)" : "")}");
        string labelExpected = ColumnChecks.LabelExpected(o.Task, o.LabelColumnName);
        var label = Find(inputSchema, o.LabelColumnName, labelExpected);
        if (!ColumnChecks.LabelFits(o.Task, ColumnChecks.Shape.Of(label)))
            throw new SchemaMismatchException(o.LabelColumnName, labelExpected, $"{label.Kind} of {label.ItemType}");
        KeyValues? keyValues = null;
        int outputs = 1;
        if (o.Task == NeuralTask.MulticlassClassification)
        {
            outputs = 2; // the count is unknown in a SchemaShape; only the column types matter here
            if (label.Annotations.LastOrDefault(c => c.Name == KeyValues.KeyValuesKind) is { Name: not null } kv && kv.ItemType is PrimitiveDataViewType item)
                keyValues = KeyValues.Placeholder(item, outputs); // so the shape's Score carries SlotNames/TrainingLabelValues as the fitted one does
        }
        // Describe our output columns with a real schema and let ML.NET turn it into a shape (see MlNetInternals).
        var builder = new DataViewSchema.Builder();
        NeuralScorer.AddOutputColumns(builder, o.Task, outputs, o.ScoreColumnName, o.ProbabilityColumnName, o.PredictedLabelColumnName, keyValues);
        var added = MlNetInternals.ShapeOf(builder.ToSchema());
        var names = added.Select(c => c.Name).ToHashSet();
        return new SchemaShape(inputSchema.Where(c => !names.Contains(c.Name)).Concat(added));
    }

    private static SchemaShape.Column Find(SchemaShape schema, string name, string expected) =>
        schema.LastOrDefault(c => c.Name == name) is { Name: not null } col ? col : throw ColumnChecks.Missing(name, expected, schema.Select(c => c.Name));

    /// <summary>Validates the data, builds and initializes the network, and trains it.</summary>
    /// <exception cref="SchemaMismatchException">A column is missing, mistyped, or holds an unusable value.</exception>
    public NeuralNetworkTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return Fit(input, validationData: null);
    }

    /// <summary>
    /// Trains on <paramref name="trainData"/> and reports validation loss (and accuracy for classifiers) on
    /// <paramref name="validationData"/> after every epoch — ML.NET's <c>FastTree</c>/<c>LightGbm</c> shape, and what
    /// <see cref="NeuralNetworkOptions.EarlyStopping"/> watches. The validation rows go through the same checks as the
    /// training rows; leave <see cref="NeuralNetworkOptions.ValidationFraction"/> at 0 when passing them.
    /// </summary>
    /// <exception cref="SchemaMismatchException">A column is missing, mistyped, holds an unusable value, or the two data views disagree.</exception>
    public NeuralNetworkTransformer Fit(IDataView trainData, IDataView? validationData) => Fit(trainData, validationData, initialModel: null);

    /// <summary>
    /// Warm start: continues training <paramref name="initialModel"/> (a fitted or loaded network of the same
    /// architecture, features and outputs) on <paramref name="trainData"/>, as ML.NET's trainers accept their previous
    /// model parameters in <c>Fit</c>. The new transformer starts from a copy of its weights; <paramref name="initialModel"/>
    /// is left as it was. The init scheme is not applied. For a model loaded from a zip, take the network out of the
    /// chain <c>NeuralModel.Load</c> returns (<c>chain.OfType&lt;NeuralNetworkTransformer&gt;().Single()</c>).
    /// </summary>
    public NeuralNetworkTransformer Fit(IDataView trainData, NeuralNetworkTransformer initialModel, IDataView? validationData = null)
    {
        ArgumentNullException.ThrowIfNull(initialModel);
        return Fit(trainData, validationData, initialModel);
    }

    private NeuralNetworkTransformer Fit(IDataView trainData, IDataView? validationData, NeuralNetworkTransformer? initialModel)
    {
        ArgumentNullException.ThrowIfNull(trainData);
        var ranks = Collectives.For(_options.Distribution);
        try
        {
            return Fit(trainData, validationData, initialModel, ranks);
        }
        catch (Exception e)
        {
            ranks.EndJobOnFailure(e); // with several ranks, an error of this rank alone (a bad row only it read) ends the job
            throw;
        }
    }

    private NeuralNetworkTransformer Fit(IDataView trainData, IDataView? validationData, NeuralNetworkTransformer? initialModel, ICollectives ranks)
    {
        var input = trainData;
        var o = _options;
        if (validationData is not null && o.ValidationFraction > 0)
            throw new ArgumentException(
                $"Pass validation data or set ValidationFraction ({o.ValidationFraction}), not both.", nameof(validationData));
        var host = _env.Register("MlNetGuide.NeuralNetwork");
        using var ch = host.Start("Training");
        using var threads = TorchThreads.Use(o.NumberOfThreads ?? 1);
        int seed = o.Seed ?? host.Rand.Next();
        var shard = new RowShard(ranks.Rank, ranks.Size);
        using var source = new DataViewBatchSource(input, o, seed, shard: shard);
        var keyValues = o.Task == NeuralTask.MulticlassClassification ? KeyValues.From(source.LabelColumn) : null;
        ranks.Agree("the estimator's data and options", RankSettings(o, seed, source, keyValues)); // before any row is read
        var devices = MlNetDevices.Resolve(_env, o.NumGpus, m => ch.Warning(MessageSensitivity.None, m)); // GpuDeviceId first, then NumGpus
        source.Prepare((long)o.InMemoryLimitMB << 20);
        // A token column's text column, checked row for row: what lets mlContext.Model.Save write a plain zip (TokenText).
        if (!source.ReadsTokens && (o.TextColumnName is not null || o.TokenSeparators is not null))
            throw new ArgumentException($"NeuralNetworkOptions.TextColumnName and TokenSeparators are for a token column; '{o.FeatureColumnName}' holds numbers. Leave them unset.");
        string? noText = null;
        var text = source.ReadsTokens
            ? TokenText.Find(input, input.Schema[o.FeatureColumnName], source.FeatureCount, source.Vocabulary, o.TextColumnName,
                o.TokenSeparators is null ? null : new string(o.TokenSeparators), o.CancellationToken, out noText)
            : null;
        if (source.ReadsTokens)
            ch.Info(MessageSensitivity.None, text is not null
                ? $"The tokens of '{o.FeatureColumnName}' are text column '{text.Column}' split on its separators: mlContext.Model.Save can write a plain zip."
                : $"mlContext.Model.Save will refuse this network: {noText}. Set NeuralNetworkOptions.TextColumnName, or save with NeuralModel.Save.");
        using var valSource = validationData is null ? null : new DataViewBatchSource(validationData, o, seed, splitValidation: false, shard: shard);
        if (valSource is not null)
        {
            if (valSource.Vocabulary != source.Vocabulary)
                throw new SchemaMismatchException(o.FeatureColumnName, source.Vocabulary > 0 ? $"keys over the training data's {source.Vocabulary - 1} tokens (apply the MapValueToKey fitted on the training data)" : $"{source.FeatureCount} numbers, as in the training data",
                    valSource.Vocabulary > 0 ? $"keys over {valSource.Vocabulary - 1} tokens in the validation data" : "numbers in the validation data");
            if (valSource.TokenKeys != source.TokenKeys)
                throw new SchemaMismatchException(o.FeatureColumnName, "the training data's token keys in their order (apply the MapValueToKey fitted on the training data)",
                    "another mapping of as many tokens in the validation data");
            if (valSource.FeatureCount != source.FeatureCount)
                throw new SchemaMismatchException(o.FeatureColumnName, $"{source.FeatureCount} values, as in the training data", $"{valSource.FeatureCount} in the validation data");
            if (valSource.ClassCount != source.ClassCount)
                throw new SchemaMismatchException(o.LabelColumnName, $"a key of {source.ClassCount} classes, as in the training data", $"{valSource.ClassCount} in the validation data");
            // Keys mean classes only through their values: a MapValueToKey fitted on each data view separately numbers them differently.
            if (keyValues is { } trainKeys && KeyValues.From(valSource.LabelColumn) is { } valKeys && !trainKeys.Values.SequenceEqual(valKeys.Values))
                throw new SchemaMismatchException(o.LabelColumnName, $"the training data's key values [{string.Join(", ", trainKeys.Values.Take(5))}…] in the same order",
                    $"[{string.Join(", ", valKeys.Values.Take(5))}…] in the validation data (fit MapValueToKey once, on the training data, and apply it to both)");
            valSource.Prepare((long)o.InMemoryLimitMB << 20);
        }
        if (source.SkippedRows > 0)
            ch.Warning(MessageSensitivity.None, $"Skipped {source.SkippedRows} row(s) with non-finite features (NonFiniteFeatures = SkipRow).");

        int outputs = o.Task == NeuralTask.MulticlassClassification ? source.ClassCount : 1;
        manual_seed(seed); // lazy layers and built-in defaults draw from the global generator
        // The Trainer's own task modules (d2l's Classifier, and its binary and regression kin): their losses and validation
        // metrics; no board, and the training loss from the Trainer's per-step record. Disposed after Fit, once the network
        // is taken back, so the transformer holds nothing of the training run but its History.
        Func<nn.Module<Tensor, Tensor>> build = () => o.Architecture.Build(source.FeatureCount, outputs, source.Vocabulary);
        TrainableModule objective = o.Task switch
        {
            NeuralTask.MulticlassClassification => new Classifier(build, o.LearningRate) { DrawsBoard = false, PlotsTrainingLoss = false },
            NeuralTask.BinaryClassification => new BinaryClassifier(build, o.LearningRate) { DrawsBoard = false, PlotsTrainingLoss = false },
            _ => new Regressor(build, o.LearningRate) { DrawsBoard = false, PlotsTrainingLoss = false },
        };
        nn.Module<Tensor, Tensor> net;
        History history;
        try
        {
            if (!objective.Net.IsFullyInitialized())
                using (var dry = zeros(1, source.FeatureCount)) objective.Net.ApplyInit(dry);
            if (initialModel is null)
                o.Init?.WithSeed(seed).Apply(objective.Net);
            else
                WarmStart(objective.Net, initialModel, o, source.FeatureCount, outputs, source.Vocabulary);
            objective.OptimizerFactory = o.Optimizer switch
            {
                OptimizerKind.Adam => (ps, lr) => new Adam(ps, lr, weightDecay: o.WeightDecay),
                OptimizerKind.AdamW => (ps, lr) => new AdamW(ps, lr, weightDecay: o.WeightDecay),
                _ => (ps, lr) => new Sgd(ps, lr, momentum: o.Momentum, weightDecay: o.WeightDecay),
            };
            objective.SchedulerFactory = Schedule(o);
            Trainer? running = null; // the streamed shuffle of epoch e is seeded by e, however often the loader is enumerated
            // Validation rows: given (in memory, or streamed in order every epoch), or split off the training data.
            var memoryVal = valSource is null ? source.MemoryVal : valSource.MemoryTrain;
            // Rows split off in memory stay there: streaming them would make every epoch read the whole data view again.
            Func<IEnumerable<Batch>>? streamedVal = valSource is null
                ? (source.ValRows > 0 && !source.InMemory ? source.Validation : null)
                : valSource.InMemory ? null : valSource.InOrder;
            int valBatches = Math.Max(1, valSource?.TrainBatches ?? source.ValBatches);
            // Warnings for a quietly useless model, from every row in memory or the first streamed batch.
            bool looked = false;
            double constantLoss = double.NaN;
            void Look(Tensor x, Tensor y)
            {
                if (looked) return;
                looked = true;
                if (!source.ReadsTokens && FitWarnings.FarFromUnitScale(x, o.FeatureColumnName) is { } warning) ch.Warning(MessageSensitivity.None, warning);
                constantLoss = FitWarnings.ConstantLoss(o.Task, y, outputs);
            }
            if (source.InMemory) Look(source.MemoryTrain![0], source.MemoryTrain[1]);
            using var memoryData = source.InMemory && streamedVal is null && !source.ReadsTokens ? new TensorDataModule(source.MemoryTrain!, source.BatchSize, memoryVal, seed) : null;
            // Validation batches: sparse rows held by their non-zeros, else streamed in order, else rows in memory.
            var sparseVal = valSource is null ? source.SparseVal : valSource.SparseTrain;
            Func<IEnumerable<Batch>>? validation = sparseVal is not null ? () => sparseVal.InOrder(source.BatchSize)
                : streamedVal ?? (memoryVal is null ? null : () => TensorDataModule.InOrder(memoryVal, source.BatchSize));
            // Training batches, when not a TensorDataModule's: wide sparse rows as sparse batches; token rows in memory in
            // batches of similar lengths (each cut to its longest row by TokenIdsInput); otherwise streamed from the view.
            int Epoch() => running?.Epoch ?? 0;
            var bucketed = source.InMemory && streamedVal is null && source.ReadsTokens ? new LengthBuckets(source.MemoryTrain!, source.BatchSize, seed) : null;
            (Func<IEnumerable<Batch>> Batches, int Count) train = source.SparseTrain is { } sparse ? (() => sparse.Shuffled(source.BatchSize, seed, Epoch()), sparse.Batches(source.BatchSize))
                : bucketed is not null ? (() => bucketed.Epoch(Epoch()), bucketed.Count)
                : (() => FirstBatchSeen(source.Train(Epoch()), source.InMemory ? null : Look), source.TrainBatches);
            DataModule data = memoryData ?? (DataModule)new EnumerableDataModule(train.Batches, train.Count, validation, valBatches);
            ch.Info(MessageSensitivity.None,
                $"Training {o.Architecture} for {o.Task} on {source.TrainRows} rows ({(valSource is null ? $"{source.ValRows} held out" : $"{valSource.TrainRows} validation rows given")}) of " +
                (source.ReadsTokens ? $"up to {source.FeatureCount} tokens over a vocabulary of {source.Vocabulary - 1:N0} " : $"{source.FeatureCount} features ") +
                (source.SparseTrain is { } held ? $"(read into memory once as {held.NonZeros:N0} non-zeros, {source.SparseBytes / 1048576.0:F1} MB where dense rows would take {source.TrainRows * source.FeatureCount * 4.0 / 1048576:F0} MB), "
                : memoryData is not null ? $"(read into memory once, {source.MemoryBytes / 1048576.0:F1} MB), " : source.InMemory ? "(read into memory once; the validation rows, over InMemoryLimitMB, stream every epoch, so the training rows do too), " : $"(streamed from the data view every epoch: over InMemoryLimitMB = {o.InMemoryLimitMB}), ") +
                $"{o.Epochs} epochs, batch {o.BatchSize}{(ranks.Size > 1 ? $" ({source.BatchSize} on each of {ranks.Size} ranks; this is rank {ranks.Rank})" : "")}, {o.Optimizer} lr {o.LearningRate}{(o.Momentum > 0 ? $" momentum {o.Momentum}" : "")}{(o.WeightDecay > 0 ? $" weight decay {o.WeightDecay}" : "")}{(o.Schedule != LearningRateSchedule.Constant ? $" ({o.Schedule} schedule)" : "")}, seed {seed}, device {(devices.Count == 0 ? "cpu" : string.Join("+", devices.Select(Devices.Name)))}, {get_num_threads()} thread(s).");
            // Ranks start from rank 0's broadcast weights; their dropout masks should differ, as their rows do.
            if (ranks.Size > 1) manual_seed(seed + 7919L * ranks.Rank);
            using (var trainer = new Trainer(o.Epochs, devices, o.GradientClipVal, m => ch.Info(MessageSensitivity.None, m))
                   { EarlyStopping = o.EarlyStopping, AccumulateGradBatches = o.GradientAccumulationSteps, CheckAlive = MlNetInternals.CheckAlive(host), Ranks = ranks })
            {
                running = trainer;
                if (o.EpochCompleted is { } callback) trainer.EpochCompleted += callback;
                history = trainer.Fit(objective, data, o.CancellationToken);
            }
            if (FitWarnings.NoBetterThanConstant(history, constantLoss, o.FeatureColumnName) is { } useless) ch.Warning(MessageSensitivity.None, useless);
            net = objective.ReleaseNet(); // the scorer owns it from here; the objective (and its trainer state) goes
            foreach (var p in net.parameters()) p.grad = null; // scoring needs no gradients: free their memory
        }
        finally
        {
            objective.Dispose();
        }
        try
        {
            var device = devices.Count > 0 ? devices[0] : CPU;
            var scorer = new NeuralScorer(o.Task, net, device, source.FeatureCount, outputs, o.FeatureColumnName,
                o.ScoreColumnName, o.ProbabilityColumnName, o.PredictedLabelColumnName, keyValues, source.Vocabulary, source.TokenKeys, text,
                sparseInput: o.Architecture.ReadsSparse && source.FeatureCount >= DataViewBatchSource.SparseWidth);
            return new NeuralNetworkTransformer(scorer, o.Architecture, o.ScoringBatchSize, history);
        }
        catch
        {
            net.Dispose();
            throw;
        }
    }

    private static void WarmStart(nn.Module net, NeuralNetworkTransformer initial, NeuralNetworkOptions o, int features, int outputs, int vocabulary)
    {
        var (a, b) = (initial.Architecture, o.Architecture);
        if (a.Name != b.Name || !a.HiddenWidths.SequenceEqual(b.HiddenWidths))
            throw new ArgumentException($"The initial model is {a}; these options train {b}. Warm start needs the same architecture.", nameof(initial));
        if (initial.VocabularySize != vocabulary)
            throw new SchemaMismatchException(o.FeatureColumnName,
                initial.VocabularySize > 0 ? $"the initial model's token keys over {initial.VocabularySize - 1} tokens" : "numbers, as the initial model read",
                vocabulary > 0 ? $"token keys over {vocabulary - 1} tokens in this data" : "numbers in this data");
        if (initial.Task != o.Task || initial.FeatureCount != features || initial.OutputCount != outputs)
            throw new SchemaMismatchException(o.FeatureColumnName,
                $"the initial model's {initial.Task} with {initial.FeatureCount} features and {initial.OutputCount} outputs",
                $"{o.Task} with {features} features and {outputs} outputs in this data");
        StateDict.Load(net, StateDict.Get(initial.Scorer.Module)); // copies: the initial model keeps its own weights
    }

    /// <summary>
    /// What every rank of a distributed Fit must hold alike: the data's shape, the label's classes, the seed, and every
    /// option that changes training (the column names and callbacks may differ).
    /// </summary>
    private static List<(string, string)> RankSettings(NeuralNetworkOptions o, int seed, DataViewBatchSource source, KeyValues? keyValues)
    {
        var settings = new List<(string, string)>
        {
            ("task", o.Task.ToString()),
            ("feature width", source.FeatureCount.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            ("classes", source.ClassCount.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            ("token vocabulary", source.Vocabulary.ToString(System.Globalization.CultureInfo.InvariantCulture) + (source.TokenKeys is { } digest ? $" (keys {digest})" : "")),
            ("label key values", keyValues is null ? "none" : string.Join(", ", keyValues.Values)),
            ("seed", seed.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            // Every rank reads the same rows and keeps its share: data split into a file per rank would be split again.
            ("rows in the data view", source.ViewRowCount is long n ? n.ToString(System.Globalization.CultureInfo.InvariantCulture) : "unknown"),
        };
        string[] free = [nameof(o.FeatureColumnName), nameof(o.LabelColumnName), nameof(o.ScoreColumnName), nameof(o.EpochCompleted),
            nameof(o.CancellationToken), nameof(o.NumberOfThreads), nameof(o.ScoringBatchSize), nameof(o.Seed), "ProbabilityColumn", "PredictedLabelColumn",
            nameof(o.TextColumnName), nameof(o.TokenSeparators)]; // the text column changes the saved zip, not training
        foreach (var p in o.GetType().GetProperties().Where(p => p.CanRead && p.GetIndexParameters().Length == 0 && !free.Contains(p.Name)).OrderBy(p => p.Name, StringComparer.Ordinal))
            settings.Add((p.Name, Convert.ToString(p.GetValue(o), System.Globalization.CultureInfo.InvariantCulture) ?? "null"));
        return settings;
    }

    /// <summary>The batches, with <paramref name="look"/> shown the features of the first one.</summary>
    private static IEnumerable<Batch> FirstBatchSeen(IEnumerable<Batch> batches, Action<Tensor, Tensor>? look)
    {
        foreach (var batch in batches)
        {
            look?.Invoke(batch.X, batch.Y);
            look = null;
            yield return batch;
        }
    }

    /// <summary>
    /// The learning-rate schedule as a TorchSharp scheduler over <c>steps</c> optimizer steps. One-cycle is TorchSharp's
    /// <c>OneCycleLR</c> (it warms up itself and cycles momentum); the others are a factor of the base rate through
    /// <c>LambdaLR</c>, so a linear warm-up over the first <see cref="NeuralNetworkOptions.WarmupEpochs"/> composes with
    /// each: factor(t) = warm-up(t) · schedule(t), warm-up(t) = min(1, (t + 1) / warm-up steps).
    /// </summary>
    private static Func<optim.Optimizer, int, optim.lr_scheduler.LRScheduler>? Schedule(NeuralNetworkOptions o)
    {
        if (o.Schedule == LearningRateSchedule.OneCycle)
            return (opt, steps) => optim.lr_scheduler.OneCycleLR(opt, o.LearningRate, total_steps: steps,
                cycle_momentum: o.Optimizer != OptimizerKind.Sgd || o.Momentum > 0); // plain SGD has no momentum to cycle
        if (o.Schedule == LearningRateSchedule.Constant && o.WarmupEpochs == 0) return null;
        return (opt, steps) => optim.lr_scheduler.LambdaLR(opt, t =>
        {
            int warmup = o.WarmupEpochs * (steps / o.Epochs); // the trainer's steps: the same on every rank
            double factor = o.Schedule switch
            {
                LearningRateSchedule.Cosine => 0.5 * (1 + Math.Cos(Math.PI * t / steps)),
                LearningRateSchedule.Step => Math.Pow(0.1, t / Math.Max(1, steps / 3)),
                _ => 1,
            };
            return warmup > 0 && t < warmup ? factor * (t + 1) / warmup : factor;
        });
    }
}
