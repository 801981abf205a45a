using System.Globalization;
using System.Reflection;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetGuide.Estimators;

/// <summary>
/// The label's key values (e.g. the digit or species each class index stands for), kept by the transformer so that
/// its PredictedLabel carries them and <c>MapKeyToValue</c> works downstream — also after loading, without a Label column.
/// </summary>
internal sealed class KeyValues
{
    private KeyValues(PrimitiveDataViewType itemType, string[] values)
    {
        ItemType = itemType;
        Values = values;
    }

    /// <summary>ML.NET's annotation kind for key values (its AnnotationUtils is internal).</summary>
    public const string KeyValuesKind = "KeyValues";

    public PrimitiveDataViewType ItemType { get; }

    /// <summary>The values as invariant strings (how they are saved).</summary>
    public string[] Values { get; }

    public int Count => Values.Length;

    /// <summary>The first 16 hex digits of the SHA-256 of the values in order: what tells two key mappings apart.</summary>
    public string Digest => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(string.Join('\n', Values))))[..16];

    /// <summary>Reads the KeyValues annotation of a key column, or null when it has none or of an unsupported type.</summary>
    public static KeyValues? From(DataViewSchema.Column column)
    {
        var annotation = column.Annotations.Schema.GetColumnOrNull(KeyValuesKind);
        if (annotation is not { Type: VectorDataViewType { ItemType: PrimitiveDataViewType item } }) return null;
        var name = TypeName(item);
        if (name is null) return null;
        var method = typeof(KeyValues).GetMethod(nameof(ReadTyped), BindingFlags.NonPublic | BindingFlags.Static)!.MakeGenericMethod(item.RawType);
        var values = (string[])method.Invoke(null, [column])!;
        return new KeyValues(item, values);
    }

    public static KeyValues Parse(string typeName, string[] values) =>
        new(typeName switch
        {
            "Text" => TextDataViewType.Instance,
            "Single" => NumberDataViewType.Single,
            "Double" => NumberDataViewType.Double,
            "Int32" => NumberDataViewType.Int32,
            "Int64" => NumberDataViewType.Int64,
            "UInt32" => NumberDataViewType.UInt32,
            "Boolean" => BooleanDataViewType.Instance,
            _ => throw new InvalidDataException($"unsupported key value type '{typeName}'"),
        }, values);

    /// <summary>Key values of the given type with <paramref name="count"/> placeholder values: enough to describe a column's shape.</summary>
    public static KeyValues? Placeholder(PrimitiveDataViewType item, int count) =>
        TypeName(item) is null ? null : new KeyValues(item, Enumerable.Repeat(item == BooleanDataViewType.Instance ? "False" : item == TextDataViewType.Instance ? "" : "0", count).ToArray());

    public string TypeNameForSave => TypeName(ItemType)!;

    /// <summary>ML.NET's annotation kinds on a multiclass Score: the class each slot stands for (SlotNames: text values only).</summary>
    public const string TrainingLabelValuesKind = "TrainingLabelValues", SlotNamesKind = "SlotNames";

    /// <summary>Adds this as the KeyValues annotation of a column being built.</summary>
    public void AddTo(DataViewSchema.Annotations.Builder builder) => AddAs(builder, KeyValuesKind);

    /// <summary>
    /// Adds what ML.NET's multiclass scorer puts on Score for a label with these key values: TrainingLabelValues, and
    /// SlotNames when the values are text (so <c>GetSlotNames</c> names each probability).
    /// </summary>
    public void AddScoreAnnotations(DataViewSchema.Annotations.Builder builder)
    {
        AddAs(builder, TrainingLabelValuesKind);
        if (ItemType == TextDataViewType.Instance) AddAs(builder, SlotNamesKind);
    }

    private void AddAs(DataViewSchema.Annotations.Builder builder, string kind)
    {
        var method = typeof(KeyValues).GetMethod(nameof(AddTyped), BindingFlags.NonPublic | BindingFlags.Instance)!.MakeGenericMethod(ItemType.RawType);
        method.Invoke(this, [builder, kind]);
    }

    private void AddTyped<T>(DataViewSchema.Annotations.Builder builder, string kind)
    {
        var parsed = Values.Select(v => (T)ParseValue(v)).ToArray();
        ValueGetter<VBuffer<T>> getter = (ref VBuffer<T> dst) => new VBuffer<T>(parsed.Length, parsed).CopyTo(ref dst);
        builder.Add(kind, new VectorDataViewType(ItemType, parsed.Length), getter);
    }

    private object ParseValue(string v) => ItemType.RawType switch
    {
        var t when t == typeof(ReadOnlyMemory<char>) => v.AsMemory(),
        var t when t == typeof(float) => float.Parse(v, CultureInfo.InvariantCulture),
        var t when t == typeof(double) => double.Parse(v, CultureInfo.InvariantCulture),
        var t when t == typeof(int) => int.Parse(v, CultureInfo.InvariantCulture),
        var t when t == typeof(long) => long.Parse(v, CultureInfo.InvariantCulture),
        var t when t == typeof(uint) => uint.Parse(v, CultureInfo.InvariantCulture),
        var t when t == typeof(bool) => bool.Parse(v),
        _ => throw new InvalidDataException($"unsupported key value type {ItemType}"),
    };

    private static string[] ReadTyped<T>(DataViewSchema.Column column)
    {
        VBuffer<T> buffer = default;
        column.Annotations.GetValue(KeyValuesKind, ref buffer);
        return buffer.DenseValues().Select(v => v switch
        {
            ReadOnlyMemory<char> m => m.ToString(),
            IFormattable f => f.ToString(typeof(T) == typeof(float) || typeof(T) == typeof(double) ? "R" : null, CultureInfo.InvariantCulture),
            _ => v?.ToString() ?? "",
        }).ToArray();
    }

    private static string? TypeName(PrimitiveDataViewType t) =>
        t == TextDataViewType.Instance ? "Text"
        : t == NumberDataViewType.Single ? "Single"
        : t == NumberDataViewType.Double ? "Double"
        : t == NumberDataViewType.Int32 ? "Int32"
        : t == NumberDataViewType.Int64 ? "Int64"
        : t == NumberDataViewType.UInt32 ? "UInt32"
        : t == BooleanDataViewType.Instance ? "Boolean"
        : null;
}
