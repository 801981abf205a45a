// Loads an ML.NET model zip with a plain mlContext.Model.Load, as a service without MlNetGuide or TorchSharp would, and
// prints what it predicts, row by row, through Transform (T lines) and a PredictionEngine (P lines):
//   OnnxConsumer MODEL.zip ROWS.idv INPUT_COLUMN WIDTH multiclass-key|multiclass-float|binary|regression
// (WIDTH 0: INPUT_COLUMN is text, one string a row, as a pipeline that tokenizes it takes)
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;

if (args.Length != 5)
{
    Console.Error.WriteLine("usage: OnnxConsumer MODEL.zip ROWS.idv INPUT_COLUMN WIDTH multiclass-key|multiclass-float|binary|regression");
    return 2;
}
var (zip, rowsPath, inputColumn, width, mode) = (args[0], args[1], args[2], int.Parse(args[3], CultureInfo.InvariantCulture), args[4]);
var ml = new MLContext();
var model = ml.Model.Load(zip, out _);
var rows = ml.Data.LoadFromBinary(rowsPath);
var scored = model.Transform(rows);
var labels = scored.Schema.GetColumnOrNull("PredictedLabel") is { } column ? Column(scored, column) : null;
var scores = Column(scored, scored.Schema["Score"]);
var probabilities = scored.Schema.GetColumnOrNull("Probability") is { } p ? Column(scored, p) : null;
for (int i = 0; i < scores.Count; i++)
    Console.WriteLine($"T\t{i}\t{labels?[i] ?? "-"}\t{scores[i]}{(probabilities is null ? "" : "\t" + probabilities[i])}");

if (width == 0)
{
    var definition = SchemaDefinition.Create(typeof(TextRow));
    definition[0].ColumnName = inputColumn;
    var texts = ml.Data.CreateEnumerable<TextRow>(rows, reuseRowObject: false, schemaDefinition: definition).ToList();
    for (int i = 0; i < texts.Count; i++)
        Console.WriteLine($"P\t{i}\t{Predict(ml, model, texts[i], definition, mode)}");
}
else
{
    var definition = Definition(inputColumn, width);
    var inputs = ml.Data.CreateEnumerable<FeatureRow>(rows, reuseRowObject: false, schemaDefinition: definition).ToList();
    for (int i = 0; i < inputs.Count; i++)
        Console.WriteLine($"P\t{i}\t{Predict(ml, model, inputs[i], definition, mode)}");
}

// Prove the point: nothing of MlNetGuide or TorchSharp is in this process.
var foreign = AppDomain.CurrentDomain.GetAssemblies().Select(a => a.GetName().Name ?? "")
    .Where(n => n.StartsWith("MlNetGuide.", StringComparison.Ordinal) && n != "MlNetGuide.OnnxConsumer" || n.StartsWith("TorchSharp", StringComparison.Ordinal)).ToList();
Console.WriteLine($"ASSEMBLIES\t{(foreign.Count == 0 ? "none of MlNetGuide or TorchSharp" : string.Join(",", foreign))}");
return foreign.Count == 0 ? 0 : 3;

static SchemaDefinition Definition(string column, int width)
{
    var definition = SchemaDefinition.Create(typeof(FeatureRow));
    definition[0].ColumnName = column;
    definition[0].ColumnType = new VectorDataViewType(NumberDataViewType.Single, width);
    return definition;
}

static string Predict<TIn>(MLContext ml, ITransformer model, TIn row, SchemaDefinition definition, string mode) where TIn : class
{
    switch (mode)
    {
        case "multiclass-key":
        {
            var p = Engine<TIn, MulticlassKey>(ml, model, definition).Predict(row);
            return $"{p.PredictedLabel.ToString(CultureInfo.InvariantCulture)}\t{Floats(p.Score)}";
        }
        case "multiclass-float":
        {
            var p = Engine<TIn, MulticlassFloat>(ml, model, definition).Predict(row);
            return $"{Text(p.PredictedLabel)}\t{Floats(p.Score)}";
        }
        case "binary":
        {
            var p = Engine<TIn, Binary>(ml, model, definition).Predict(row);
            return $"{p.PredictedLabel}\t{Text(p.Score)}\t{Text(p.Probability)}";
        }
        case "regression":
            return $"-\t{Text(Engine<TIn, Regression>(ml, model, definition).Predict(row).Score)}";
        default:
            throw new ArgumentException($"unknown mode '{mode}'");
    }
}

static PredictionEngine<TIn, T> Engine<TIn, T>(MLContext ml, ITransformer model, SchemaDefinition definition) where TIn : class where T : class, new() =>
    Engines<TIn, T>.For(ml, model, definition);

static List<string> Column(IDataView view, DataViewSchema.Column column) => column.Type switch
{
    VectorDataViewType { ItemType: var item } when item == NumberDataViewType.Single => view.GetColumn<VBuffer<float>>(column).Select(v => Floats(v.DenseValues().ToArray())).ToList(),
    var t when t == NumberDataViewType.Single => view.GetColumn<float>(column).Select(Text).ToList(),
    var t when t == BooleanDataViewType.Instance => view.GetColumn<bool>(column).Select(v => v.ToString()).ToList(),
    KeyDataViewType => view.GetColumn<uint>(column).Select(v => v.ToString(CultureInfo.InvariantCulture)).ToList(),
    var t => throw new NotSupportedException($"column {column.Name} of type {t}"),
};

static string Text(float v) => v.ToString("R", CultureInfo.InvariantCulture);
static string Floats(float[] values) => string.Join(",", values.Select(Text));

internal static class Engines<TIn, T> where TIn : class where T : class, new()
{
    private static PredictionEngine<TIn, T>? _engine;

    // One engine for all rows (one thread), made on first use.
    public static PredictionEngine<TIn, T> For(MLContext ml, ITransformer model, SchemaDefinition definition) =>
        _engine ??= ml.Model.CreatePredictionEngine<TIn, T>(model, inputSchemaDefinition: definition);
}

internal sealed class FeatureRow
{
    public float[] Features { get; set; } = [];
}

internal sealed class TextRow
{
    public string Text { get; set; } = "";
}

internal sealed class MulticlassKey
{
    public uint PredictedLabel { get; set; }
    public float[] Score { get; set; } = [];
}

internal sealed class MulticlassFloat
{
    public float PredictedLabel { get; set; }
    public float[] Score { get; set; } = [];
}

internal sealed class Binary
{
    public bool PredictedLabel { get; set; }
    public float Score { get; set; }
    public float Probability { get; set; }
}

internal sealed class Regression
{
    public float Score { get; set; }
}
