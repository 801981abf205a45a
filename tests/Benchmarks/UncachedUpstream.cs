using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Samples.Digits;

namespace MlNetGuide.Benchmarks;

/// <summary>
/// Scoring behind a pipeline that does real work for every row it is asked for: digits read from a CSV file, then
/// min-max normalized, never cached. A consumer asking for Score and Label (what Evaluate reads) shows how often
/// <c>Transform</c> runs that upstream: once, it costs about the upstream alone plus the forward passes.
/// </summary>
internal sealed class UncachedUpstream : IDisposable
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"mlnetguide-bench-{Environment.ProcessId}.csv");

    public UncachedUpstream(MLContext ml, IReadOnlyList<Digit> digits)
    {
        using (var writer = new StreamWriter(_path))
            foreach (var d in digits)
                writer.WriteLine(string.Join(",", d.Pixels.Prepend(d.Label).Select(v => v.ToString(CultureInfo.InvariantCulture))));
        var text = ml.Data.LoadFromTextFile<CsvDigit>(_path, separatorChar: ',');
        var pipeline = ml.Transforms.NormalizeMinMax("Features", "Pixels").Append(ml.Transforms.Conversion.MapValueToKey("Label"));
        View = pipeline.Fit(text).Transform(text);
        Rows = digits.Count;
    }

    /// <summary>The uncached pipeline: text file → NormalizeMinMax → MapValueToKey.</summary>
    public IDataView View { get; }

    public int Rows { get; }

    /// <summary>Reads Features and Label of every row: the upstream's own cost.</summary>
    public void ReadUpstream() => Read(View, "Features", "Label");

    /// <summary>Reads Score and Label of every row of <paramref name="model"/>'s Transform over the upstream.</summary>
    public void ReadScored(ITransformer model) => Read(model.Transform(View), "Score", "Label");

    private void Read(IDataView view, string vector, string key)
    {
        using var cursor = view.GetRowCursor([view.Schema[vector], view.Schema[key]]);
        var getVector = cursor.GetGetter<VBuffer<float>>(view.Schema[vector]);
        var getKey = cursor.GetGetter<uint>(view.Schema[key]);
        VBuffer<float> v = default;
        uint k = 0;
        long rows = 0;
        while (cursor.MoveNext()) { getVector(ref v); getKey(ref k); rows++; }
        if (rows != Rows) throw new InvalidOperationException($"read {rows} rows, expected {Rows}");
    }

    public void Dispose() => File.Delete(_path);

    private sealed class CsvDigit
    {
        [LoadColumn(0)] public float Label { get; set; }
        [LoadColumn(1, 784), VectorType(784)] public float[] Pixels { get; set; } = [];
    }
}
