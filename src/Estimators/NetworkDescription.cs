using System.Text.Json;
using MlNetGuide.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Estimators;

/// <summary>
/// A trained network's description — task, columns, architecture, sizes, label key values — in the one JSON shape all
/// three persistence paths use: the <c>partN.json</c> of a <see cref="NeuralModel"/> zip, the ONNX metadata of a plain
/// zip (<see cref="NetworkOnnx"/>, read back by <see cref="PlainModelZip"/>) and of a standalone ONNX export. It also
/// rebuilds the network from itself, checked against the weights the file holds and the load budget first.
/// </summary>
internal sealed class NetworkDescription
{
    /// <summary>The largest scoring batch size a file may ask for.</summary>
    public const int MaxScoringBatchSize = 1 << 20;

        public string Task { get; set; } = "";
        public string FeatureColumn { get; set; } = "";
        public string ScoreColumn { get; set; } = "";
        public string? ProbabilityColumn { get; set; }
        public string? PredictedLabelColumn { get; set; }
        public int FeatureCount { get; set; }
        /// <summary>For a network over a token column, its ids (key count + 1); 0 (absent in older files) for numbers.</summary>
        public int Vocabulary { get; set; }
        /// <summary>For a token network, the digest of its key mapping's values (checked at scoring), or null.</summary>
        public string? TokenKeys { get; set; }
        /// <summary>For a token network whose text column is known (<see cref="TokenText"/>): that column, its separators and the words in key order; else null.</summary>
        public string? TextColumn { get; set; }
        public string? TokenSeparators { get; set; }
        public string[]? TokenWords { get; set; }
        public int Outputs { get; set; }
        public string Architecture { get; set; } = "";
        public int[] HiddenWidths { get; set; } = [];
        public int ScoringBatchSize { get; set; }
        public string? KeyValueType { get; set; }
        public string[]? KeyValues { get; set; }

    /// <summary>The description of a trained network, as every persistence path writes it.</summary>
    public static NetworkDescription Of(NeuralNetworkTransformer t)
    {
        var s = t.Scorer;
        return new NetworkDescription
        {
            Task = s.Task.ToString(),
            FeatureColumn = s.FeatureColumn,
            ScoreColumn = s.ScoreColumn,
            ProbabilityColumn = s.ProbabilityColumn,
            PredictedLabelColumn = s.PredictedLabelColumn,
            FeatureCount = s.FeatureCount,
            Vocabulary = s.Vocabulary,
            TokenKeys = s.TokenKeys,
            TextColumn = s.Text?.Column,
            TokenSeparators = s.Text?.Separators,
            TokenWords = s.Text?.Words,
            Outputs = s.Outputs,
            Architecture = t.Architecture.Name,
            HiddenWidths = t.Architecture.HiddenWidths.ToArray(),
            ScoringBatchSize = t.ScoringBatchSize,
            KeyValueType = s.KeyValues?.TypeNameForSave,
            KeyValues = s.KeyValues?.Values,
        };
    }

    /// <summary>Parses the description stored as <paramref name="what"/> in <paramref name="source"/>.</summary>
    /// <exception cref="ModelFormatException">Not JSON, or empty.</exception>
    public static NetworkDescription Parse(string json, string what, string source)
    {
        try
        {
            return JsonSerializer.Deserialize<NetworkDescription>(json) ?? throw new ModelFormatException($"{source}: {what} is empty.");
        }
        catch (JsonException ex)
        {
            throw new ModelFormatException($"{source}: {what} is not valid JSON ({ex.Message}).", ex);
        }
    }

    /// <summary>
    /// Checks this description (from a NeuralModel zip or an exported ONNX model's metadata) against itself, the weights
    /// it comes with and the budget, then builds the module and fills it with <paramref name="loadWeights"/>.
    /// </summary>
    public NeuralNetworkTransformer Build(string configName, string weightsName, long weightBytes,
        string source, Device device, LoadBudget budget, Action<nn.Module<Tensor, Tensor>> loadWeights)
    {
        var config = this;
        if (!Enum.TryParse<NeuralTask>(config.Task, out var task))
            throw new ModelFormatException($"{source}: unknown task '{config.Task}'.");
        if (config.FeatureCount <= 0 || config.Outputs <= 0 || config.Vocabulary is < 0 or > ColumnChecks.MaxVocabulary + 1 || config.ScoringBatchSize is <= 0 or > MaxScoringBatchSize
            || config.HiddenWidths is null || config.HiddenWidths.Any(w => w <= 0))
            throw new ModelFormatException(
                $"{source}: invalid sizes in {configName} (features {config.FeatureCount}, outputs {config.Outputs}, hidden [{string.Join(", ", config.HiddenWidths ?? [])}], " +
                $"scoring batch size {config.ScoringBatchSize}; expected positive widths and a batch size of at most {MaxScoringBatchSize}).");
        if (task != NeuralTask.MulticlassClassification && config.Outputs != 1)
            throw new ModelFormatException($"{source}: a {task} network has 1 output, {configName} says {config.Outputs}.");
        var keyValues = config.KeyValueType is null ? null : MlNetGuide.Estimators.KeyValues.Parse(config.KeyValueType, config.KeyValues ?? []);
        if (task == NeuralTask.MulticlassClassification && keyValues is not null && keyValues.Count != config.Outputs)
            throw new ModelFormatException(
                $"{source}: {configName} has {keyValues.Count} label key values for a network of {config.Outputs} outputs; they must be equal.");
        TokenText? text = null;
        if (config.TextColumn is not null || config.TokenWords is not null || config.TokenSeparators is not null)
        {
            // The words the plain zip's tokenizer numbers must be the mapping the network was trained on.
            if (config.TextColumn is not { Length: > 0 } || config.TokenSeparators is not { Length: > 0 } || config.TokenWords is null
                || config.Vocabulary == 0 || config.TokenWords.Length != config.Vocabulary - 1 || config.TokenWords.Length > TokenText.MaxWords
                || config.TokenWords.Any(w => w is null) || !config.TokenSeparators.Contains(' ')
                || MlNetGuide.Estimators.KeyValues.Parse("Text", config.TokenWords).Digest != config.TokenKeys)
                throw new ModelFormatException(
                    $"{source}: {configName} names a text column with {config.TokenWords?.Length ?? 0:N0} words that are not the key mapping of the network's " +
                    $"{Math.Max(0, config.Vocabulary - 1):N0} tokens (digest {config.TokenKeys ?? "none"}). Refused.");
            text = new TokenText(config.TextColumn, config.TokenSeparators, config.TokenWords);
        }
        var architecture = NetworkArchitecture.FromConfig(config.Architecture, config.HiddenWidths);
        // Before building anything: the network must fit in the weights the file holds (a module's parameters are at
        // least as large as any width it was asked for), and the weights and the network must fit in the budget.
        long needed = architecture.MinimumParameterBytes(config.FeatureCount, config.Outputs, config.Vocabulary);
        if (needed > weightBytes)
            throw new ModelFormatException(
                $"{source}: architecture {architecture} for {config.FeatureCount} features and {config.Outputs} outputs needs at least {needed:N0} bytes of weights; " +
                $"{weightsName} holds {weightBytes:N0}.");
        budget.Charge(weightBytes, weightsName);
        budget.Charge(weightBytes, $"the network built for {weightsName}");
        var module = architecture.Build(config.FeatureCount, config.Outputs, config.Vocabulary);
        try
        {
            loadWeights(module);
            if (device.type != TorchSharp.DeviceType.CPU) module.to(device);
            var scorer = new NeuralScorer(task, module, device, config.FeatureCount, config.Outputs, config.FeatureColumn,
                config.ScoreColumn, config.ProbabilityColumn, config.PredictedLabelColumn, keyValues, config.Vocabulary, config.TokenKeys, text,
                sparseInput: architecture.ReadsSparse && config.FeatureCount >= DataViewBatchSource.SparseWidth);
            return new NeuralNetworkTransformer(scorer, architecture, config.ScoringBatchSize);
        }
        catch (StateDictMismatchException ex)
        {
            module.Dispose();
            throw new ModelFormatException(
                $"{source}: the stored weights do not fit architecture {architecture} as this process builds it " +
                $"(was a module registered under '{architecture.Name}' changed?). {ex.Message}", ex);
        }
        catch
        {
            module.Dispose();
            throw;
        }
    }
}
