using MlNetGuide.Modules;
using OxyPlot;
using OxyPlot.Axes;
using OxyPlot.Legends;
using OxyPlot.Series;

// In the board's namespace, so that `board.SavePng(path)` reads the same with or without this package's own using.
namespace MlNetGuide.Training;

/// <summary>
/// Renders a <see cref="ProgressBoard"/> — d2l's training-curve figure — with OxyPlot on SkiaSharp 2.88 (the version that
/// keeps ML.NET's image transforms working in the same process).
/// </summary>
public static class ProgressBoardPlots
{
    private static readonly LineStyle[] Styles = [LineStyle.Solid, LineStyle.Dash, LineStyle.DashDot, LineStyle.Dot];

    /// <summary>Builds the OxyPlot model of the figure: one line per series, x axis labelled and limited as the board says.</summary>
    public static PlotModel ToPlotModel(this ProgressBoard board, string? title = null)
    {
        ArgumentNullException.ThrowIfNull(board);
        return Figure(title, board.XLabel, board.XLim, board.Lines.Select(kv => (kv.Key, kv.Value.Select(p => (p.X, p.Y)))), markers: false);
    }

    /// <summary>
    /// The per-epoch means of a <see cref="History"/> (what the estimator's transformer keeps) as the same figure: one
    /// line per metric (train_loss, val_loss, val_acc, …; the learning rate is left out, its scale differs), x = epoch.
    /// </summary>
    public static PlotModel ToPlotModel(this History history, string? title = null)
    {
        ArgumentNullException.ThrowIfNull(history);
        var keys = history.Epochs.SelectMany(e => e.Values.Keys).Where(k => k != "lr").Distinct().ToList();
        return Figure(title, "epoch", (0, Math.Max(1, history.Epochs.Count)),
            keys.Select(k => (k, history.Epochs.Where(e => e.Values.ContainsKey(k)).Select(e => ((double)e.Epoch, e.Values[k])))), markers: true);
    }

    /// <summary>Writes the history's figure as a PNG image (atomically).</summary>
    public static void SavePng(this History history, string path, int width = 800, int height = 500, string? title = null) =>
        Png(history.ToPlotModel(title), path, width, height);

    /// <summary>Writes the history's figure as an SVG document (atomically).</summary>
    public static void SaveSvg(this History history, string path, int width = 800, int height = 500, string? title = null) =>
        Svg(history.ToPlotModel(title), path, width, height);

    private static PlotModel Figure(string? title, string xLabel, (double Min, double Max)? xLim, IEnumerable<(string Label, IEnumerable<(double X, double Y)> Points)> lines, bool markers)
    {
        var model = new PlotModel { Title = title, Background = OxyColors.White, TitleHorizontalAlignment = TitleHorizontalAlignment.CenteredWithinView, TitleFontSize = 14 };
        var xAxis = new LinearAxis { Position = AxisPosition.Bottom, Title = xLabel, MajorGridlineStyle = LineStyle.Dot };
        if (xLim is var (min, max)) { xAxis.Minimum = min; xAxis.Maximum = max; }
        model.Axes.Add(xAxis);
        model.Axes.Add(new LinearAxis { Position = AxisPosition.Left, MajorGridlineStyle = LineStyle.Dot });
        model.Legends.Add(new Legend { LegendPlacement = LegendPlacement.Outside, LegendPosition = LegendPosition.RightTop }); // beside the plot: never over a line
        int i = 0;
        foreach (var (label, points) in lines)
        {
            var series = new LineSeries { Title = label, LineStyle = Styles[i++ % Styles.Length], StrokeThickness = 2, MarkerType = markers ? MarkerType.Circle : MarkerType.None, MarkerSize = 3 };
            series.Points.AddRange(points.Select(p => new DataPoint(p.X, p.Y)));
            model.Series.Add(series);
        }
        return model;
    }

    private static void Png(PlotModel model, string path, int width, int height) =>
        AtomicFile.Write(path, s => new OxyPlot.SkiaSharp.PngExporter { Width = width, Height = height }.Export(model, s));

    private static void Svg(PlotModel model, string path, int width, int height) =>
        AtomicFile.Write(path, s => new OxyPlot.SkiaSharp.SvgExporter { Width = width, Height = height }.Export(model, s));

    /// <summary>Writes the figure as a PNG image (atomically: a temp file, then a rename).</summary>
    public static void SavePng(this ProgressBoard board, string path, int width = 800, int height = 500, string? title = null) =>
        Png(board.ToPlotModel(title), path, width, height);

    /// <summary>Writes the figure as an SVG document (atomically: a temp file, then a rename).</summary>
    public static void SaveSvg(this ProgressBoard board, string path, int width = 800, int height = 500, string? title = null) =>
        Svg(board.ToPlotModel(title), path, width, height);
}
