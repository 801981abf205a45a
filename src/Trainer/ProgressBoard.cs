using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>
/// d2l's ProgressBoard: collects (x, y) points per series with d2l's averaging — every <c>everyN</c> raw points become
/// one plotted point at their mean. Rendering (d2l's <c>draw</c> to a figure) is in the MlNetGuide.Plots package:
/// <c>board.SavePng(path)</c>, so that training pulls no plotting library.
/// </summary>
/// <remarks>Values arrive as device tensors and are summed on the device; the host reads one number per plotted point.</remarks>
public sealed class ProgressBoard : IDisposable
{
    private readonly Dictionary<string, Pending> _pending = [];
    private readonly Dictionary<string, List<BoardPoint>> _lines = [];

    /// <summary>Label of the x axis.</summary>
    public string XLabel { get; set; } = "epoch";

    /// <summary>Range of the x axis, or null to fit the data (the Trainer sets [0, max_epochs]).</summary>
    public (double Min, double Max)? XLim { get; set; }

    /// <summary>Raised after each plotted point: series label, x, y.</summary>
    public event Action<string, double, double>? PointAdded;

    /// <summary>The plotted points of each series, in the order they were drawn.</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<BoardPoint>> Lines =>
        _lines.ToDictionary(kv => kv.Key, kv => (IReadOnlyList<BoardPoint>)kv.Value);

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
        line.Add(new BoardPoint(x, y));
        PointAdded?.Invoke(label, x, y);
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
