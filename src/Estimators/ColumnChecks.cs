using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetGuide.Estimators;

/// <summary>Schema checks at the public boundary, and typed readers for the columns that pass them.</summary>
internal static class ColumnChecks
{
    /// <summary>What the feature column must hold (the words every schema error uses).</summary>
    public const string FeaturesExpected = "a known-size vector of Single, or a vector of keys (token ids: TokenizeIntoWords, then MapValueToKey)";

    /// <summary>The most distinct tokens a key column may have: ids travel as float32, exact below 2²⁴.</summary>
    public const int MaxVocabulary = (1 << 24) - 1;

    /// <summary>What the label column must hold for <paramref name="task"/> (the words every schema error uses).</summary>
    public static string LabelExpected(NeuralTask task, string name) => task switch
    {
        NeuralTask.MulticlassClassification => $"a key type (add ml.Transforms.Conversion.MapValueToKey(\"{name}\"))",
        NeuralTask.BinaryClassification => "Boolean",
        _ => "Single",
    };

    /// <summary>
    /// A column as both of ML.NET's descriptions give it: a <see cref="SchemaShape"/> before fitting (no sizes, no key
    /// counts) and a <see cref="DataViewSchema"/> after. The rules below read this, so each is written once.
    /// </summary>
    public readonly record struct Shape(SchemaShape.Column.VectorKind Kind, DataViewType ItemType, bool IsKey)
    {
        public static Shape Of(SchemaShape.Column c) => new(c.Kind, c.ItemType, c.IsKey);

        public static Shape Of(DataViewType t) => t switch
        {
            VectorDataViewType v => new(v.Size > 0 ? SchemaShape.Column.VectorKind.Vector : SchemaShape.Column.VectorKind.VariableVector, v.ItemType, v.ItemType is KeyDataViewType),
            _ => new(SchemaShape.Column.VectorKind.Scalar, t, t is KeyDataViewType),
        };
    }

    /// <summary>The feature rule: one Single, a known-size vector of Single, or a vector (of any length) of keys.</summary>
    public static bool FeaturesFit(Shape c) =>
        (c.ItemType == NumberDataViewType.Single && !c.IsKey && c.Kind != SchemaShape.Column.VectorKind.VariableVector) || IsTokens(c);

    /// <summary>A token column: a vector of keys, known-size or not (what TokenizeIntoWords + MapValueToKey make).</summary>
    public static bool IsTokens(Shape c) => c.IsKey && c.Kind != SchemaShape.Column.VectorKind.Scalar;

    /// <summary>The label rule for <paramref name="task"/>: a key (multiclass), a Boolean (binary) or a Single (regression), one per row.</summary>
    public static bool LabelFits(NeuralTask task, Shape c) => c.Kind == SchemaShape.Column.VectorKind.Scalar && task switch
    {
        NeuralTask.MulticlassClassification => c.IsKey,
        NeuralTask.BinaryClassification => c.ItemType == BooleanDataViewType.Instance,
        _ => c.ItemType == NumberDataViewType.Single && !c.IsKey,
    };

    /// <summary>The error for a column that is not there, listing the columns that are.</summary>
    public static SchemaMismatchException Missing(string name, string expected, IEnumerable<string> available) =>
        new(name, $"a column of type {expected}", $"no such column (the data has {string.Join(", ", available.Select(c => $"'{c}'"))})");

    /// <summary>
    /// The feature column: a known-size vector of Single, or one Single — its width; or a token column — its vocabulary
    /// (the key count + 1: id 0 is padding), and width <paramref name="maxTokens"/>, the slots each row is read into.
    /// </summary>
    public static (DataViewSchema.Column column, int width, int vocabulary) Features(DataViewSchema schema, string name, int maxTokens)
    {
        var column = Find(schema, name, FeaturesExpected);
        var shape = Shape.Of(column.Type);
        if (!FeaturesFit(shape))
            throw new SchemaMismatchException(name, FeaturesExpected, Describe(column.Type) +
                (column.Type is TextDataViewType or VectorDataViewType { ItemType: TextDataViewType } ? " (text: tokenize it with ml.Transforms.Text.TokenizeIntoWords, then ml.Transforms.Conversion.MapValueToKey)" : ""));
        if (!IsTokens(shape)) return (column, column.Type is VectorDataViewType v ? v.Size : 1, 0);
        var key = (KeyDataViewType)((VectorDataViewType)column.Type).ItemType;
        if (key.Count is 0 or > MaxVocabulary)
            throw new SchemaMismatchException(name, $"a vector of keys with a known count of at most {MaxVocabulary:N0} tokens", Describe(column.Type));
        return (column, maxTokens, (int)key.Count + 1);
    }

    /// <summary>
    /// Checks that the scoring input's feature column is what the model was trained on: the same width, or, for a token
    /// column, the same vocabulary (a key column mapped by another MapValueToKey numbers the tokens differently).
    /// </summary>
    public static DataViewSchema.Column Features(DataViewSchema schema, string name, int width, int vocabulary, string? tokenKeys = null)
    {
        var (column, found, foundVocabulary) = Features(schema, name, width);
        if (vocabulary > 0 || foundVocabulary > 0)
        {
            if (foundVocabulary != vocabulary)
                throw new SchemaMismatchException(name,
                    vocabulary > 0 ? $"a vector of keys over the training vocabulary of {vocabulary - 1:N0} tokens (apply the MapValueToKey fitted with the model)" : $"a vector of {width} Single values (the width the model was trained on)",
                    foundVocabulary > 0 ? $"a vector of keys over {foundVocabulary - 1:N0} tokens" : Describe(column.Type));
            if (tokenKeys is not null && KeyValues.From(column) is { } keys && keys.Digest != tokenKeys)
                throw new SchemaMismatchException(name,
                    $"the training key mapping's {vocabulary - 1:N0} tokens in its order (apply the MapValueToKey fitted with the model)",
                    $"another mapping of as many tokens, numbered differently (its first keys: {string.Join(", ", keys.Values.Take(5))})");
            return column;
        }
        if (found != width)
            throw new SchemaMismatchException(name, $"a vector of {width} Single values (the width the model was trained on)", $"{found}");
        return column;
    }

    /// <summary>A text column (one string per row), e.g. the one <c>TokenizeIntoWords</c> read.</summary>
    public static DataViewSchema.Column TextColumn(DataViewSchema schema, string name)
    {
        const string expected = "text (one string per row: the column TokenizeIntoWords read)";
        var column = Find(schema, name, expected);
        if (column.Type is not TextDataViewType) throw new SchemaMismatchException(name, expected, Describe(column.Type));
        return column;
    }

    /// <summary>The label column for <paramref name="task"/>; <paramref name="classes"/> is the key count for multiclass.</summary>
    public static DataViewSchema.Column Label(DataViewSchema schema, string name, NeuralTask task, out int classes)
    {
        classes = 0;
        var column = Find(schema, name, LabelExpected(task, name));
        if (!LabelFits(task, Shape.Of(column.Type)))
            throw new SchemaMismatchException(name, LabelExpected(task, name), Describe(column.Type));
        if (task == NeuralTask.MulticlassClassification)
        {
            // What only a fitted schema knows: the number of classes.
            var key = (KeyDataViewType)column.Type;
            if (key.Count is 0 or > int.MaxValue)
                throw new SchemaMismatchException(name, "a key type with a known number of classes", Describe(column.Type));
            if (key.Count < 2)
                throw new SchemaMismatchException(name, "at least 2 classes", $"{key.Count}");
            classes = (int)key.Count;
        }
        return column;
    }

    /// <summary>Reads the current row's features into <paramref name="destination"/>; false when one is NaN or infinite.</summary>
    public delegate bool FeatureRead(Span<float> destination);

    /// <summary>Appends one row's non-zeros (column ascending, value) to the lists; false when a value is NaN or infinite.</summary>
    public delegate bool SparseFeatureRead(List<int> columns, List<float> values);

    /// <summary>
    /// Reads a vector column of <paramref name="width"/> floats by its non-zeros, whether a row is stored sparse or dense
    /// (the sparse scoring path; the same length rule as <see cref="FeatureReader"/>).
    /// </summary>
    public static SparseFeatureRead SparseFeatureReader(DataViewRow row, DataViewSchema.Column column, int width)
    {
        var getter = row.GetGetter<VBuffer<float>>(column);
        VBuffer<float> buffer = default;
        return (columns, values) =>
        {
            getter(ref buffer);
            if (buffer.Length != width)
                throw new SchemaMismatchException(column.Name, $"a vector of {width} Single values in every row (the column's width)",
                    $"{buffer.Length} values in row {row.Position}");
            var v = buffer.GetValues();
            var indices = buffer.IsDense ? default : buffer.GetIndices();
            for (int i = 0; i < v.Length; i++)
                if (v[i] != 0)
                {
                    columns.Add(buffer.IsDense ? i : indices[i]);
                    values.Add(v[i]);
                }
            return FiniteCheck.All(v);
        };
    }

    /// <summary>
    /// A reader for the feature column: for numbers, it copies the row and checks it is finite in one pass (see
    /// <see cref="FiniteCheck.CopyAll"/>); for a token column (<paramref name="vocabulary"/> &gt; 0) it writes the first
    /// <paramref name="width"/> keys as ids (key k as id k, a missing key as 0) and zeros after them: a longer row is cut
    /// to its first <c>MaxTokens</c> tokens, an empty row is all padding.
    /// </summary>
    public static FeatureRead FeatureReader(DataViewRow row, DataViewSchema.Column column, int width, int vocabulary = 0)
    {
        if (vocabulary > 0) return TokenReader(row, column, width);
        if (column.Type is VectorDataViewType)
        {
            var getter = row.GetGetter<VBuffer<float>>(column);
            VBuffer<float> buffer = default;
            return destination =>
            {
                getter(ref buffer);
                // ML.NET does not hold a row to its column's declared size (a [VectorType(4)] array may carry 3 values,
                // none, or 5): a short row would keep the previous row's tail, so refuse any row of another length.
                if (buffer.Length != width)
                    throw new SchemaMismatchException(column.Name, $"a vector of {width} Single values in every row (the column's width)",
                        $"{buffer.Length} values in row {row.Position}");
                var values = buffer.GetValues();
                if (buffer.IsDense) return FiniteCheck.CopyAll(values, destination);
                destination[..width].Clear();
                var indices = buffer.GetIndices();
                for (int i = 0; i < indices.Length; i++) destination[indices[i]] = values[i];
                return FiniteCheck.All(values);
            };
        }
        var scalar = row.GetGetter<float>(column);
        return destination =>
        {
            float v = 0;
            scalar(ref v);
            destination[0] = v;
            return float.IsFinite(v);
        };
    }

    private static FeatureRead TokenReader(DataViewRow row, DataViewSchema.Column column, int width)
    {
        if (column.Type is not VectorDataViewType { ItemType: KeyDataViewType key })
            throw new SchemaMismatchException(column.Name, "a vector of keys", Describe(column.Type));
        // Keys come in byte, ushort, uint or ulong (TokenizeIntoCharactersAsKeys makes ushort ones, MapValueToKey uint).
        return key.RawType == typeof(uint) ? TokenReader<uint>(row, column, width, k => k)
            : key.RawType == typeof(ushort) ? TokenReader<ushort>(row, column, width, k => k)
            : key.RawType == typeof(byte) ? TokenReader<byte>(row, column, width, k => k)
            : TokenReader<ulong>(row, column, width, k => k);
    }

    private static FeatureRead TokenReader<TKey>(DataViewRow row, DataViewSchema.Column column, int width, Func<TKey, float> id)
    {
        var getter = row.GetGetter<VBuffer<TKey>>(column);
        VBuffer<TKey> buffer = default;
        return destination =>
        {
            getter(ref buffer);
            var slots = destination[..width];
            slots.Clear();
            var values = buffer.GetValues();
            if (buffer.IsDense)
            {
                int n = Math.Min(width, values.Length);
                for (int i = 0; i < n; i++) slots[i] = id(values[i]);
            }
            else
            {
                var indices = buffer.GetIndices();
                for (int i = 0; i < indices.Length && indices[i] < width; i++) slots[indices[i]] = id(values[i]);
            }
            return true;
        };
    }

    /// <summary>
    /// Reads a label as a double — exact for every class index (key − 1, up to 2³¹) and every float value: the class
    /// index for multiclass, 0/1 for binary, the value for regression. The batch makes it int64 or float32 once.
    /// </summary>
    public static Func<long, double> LabelReader(DataViewRow row, DataViewSchema.Column column, NeuralTask task)
    {
        switch (task)
        {
            case NeuralTask.MulticlassClassification:
            {
                var getter = row.GetGetter<uint>(column);
                uint key = 0;
                return position =>
                {
                    getter(ref key);
                    if (key == 0)
                        throw new SchemaMismatchException(column.Name, "a label in every row", $"a missing label (key 0) in row {position}: a value MapValueToKey did not know");
                    return key - 1;
                };
            }
            case NeuralTask.BinaryClassification:
            {
                var getter = row.GetGetter<bool>(column);
                bool value = false;
                return _ => { getter(ref value); return value ? 1 : 0; };
            }
            default:
            {
                var getter = row.GetGetter<float>(column);
                float value = 0;
                return position =>
                {
                    getter(ref value);
                    if (!float.IsFinite(value))
                        throw new SchemaMismatchException(column.Name, "a finite label in every row", $"{value} in row {position}");
                    return value;
                };
            }
        }
    }

    private static DataViewSchema.Column Find(DataViewSchema schema, string name, string expected)
    {
        ArgumentNullException.ThrowIfNull(schema);
        return schema.GetColumnOrNull(name) ?? throw Missing(name, expected, schema.Where(c => !c.IsHidden).Select(c => c.Name));
    }

    public static string Describe(DataViewType type) => type switch
    {
        VectorDataViewType { ItemType: KeyDataViewType kk } v => $"a vector of {(v.Size == 0 ? "unknown size" : v.Size.ToString(System.Globalization.CultureInfo.InvariantCulture))} keys of {kk.Count} values",
        VectorDataViewType v => $"a vector of {(v.Size == 0 ? "unknown size" : v.Size.ToString(System.Globalization.CultureInfo.InvariantCulture))} {v.ItemType.RawType.Name}",
        KeyDataViewType k => $"a key of {k.Count} values",
        _ => type.RawType.Name,
    };
}
