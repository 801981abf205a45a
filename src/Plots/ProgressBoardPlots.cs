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
        var model = new PlotModel { Title = title, Background = OxyColors.White };
        var xAxis = new LinearAxis { Position = AxisPosition.Bottom, Title = board.XLabel, MajorGridlineStyle = LineStyle.Dot };
        if (board.XLim is var (min, max)) { xAxis.Minimum = min; xAxis.Maximum = max; }
        model.Axes.Add(xAxis);
        model.Axes.Add(new LinearAxis { Position = AxisPosition.Left, MajorGridlineStyle = LineStyle.Dot });
        model.Legends.Add(new Legend { LegendPosition = LegendPosition.RightTop, LegendBackground = OxyColor.FromAColor(200, OxyColors.White) });
        int i = 0;
        foreach (var (label, points) in board.Lines)
        {
            var series = new LineSeries { Title = label, LineStyle = Styles[i++ % Styles.Length], StrokeThickness = 2, MarkerType = MarkerType.None };
            series.Points.AddRange(points.Select(p => new DataPoint(p.X, p.Y)));
            model.Series.Add(series);
        }
        return model;
    }

    /// <summary>Writes the figure as a PNG image (atomically: a temp file, then a rename).</summary>
    public static void SavePng(this ProgressBoard board, string path, int width = 800, int height = 500, string? title = null)
    {
        var model = board.ToPlotModel(title);
        AtomicFile.Write(path, s => new OxyPlot.SkiaSharp.PngExporter { Width = width, Height = height }.Export(model, s));
    }

    /// <summary>Writes the figure as an SVG document (atomically: a temp file, then a rename).</summary>
    public static void SaveSvg(this ProgressBoard board, string path, int width = 800, int height = 500, string? title = null)
    {
        var model = board.ToPlotModel(title);
        AtomicFile.Write(path, s => new OxyPlot.SkiaSharp.SvgExporter { Width = width, Height = height }.Export(model, s));
    }
}
