using Microsoft.ML;
using MlNetGuide.Estimators;

namespace MlNetGuide.Samples.SpamFilter;

/// <summary>How a candidate's scores are evaluated.</summary>
public enum SpamScores
{
    /// <summary>The pipeline writes <c>Probability</c>: <c>BinaryClassification.Evaluate</c> (log-loss too).</summary>
    Calibrated,

    /// <summary>Only <c>Score</c> and <c>PredictedLabel</c> (e.g. a perceptron's margin): <c>EvaluateNonCalibrated</c>.</summary>
    NonCalibrated,
}

/// <summary>
/// One pipeline the job trains and compares: <see cref="Build"/> returns everything after reading, from the columns
/// <c>Text</c> (string: subject, newline, body) and <c>Label</c> (bool) to <c>Score</c> and <c>PredictedLabel</c>
/// (and <c>Probability</c> when <see cref="Scores"/> is <see cref="SpamScores.Calibrated"/>). The whole fitted pipeline is
/// what gets saved, so a candidate uses stock ML.NET text transforms for its featurization to keep the zip plain.
/// </summary>
/// <param name="Name">A short id, used in metrics.json.</param>
/// <param name="Title">What the table shows.</param>
/// <param name="Scores">Which evaluation its output columns allow.</param>
/// <param name="Build">The estimator to fit on the training split; called once per run with the job's MLContext.</param>
public sealed record SpamCandidate(string Name, string Title, SpamScores Scores, Func<MLContext, IEstimator<ITransformer>> Build)
{
    /// <summary>ML.NET's bag of word 1-2-grams and character 3-grams (normalized counts), then an averaged perceptron (10 passes).</summary>
    public static SpamCandidate AveragedPerceptron { get; } = new("featurize-text-averaged-perceptron", "FeaturizeText + AveragedPerceptron",
        SpamScores.NonCalibrated,
        ml => ml.Transforms.Text.FeaturizeText("Features", nameof(Email.Text))
            .AppendCacheCheckpoint(ml) // the trainer passes over the features many times: featurize once
            .Append(ml.BinaryClassification.Trainers.AveragedPerceptron()));

    /// <summary>The same features, then SDCA logistic regression (calibrated probabilities).</summary>
    public static SpamCandidate SdcaLogisticRegression { get; } = new("featurize-text-sdca-logistic-regression", "FeaturizeText + SdcaLogisticRegression",
        SpamScores.Calibrated,
        ml => ml.Transforms.Text.FeaturizeText("Features", nameof(Email.Text))
            .AppendCacheCheckpoint(ml)
            .Append(ml.BinaryClassification.Trainers.SdcaLogisticRegression()));

    /// <summary>
    /// An MlNetGuide text network over word tokens: ML.NET's own NormalizeText (lower case), TokenizeIntoWords and
    /// MapValueToKey make a vector of keys, which the network reads (the first <paramref name="maxTokens"/> of each email).
    /// </summary>
    public static SpamCandidate Network(string name, string title, NetworkArchitecture architecture, int epochs, double learningRate, int maxTokens = 400, int batchSize = 32, int vocabulary = 20_000) =>
        new(name, title, SpamScores.Calibrated,
            ml => ml.Transforms.Text.NormalizeText("Normalized", nameof(Email.Text), keepPunctuations: false, keepNumbers: false)
                .Append(ml.Transforms.Text.TokenizeIntoWords("Tokens", "Normalized"))
                .Append(ml.Transforms.Conversion.MapValueToKey("Tokens", maximumNumberOfKeys: vocabulary)) // the first words seen; later ones are missing keys (padding)
                .Append(ml.BinaryClassification.Trainers.NeuralNetwork(new BinaryNeuralNetworkOptions
                {
                    FeatureColumnName = "Tokens", Architecture = architecture, Init = null, Optimizer = OptimizerKind.Adam,
                    LearningRate = learningRate, Epochs = epochs, BatchSize = batchSize, MaxTokens = maxTokens,
                    TextColumnName = "Normalized", // what TokenizeIntoWords split: the plain zip splits it the same way
                })));

    /// <summary>
    /// ML.NET's FeaturizeText (the baselines' features), then an MlNetGuide MLP: its first layer reads the wide, sparse
    /// vectors by their non-zeros. A plain zip, as the baselines'.
    /// </summary>
    public static SpamCandidate FeaturizedMlp { get; } = new("featurize-text-mlp", "FeaturizeText + MlNetGuide MLP (sparse input)", SpamScores.Calibrated,
        ml => ml.Transforms.Text.FeaturizeText("Features", nameof(Email.Text))
            .AppendCacheCheckpoint(ml)
            .Append(ml.BinaryClassification.Trainers.NeuralNetwork(new BinaryNeuralNetworkOptions
            {
                Architecture = NetworkArchitecture.Mlp(16), Optimizer = OptimizerKind.Adam, LearningRate = 0.005, Epochs = 3, BatchSize = 128,
            })));

    /// <summary>
    /// ML.NET's FeaturizeText, then MlNetGuide's feature bag (fastText's linear model over the n-grams, d = 16): a step
    /// moves only the vectors of the n-grams its 32 emails hold (sparse gradients, lazy Adam). A plain zip, as the baselines'.
    /// </summary>
    public static SpamCandidate FeaturizedBag { get; } = new("featurize-text-feature-bag", "FeaturizeText + MlNetGuide feature bag (sparse gradients)", SpamScores.Calibrated,
        ml => ml.Transforms.Text.FeaturizeText("Features", nameof(Email.Text))
            .AppendCacheCheckpoint(ml)
            .Append(ml.BinaryClassification.Trainers.NeuralNetwork(new BinaryNeuralNetworkOptions
            {
                Architecture = NetworkArchitecture.FeatureBag(16), Optimizer = OptimizerKind.Adam, LearningRate = 0.003, Epochs = 5, BatchSize = 32,
            })));

    /// <summary>
    /// Hashed n-grams, then the feature bag (d = 4): ML.NET's NormalizeText, ProduceHashedWordBags (word 1-2-grams) and
    /// ProduceHashedNgrams over TokenizeIntoCharactersAsKeys (character 3-grams), 2¹⁸ buckets each, concatenated and
    /// L2-normalized — FeaturizeText's features, hashed instead of counted into a dictionary, so fitting the featurizer
    /// needs no pass over the emails. Stock transforms throughout: a plain zip, as the baselines'.
    /// </summary>
    public static SpamCandidate HashedBag { get; } = new("hashed-ngrams-feature-bag", "Hashed n-grams + MlNetGuide feature bag (sparse gradients)", SpamScores.Calibrated,
        ml => ml.Transforms.Text.NormalizeText("Normalized", nameof(Email.Text))
            .Append(ml.Transforms.Text.ProduceHashedWordBags("WordGrams", "Normalized", numberOfBits: 18, ngramLength: 2))
            .Append(ml.Transforms.Text.TokenizeIntoCharactersAsKeys("Characters", "Normalized"))
            .Append(ml.Transforms.Text.ProduceHashedNgrams("CharGrams", "Characters", numberOfBits: 18, ngramLength: 3, useAllLengths: false))
            .Append(ml.Transforms.Concatenate("Counts", "WordGrams", "CharGrams"))
            .Append(ml.Transforms.NormalizeLpNorm("Features", "Counts"))
            .AppendCacheCheckpoint(ml)
            .Append(ml.BinaryClassification.Trainers.NeuralNetwork(new BinaryNeuralNetworkOptions
            {
                Architecture = NetworkArchitecture.FeatureBag(4), Optimizer = OptimizerKind.Adam, LearningRate = 0.02, Epochs = 3, BatchSize = 128,
            })));

    /// <summary>The text networks: two feature bags, an MLP, fastText, d2l's textCNN, a bidirectional GRU and a Transformer encoder, sized for 2 cores.</summary>
    public static IReadOnlyList<SpamCandidate> Networks { get; } =
    [
        HashedBag,
        FeaturizedBag,
        FeaturizedMlp,
        Network("fasttext", "MlNetGuide fastText (bag of embeddings)", NetworkArchitecture.FastText(32), epochs: 8, learningRate: 0.02, maxTokens: 600, batchSize: 64),
        Network("textcnn", "MlNetGuide textCNN (d2l 16.3)", NetworkArchitecture.TextCnn(32, 32), epochs: 4, learningRate: 0.003),
        Network("bigru", "MlNetGuide BiGRU (d2l 10.4)", NetworkArchitecture.BiGru(32, 32), epochs: 3, learningRate: 0.005, maxTokens: 200),
        Network("transformer", "MlNetGuide Transformer encoder (d2l 11.7)", NetworkArchitecture.TransformerEncoder(32, 2, 64, 1), epochs: 3, learningRate: 0.002, maxTokens: 200),
    ];

    /// <summary>The candidates named in <paramref name="list"/> (comma-separated short names), in that order.</summary>
    /// <exception cref="ArgumentException">A name is not a candidate's.</exception>
    public static IReadOnlyList<SpamCandidate> Named(string list)
    {
        var all = Networks.Concat(Baselines).ToDictionary(c => c.Name);
        var aliases = new Dictionary<string, string> { ["averaged-perceptron"] = AveragedPerceptron.Name, ["sdca"] = SdcaLogisticRegression.Name };
        return list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(n =>
            all.TryGetValue(aliases.GetValueOrDefault(n, n), out var c) ? c
            : throw new ArgumentException($"--candidates: unknown '{n}'; choose from hashed-ngrams-feature-bag, featurize-text-feature-bag, featurize-text-mlp, fasttext, textcnn, bigru, transformer, averaged-perceptron, sdca.")).ToList();
    }

    /// <summary>The ML.NET baselines every run trains; the job compares whatever list it is given.</summary>
    public static IReadOnlyList<SpamCandidate> Baselines { get; } = [AveragedPerceptron, SdcaLogisticRegression];
}
