using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetGuide.Estimators;

/// <summary>
/// Where a token column came from: the text column ML.NET's <c>TokenizeIntoWords</c> split on <see cref="Separators"/>,
/// and the words its <c>MapValueToKey</c> numbered (key k is <see cref="Words"/>[k − 1]). A plain zip needs it because
/// ML.NET's OnnxTransformer takes no variable-length vector: the zip's first ONNX model splits the
/// text and numbers the words itself, into the fixed slots of ids the network reads (<see cref="TokenizerModel"/>).
/// <see cref="Find"/> checks, at Fit, that this reproduces the token column row for row.
/// </summary>
internal sealed class TokenText
{
    /// <summary>
    /// The most words a tokenizer model holds: its LabelEncoder lists each word and its key, and a loader accepts ONNX
    /// models of at most 2²⁰ protobuf elements (<c>OnnxWireBounds</c>).
    /// </summary>
    public const int MaxWords = 400_000;

    /// <summary>The most training rows <see cref="Find"/> compares.</summary>
    public const int RowsChecked = 100_000;

    /// <summary>ML.NET's <c>TokenizeIntoWords</c> default: the space.</summary>
    public const string DefaultSeparators = " ";

    public TokenText(string column, string separators, string[] words)
    {
        Column = column;
        Separators = separators;
        Words = words;
    }

    public string Column { get; }

    public string Separators { get; }

    public string[] Words { get; }

    /// <summary>
    /// The slots of ids the network reads for <paramref name="text"/>: split on the separators (empty pieces dropped, as
    /// <c>TokenizeIntoWords</c> does), each word's key (0 for a word the mapping does not know), the first
    /// <c>slots.Length</c> of them, zeros after. The tokenizer model computes the same.
    /// </summary>
    public static void Ids(ReadOnlySpan<char> text, string separators, Dictionary<string, int> keys, Span<float> slots)
    {
        slots.Clear();
        var lookup = keys.GetAlternateLookup<ReadOnlySpan<char>>();
        int n = 0;
        foreach (var range in text.SplitAny(separators))
        {
            if (n == slots.Length) break;
            var word = text[range].Trim(' '); // as TokenizeIntoWords trims each piece
            if (word.IsEmpty) continue;
            slots[n++] = lookup.TryGetValue(word, out int key) ? key : 0;
        }
    }

    /// <summary>
    /// The text column the token column was made from, checked on the training rows (at most <see cref="RowsChecked"/>):
    /// <paramref name="requested"/> when given (an error naming the first row that differs when it does not reproduce
    /// the tokens), else the last text column that reproduces them with <see cref="DefaultSeparators"/>; null when
    /// none does (the network then trains, and only <c>mlContext.Model.Save</c> refuses it, naming the option).
    /// </summary>
    public static TokenText? Find(IDataView data, DataViewSchema.Column tokens, int maxTokens, int vocabulary,
        string? requested, string? separators, CancellationToken cancel, out string? why)
    {
        why = null;
        var sep = separators ?? DefaultSeparators;
        if (!sep.Contains(' '))
        {
            // TokenizeIntoWords trims the spaces around each piece, which ONNX cannot (it has no trim): "a, b" split on
            // ',' is "a", "b" in ML.NET and would be "a", " b" in the zip.
            why = $"TokenSeparators ({Describe(sep)}) leave out the space, and a plain zip can split on spaces but not trim them as TokenizeIntoWords does";
            if (requested is not null)
                throw new ArgumentException($"NeuralNetworkOptions.TokenSeparators: {why}. Add ' ' to TokenizeIntoWords' separators and to TokenSeparators, " +
                    "or leave TextColumnName unset and save the model with NeuralModel.Save.");
            return null;
        }
        var words = KeyValues.From(tokens) is { ItemType: TextDataViewType } values ? values.Values : null;
        var candidates = requested is not null
            ? [ColumnChecks.TextColumn(data.Schema, requested)]
            : data.Schema.Where(c => !c.IsHidden && c.Type is TextDataViewType).Reverse().ToList();
        if (words is null || words.Length != vocabulary - 1)
        {
            why = $"the token column '{tokens.Name}' has no text key values (a mapping of words) to number the words with";
            if (requested is not null)
                throw new SchemaMismatchException(tokens.Name, "a vector of keys whose values are the words (MapValueToKey over TokenizeIntoWords)", why);
            return null;
        }
        if (candidates.Count == 0)
        {
            why = "the data has no text column the tokens could come from";
            return null;
        }
        var keys = new Dictionary<string, int>(words.Length, StringComparer.Ordinal);
        for (int i = 0; i < words.Length; i++) keys.TryAdd(words[i], i + 1);

        using var cursor = data.GetRowCursor([tokens, .. candidates]);
        var read = ColumnChecks.FeatureReader(cursor, tokens, maxTokens, vocabulary);
        var getters = candidates.Select(c => cursor.GetGetter<ReadOnlyMemory<char>>(c)).ToArray();
        var alive = Enumerable.Range(0, candidates.Count).ToList();
        var expected = new float[maxTokens];
        var found = new float[maxTokens];
        ReadOnlyMemory<char> text = default;
        long row = 0;
        while (alive.Count > 0 && row < RowsChecked && cursor.MoveNext())
        {
            if ((row & 1023) == 0) cancel.ThrowIfCancellationRequested();
            read(expected);
            for (int a = alive.Count - 1; a >= 0; a--)
            {
                getters[alive[a]](ref text);
                Ids(text.Span, sep, keys, found);
                if (found.AsSpan().SequenceEqual(expected)) continue;
                if (requested is not null)
                    throw new SchemaMismatchException(requested,
                        $"the text column that TokenizeIntoWords split (on {Describe(sep)}) to make '{tokens.Name}'",
                        $"a text whose words differ from the tokens in row {row} ({First(found)} where '{tokens.Name}' has {First(expected)}); " +
                        "name the column TokenizeIntoWords read (after NormalizeText, if any) and its separators in NeuralNetworkOptions.TokenSeparators");
                alive.RemoveAt(a);
            }
            row++;
        }
        if (alive.Count == 0)
        {
            why = $"no text column of the data ({string.Join(", ", candidates.Select(c => $"'{c.Name}'"))}) split on {Describe(sep)} gives the tokens of '{tokens.Name}'";
            return null;
        }
        return new TokenText(candidates[alive.Min()].Name, sep, words); // candidates run from the last column

        static string First(float[] ids)
        {
            int used = Array.FindLastIndex(ids, v => v != 0) + 1; // 0 in the middle: a missing key
            return "keys [" + string.Join(", ", ids.Take(Math.Min(used, 8))) + (used > 8 ? ", ..." : "") + "]";
        }
    }

    internal static string Describe(string separators) => string.Join(" or ", separators.Select(c => c == ' ' ? "spaces" : $"'{c}'"));

}
