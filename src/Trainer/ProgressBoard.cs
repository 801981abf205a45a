using MlNetGuide.Modules;
using OxyPlot;
using OxyPlot.Axes;
using OxyPlot.Legends;
using OxyPlot.Series;
using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>
/// d2l's ProgressBoard: collects (x, y) points per series with d2l's averaging — every <c>everyN</c> raw points become
/// one plotted point at their mean — and renders the figure to PNG or SVG (OxyPlot on SkiaSharp 2.88, which keeps
/// ML.NET's image transforms working in the same process).
/// </summary>
/// <remarks>Values arrive as device tensors and are summed on the device; the host reads one number per plotted point.</remarks>
public sealed class ProgressBoard : IDisposable
{
    private readonly Dictionary<string, Pending> _pending = [];
    private readonly Dictionary<string, List<DataPoint>> _lines = [];

    /// <summary>Label of the x axis.</summary>
    public string XLabel { get; set; } = "epoch";

    /// <summary>Range of the x axis, or null to fit the data (the Trainer sets [0, max_epochs]).</summary>
    public (double Min, double Max)? XLim { get; set; }

    /// <summary>Raised after each plotted point: series label, x, y.</summary>
    public event Action<string, double, double>? PointAdded;

    /// <summary>The plotted points of each series, in the order they were drawn.</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<DataPoint>> Lines =>
        _lines.ToDictionary(kv => kv.Key, kv => (IReadOnlyList<DataPoint>)kv.Value);

    /// <summary>
    /// Adds a raw point; every <paramref name="everyN"/> raw points of a series are averaged into one plotted point.
    /// <paramref name="value"/> must be a one-element tensor; it is accumulated where it lives, without a host sync.
    /// </summary>
    public void Draw(double x, Tensor value, string label, int everyN = 1)
    {
        ArgumentNullException.ThrowIfNull(value);
        ArgumentException.ThrowIfNullOrEmpty(label);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(everyN);
        if (!_pending.TryGetValue(label, out var p))
            _pending[label] = p = new Pending();
        using (no_grad())
            p.Sum = DeviceSum.Add(p.Sum, value); // a new float64 sum per plotted point
        p.XSum += x;
        p.Count++;
        if (p.Count < everyN) return;
        double y = p.Sum!.item<double>() / p.Count; // the one host read per plotted point
        double meanX = p.XSum / p.Count;
        p.Sum.Dispose();
        p.Sum = null;
        p.XSum = 0;
        p.Count = 0;
        Add(label, meanX, y);
    }

    /// <summary>Adds an already-averaged point (a host number).</summary>
    public void Draw(double x, double y, string label)
    {
        ArgumentException.ThrowIfNullOrEmpty(label);
        Add(label, x, y);
    }

    private void Add(string label, double x, double y)
    {
        if (!_lines.TryGetValue(label, out var line))
            _lines[label] = line = [];
        line.Add(new DataPoint(x, y));
        PointAdded?.Invoke(label, x, y);
    }

    /// <summary>Builds the OxyPlot model of the figure.</summary>
    public PlotModel ToPlotModel(string? title = null)
    {
        var model = new PlotModel { Title = title, Background = OxyColors.White };
        var xAxis = new LinearAxis { Position = AxisPosition.Bottom, Title = XLabel, MajorGridlineStyle = LineStyle.Dot };
        if (XLim is var (min, max)) { xAxis.Minimum = min; xAxis.Maximum = max; }
        model.Axes.Add(xAxis);
        model.Axes.Add(new LinearAxis { Position = AxisPosition.Left, MajorGridlineStyle = LineStyle.Dot });
        model.Legends.Add(new Legend { LegendPosition = LegendPosition.RightTop, LegendBackground = OxyColor.FromAColor(200, OxyColors.White) });
        var styles = new[] { LineStyle.Solid, LineStyle.Dash, LineStyle.DashDot, LineStyle.Dot };
        int i = 0;
        foreach (var (label, points) in _lines)
        {
            var series = new LineSeries { Title = label, LineStyle = styles[i++ % styles.Length], StrokeThickness = 2, MarkerType = MarkerType.None };
            series.Points.AddRange(points);
            model.Series.Add(series);
        }
        return model;
    }

    /// <summary>Writes the figure as a PNG image.</summary>
    public void SavePng(string path, int width = 800, int height = 500, string? title = null)
    {
        var model = ToPlotModel(title);
        MlNetGuide.Modules.AtomicFile.Write(path, s => new OxyPlot.SkiaSharp.PngExporter { Width = width, Height = height }.Export(model, s));
    }

    /// <summary>Writes the figure as an SVG document.</summary>
    public void SaveSvg(string path, int width = 800, int height = 500, string? title = null)
    {
        var model = ToPlotModel(title);
        MlNetGuide.Modules.AtomicFile.Write(path, s => new OxyPlot.SkiaSharp.SvgExporter { Width = width, Height = height }.Export(model, s));
    }

    /// <summary>Releases the device accumulators.</summary>
    public void Dispose()
    {
        foreach (var p in _pending.Values) p.Sum?.Dispose();
        _pending.Clear();
    }

    private sealed class Pending
    {
        public Tensor? Sum;
        public double XSum;
        public int Count;
    }
}
