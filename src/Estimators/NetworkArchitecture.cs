using System.Collections.Concurrent;
using MlNetGuide.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Estimators;

/// <summary>What the estimator asks a module factory for: the feature width, the output width and the hidden widths.</summary>
/// <param name="Inputs">Width of the feature vector (for a token column: <c>MaxTokens</c>).</param>
/// <param name="Outputs">Outputs the task needs: classes for multiclass, 1 for binary and regression.</param>
/// <param name="HiddenWidths">Hidden widths chosen in <see cref="NetworkArchitecture"/> (may be empty).</param>
public sealed record ModuleRequest(int Inputs, int Outputs, IReadOnlyList<int> HiddenWidths)
{
    /// <summary>
    /// For a token column (a vector of keys), the ids a sequence module must accept: V = the key count + 1, id 0 being
    /// padding (and a missing key), key k being id k. The module then gets int64 ids [batch, time] (the contract of
    /// <c>MlNetGuide.Modules.TextCnn</c> and its kin). 0 for numeric features.
    /// </summary>
    public int VocabularySize { get; init; }
}

/// <summary>
/// Which network an estimator trains: a built-in (an MLP of given widths, a LazyLinear MLP, the chapter's MLP) or a
/// user-defined module registered under a name. Only the name and widths are stored in a saved model; the weights are
/// loaded into a fresh module built the same way, so a user-defined module must be registered (same name) in the
/// process that loads the model.
/// </summary>
public sealed record NetworkArchitecture
{
    private NetworkArchitecture(string name, IReadOnlyList<int> hiddenWidths)
    {
        Name = name;
        HiddenWidths = hiddenWidths;
    }

    /// <summary>The factory name: "mlp", "lazy-mlp", "chapter-mlp" or a registered name.</summary>
    public string Name { get; }

    /// <summary>Hidden layer widths.</summary>
    public IReadOnlyList<int> HiddenWidths { get; }

    /// <summary>Linear → ReLU → … → Linear with the given hidden widths (none: a linear model).</summary>
    public static NetworkArchitecture Mlp(params int[] hiddenWidths) => new("mlp", CheckWidths(hiddenWidths));

    /// <summary>The same MLP built from <see cref="LazyLinear"/> layers: the feature width is inferred from the data (6.4).</summary>
    public static NetworkArchitecture LazyMlp(params int[] hiddenWidths) => new("lazy-mlp", CheckWidths(hiddenWidths));

    /// <summary>The chapter's <see cref="MLP"/> (hidden 256, ReLU, lazy input width).</summary>
    public static NetworkArchitecture ChapterMlp() => new("chapter-mlp", [256]);

    /// <summary>
    /// D2L 7.6 <see cref="Modules.LeNet"/> for images of <paramref name="channels"/> × <paramref name="height"/> ×
    /// <paramref name="width"/> pixels, given as a feature vector of that many values in C, H, W order (what ML.NET's
    /// <c>ExtractPixels</c> writes with its default <c>interleavePixelColors: false</c>, and what a 784-pixel MNIST row is).
    /// For LeNet, <see cref="HiddenWidths"/> holds the image shape (C, H, W).
    /// </summary>
    public static NetworkArchitecture LeNet(int channels = 1, int height = 28, int width = 28, LeNetStyle style = LeNetStyle.Modern)
    {
        if (height < 12 || width < 12) throw new ArgumentOutOfRangeException(nameof(height), $"{height}x{width}", "LeNet needs images of at least 12x12 pixels.");
        return new(style == LeNetStyle.Book ? "lenet-book" : "lenet", CheckWidths([channels, height, width]));
    }

    /// <summary>
    /// fastText (Joulin et al., 2016; d2l 15.x's bag of embeddings): token embeddings of <paramref name="embeddingSize"/>,
    /// their mean over each row's tokens, one linear layer. Reads a token column (a vector of keys).
    /// </summary>
    public static NetworkArchitecture FastText(int embeddingSize = 64) => new("fasttext", CheckWidths([embeddingSize]));

    /// <summary>
    /// fastText's linear model over a bag of weighted features (<see cref="Modules.FeatureBag"/>): a vector of
    /// <paramref name="size"/> per feature, a row the sum of its features' vectors times their values, one linear layer.
    /// Reads a numeric column; on a wide, sparse one (FeaturizeText's n-grams, OneHotEncoding) it multiplies only the
    /// non-zeros and each step moves only the vectors of the features its batch holds (sparse gradients, lazy Adam).
    /// </summary>
    public static NetworkArchitecture FeatureBag(int size = 16) => new("feature-bag", CheckWidths([size]));

    /// <summary>d2l 16.3's textCNN: embeddings, convolutions of widths 3, 4 and 5 with <paramref name="channels"/> channels each, max over time, dropout 0.5. Reads a token column.</summary>
    public static NetworkArchitecture TextCnn(int embeddingSize = 100, int channels = 100) => new("textcnn", CheckWidths([embeddingSize, channels]));

    /// <summary>d2l 16.2's bidirectional LSTM over embeddings, mean-pooled over each row's tokens. Reads a token column.</summary>
    public static NetworkArchitecture BiLstm(int embeddingSize = 100, int hiddenSize = 100, int layers = 1) => new("bilstm", CheckWidths([embeddingSize, hiddenSize, layers]));

    /// <summary>A bidirectional GRU over embeddings, mean-pooled over each row's tokens. Reads a token column.</summary>
    public static NetworkArchitecture BiGru(int embeddingSize = 100, int hiddenSize = 100, int layers = 1) => new("bigru", CheckWidths([embeddingSize, hiddenSize, layers]));

    /// <summary>
    /// d2l 11.7's Transformer encoder: embeddings × √d plus sinusoidal positions, <paramref name="layers"/> encoder layers
    /// (multi-head attention with the padding masked, add &amp; norm, feed-forward), mean over each row's tokens. Reads a token column.
    /// </summary>
    public static NetworkArchitecture TransformerEncoder(int modelSize = 128, int heads = 4, int feedForwardSize = 256, int layers = 2)
    {
        if (modelSize % Math.Max(1, heads) != 0) throw new ArgumentException($"modelSize ({modelSize}) must be a multiple of heads ({heads}).", nameof(heads));
        return new("transformer", CheckWidths([modelSize, heads, feedForwardSize, layers]));
    }

    /// <summary>Whether this architecture reads token ids (a vector of keys) rather than numbers.</summary>
    public bool ReadsTokens => Kind is Family.FastText or Family.TextCnn or Family.BiLstm or Family.BiGru or Family.Transformer;

    /// <summary>A module registered with <see cref="NeuralModuleRegistry.Register"/> under <paramref name="name"/>.</summary>
    public static NetworkArchitecture Custom(string name, params int[] hiddenWidths)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (BuiltIns.Contains(name)) throw new ArgumentException($"'{name}' is a built-in architecture name.", nameof(name));
        return new(name, CheckWidths(hiddenWidths));
    }

    /// <summary>Registers <paramref name="factory"/> under <paramref name="name"/> and returns the architecture naming it.</summary>
    public static NetworkArchitecture Custom(string name, Func<ModuleRequest, nn.Module<Tensor, Tensor>> factory, params int[] hiddenWidths)
    {
        NeuralModuleRegistry.Register(name, factory);
        return Custom(name, hiddenWidths);
    }

    /// <summary>The built-in families; everything else is a registered module.</summary>
    private enum Family { Mlp, LazyMlp, ChapterMlp, LeNet, LeNetBook, FeatureBag, FastText, TextCnn, BiLstm, BiGru, Transformer, Registered }

    /// <summary>The one map from a built-in name to what it builds (names are what configs and zips store).</summary>
    private static readonly Dictionary<string, Family> BuiltInNames = new()
    {
        ["mlp"] = Family.Mlp, ["lazy-mlp"] = Family.LazyMlp, ["chapter-mlp"] = Family.ChapterMlp,
        ["lenet"] = Family.LeNet, ["lenet-book"] = Family.LeNetBook, ["feature-bag"] = Family.FeatureBag,
        ["fasttext"] = Family.FastText, ["textcnn"] = Family.TextCnn, ["bilstm"] = Family.BiLstm, ["bigru"] = Family.BiGru,
        ["transformer"] = Family.Transformer,
    };

    /// <summary>How many sizes each text family's config holds.</summary>
    private static readonly Dictionary<Family, int> TextSizes = new()
    {
        [Family.FeatureBag] = 1, [Family.FastText] = 1, [Family.TextCnn] = 2, [Family.BiLstm] = 3, [Family.BiGru] = 3, [Family.Transformer] = 4,
    };

    internal static IReadOnlyCollection<string> BuiltIns => BuiltInNames.Keys;

    private Family Kind => BuiltInNames.GetValueOrDefault(Name, Family.Registered);

    /// <summary>
    /// Whether the network reads sparse batches as they are: the MLPs (their first <c>nn.Linear</c> multiplies them; its
    /// gradient is dense) and the feature bag (sparse gradients).
    /// </summary>
    internal bool ReadsSparse => Kind is Family.Mlp or Family.LazyMlp or Family.ChapterMlp or Family.FeatureBag;

    /// <summary>The architecture a saved model's config names (built-in names, else a registered module).</summary>
    internal static NetworkArchitecture FromConfig(string name, int[] widths)
    {
        var kind = BuiltInNames.GetValueOrDefault(name, Family.Registered);
        if (kind is Family.LeNet or Family.LeNetBook && widths.Length != 3)
            throw new ArgumentException($"a LeNet config needs the image shape (C, H, W); found [{string.Join(", ", widths)}]");
        if (TextSizes.TryGetValue(kind, out int sizes) && widths.Length != sizes)
            throw new ArgumentException($"a {name} config needs {sizes} sizes; found [{string.Join(", ", widths)}]");
        return kind switch
        {
            Family.Mlp => Mlp(widths),
            Family.LazyMlp => LazyMlp(widths),
            Family.ChapterMlp => ChapterMlp(),
            Family.LeNet or Family.LeNetBook => LeNet(widths[0], widths[1], widths[2], LeNetStyleOf(kind)),
            Family.FeatureBag => FeatureBag(widths[0]),
            Family.FastText => FastText(widths[0]),
            Family.TextCnn => TextCnn(widths[0], widths[1]),
            Family.BiLstm => BiLstm(widths[0], widths[1], widths[2]),
            Family.BiGru => BiGru(widths[0], widths[1], widths[2]),
            Family.Transformer => TransformerEncoder(widths[0], widths[1], widths[2], widths[3]),
            _ => Custom(name, widths),
        };
    }

    private static LeNetStyle LeNetStyleOf(Family kind) => kind == Family.LeNetBook ? LeNetStyle.Book : LeNetStyle.Modern;

    /// <summary>
    /// Builds a fresh, untrained module for the request. For a token column (<paramref name="vocabularySize"/> &gt; 0)
    /// the module reads int64 ids and is wrapped in <see cref="TokenIdsInput"/>, which feeds it each batch's slots.
    /// </summary>
    internal nn.Module<Tensor, Tensor> Build(int inputs, int outputs, int vocabularySize = 0)
    {
        var request = new ModuleRequest(inputs, outputs, HiddenWidths) { VocabularySize = vocabularySize };
        if (ReadsTokens && vocabularySize == 0)
            throw new ArgumentException($"{this} reads token ids: its feature column must be a vector of keys (e.g. TokenizeIntoWords, then MapValueToKey); this one holds {inputs} numbers.");
        if (!ReadsTokens && Kind != Family.Registered && vocabularySize > 0)
            throw new ArgumentException($"{this} reads numbers, and the feature column holds token keys (a vocabulary of {vocabularySize - 1}): choose a text network (NetworkArchitecture.FastText, TextCnn, BiLstm, BiGru, TransformerEncoder) or register your own sequence module.");
        var w = HiddenWidths;
        nn.Module<Tensor, Tensor> module = Kind switch
        {
            Family.Mlp => BuildMlp(request, lazy: false),
            Family.LazyMlp => BuildMlp(request, lazy: true),
            Family.ChapterMlp => new MLP(w[0], outputs),
            Family.LeNet or Family.LeNetBook => BuildLeNet(inputs, outputs),
            Family.FeatureBag => new Modules.FeatureBag(inputs, outputs, w[0]),
            Family.FastText => new FastTextClassifier(vocabularySize, outputs, w[0]),
            Family.TextCnn => new TextCnn(vocabularySize, outputs, w[0], channels: [w[1], w[1], w[1]]),
            Family.BiLstm => new BiRnnEncoder(vocabularySize, outputs, RecurrentCell.Lstm, w[0], w[1], w[2]),
            Family.BiGru => new BiRnnEncoder(vocabularySize, outputs, RecurrentCell.Gru, w[0], w[1], w[2]),
            Family.Transformer => new TransformerTextEncoder(vocabularySize, outputs, w[0], w[1], w[2], w[3]),
            _ => NeuralModuleRegistry.Create(Name, request),
        };
        return vocabularySize > 0 ? new TokenIdsInput(module) : module;
    }

    private LeNet BuildLeNet(int inputs, int outputs)
    {
        var (c, h, w) = (HiddenWidths[0], HiddenWidths[1], HiddenWidths[2]);
        if (inputs != (long)c * h * w)
            throw new ArgumentException(
                $"{this} takes images of {c}x{h}x{w} = {(long)c * h * w} values; the feature column has {inputs}. " +
                "Pass the image shape: NetworkArchitecture.LeNet(channels, height, width).");
        return new LeNet(outputs, c, h, w, LeNetStyleOf(Kind));
    }

    /// <summary>
    /// A lower bound on the bytes of parameters <see cref="Build"/> would allocate, computed without building: exact
    /// for the built-in MLPs (float32), and for a user-defined module the largest width it is asked for (any layer that
    /// uses a width holds at least that many elements). A loader compares it with the weights a file holds before it
    /// builds the module a file's config describes.
    /// </summary>
    internal long MinimumParameterBytes(int inputs, int outputs, int vocabularySize = 0)
    {
        if (ReadsTokens) // the parameters each family's module allocates, counted without building it (weights only, no biases)
        {
            try
            {
                var w = HiddenWidths;
                long d = w[0], embedding = checked(vocabularySize * d);
                long rest = Kind switch
                {
                    Family.FastText => checked(d * outputs),
                    Family.TextCnn => checked(w[1] * d * (3 + 4 + 5) + 3 * w[1] * outputs),
                    Family.BiLstm or Family.BiGru => Recurrent(d, w[1], w[2], Kind == Family.BiLstm ? 4 : 3, outputs),
                    _ => checked(w[3] * (4 * d * d + 2 * d * w[2]) + d * outputs), // per layer: Q, K, V, out projections; two feed-forward maps
                };
                return checked((embedding + rest) * sizeof(float));
            }
            catch (OverflowException) { return long.MaxValue; }
        }
        if (Kind is Family.Mlp or Family.LazyMlp or Family.ChapterMlp)
        {
            try
            {
                long total = 0, width = inputs;
                foreach (var h in HiddenWidths)
                {
                    total = checked(total + width * h + h);
                    width = h;
                }
                return checked((total + width * outputs + outputs) * sizeof(float));
            }
            catch (OverflowException)
            {
                return long.MaxValue;
            }
        }
        if (Kind is Family.FeatureBag)
        {
            try { return checked(((long)inputs * HiddenWidths[0] + HiddenWidths[0] * (long)outputs + outputs) * sizeof(float)); }
            catch (OverflowException) { return long.MaxValue; }
        }
        if (Kind is Family.LeNet or Family.LeNetBook)
        {
            try { return checked(Modules.LeNet.ParameterCount(outputs, HiddenWidths[0], HiddenWidths[1], HiddenWidths[2]) * sizeof(float)); }
            catch (OverflowException) { return long.MaxValue; }
        }
        return Math.Max(Math.Max(Math.Max(inputs, outputs), vocabularySize), HiddenWidths.Count == 0 ? 0 : HiddenWidths.Max());
    }

    /// <summary>A bidirectional recurrent stack's weights: per layer and direction, gates × hidden × (input + hidden).</summary>
    private static long Recurrent(long input, long hidden, long layers, int gates, int outputs)
    {
        long total = 0;
        for (long l = 0; l < layers; l++, input = 2 * hidden) total = checked(total + 2 * gates * hidden * (input + hidden));
        return checked(total + 2 * hidden * outputs);
    }

    private static nn.Module<Tensor, Tensor> BuildMlp(ModuleRequest r, bool lazy)
    {
        nn.Module<Tensor, Tensor> Linear(long inputs, long outputs) => lazy ? new LazyLinear(outputs) : nn.Linear(inputs, outputs);
        var layers = new List<nn.Module<Tensor, Tensor>>();
        long width = r.Inputs;
        foreach (var h in r.HiddenWidths)
        {
            layers.Add(Linear(width, h));
            layers.Add(nn.ReLU(inplace: true)); // safe after Linear (its backward needs its input, not its output) and saves a pass
            width = h;
        }
        layers.Add(Linear(width, r.Outputs));
        return nn.Sequential(layers.ToArray());
    }

    private static int[] CheckWidths(int[] widths)
    {
        ArgumentNullException.ThrowIfNull(widths);
        foreach (var w in widths)
            if (w <= 0) throw new ArgumentOutOfRangeException(nameof(widths), w, "Hidden widths must be positive.");
        return widths.ToArray();
    }

    /// <inheritdoc />
    public override string ToString() => $"{Name}({string.Join(", ", HiddenWidths)})";
}

/// <summary>
/// Module factories by name, for user-defined modules: register once per process (before training and before loading
/// a saved model that names it).
/// </summary>
public static class NeuralModuleRegistry
{
    private static readonly ConcurrentDictionary<string, Func<ModuleRequest, nn.Module<Tensor, Tensor>>> Factories = new();

    /// <summary>Registers (or replaces) the factory for <paramref name="name"/>.</summary>
    public static void Register(string name, Func<ModuleRequest, nn.Module<Tensor, Tensor>> factory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(factory);
        if (NetworkArchitecture.BuiltIns.Contains(name)) throw new ArgumentException($"'{name}' is a built-in architecture name.", nameof(name));
        Factories[name] = factory;
    }

    /// <summary>True when <paramref name="name"/> is registered.</summary>
    public static bool IsRegistered(string name) => Factories.ContainsKey(name);

    internal static nn.Module<Tensor, Tensor> Create(string name, ModuleRequest request)
    {
        if (!Factories.TryGetValue(name, out var factory))
            throw new ModuleNotRegisteredException(
                $"No module factory is registered under '{name}'. Call NeuralModuleRegistry.Register(\"{name}\", request => new YourModule(...)) " +
                "(or NetworkArchitecture.Custom(name, factory)) in this process before training or loading the model.");
        return factory(request) ?? throw new InvalidOperationException($"The factory registered under '{name}' returned null.");
    }
}

/// <summary>A saved model or an architecture names a module factory that this process has not registered.</summary>
public sealed class ModuleNotRegisteredException(string message) : InvalidOperationException(message)
{
}
