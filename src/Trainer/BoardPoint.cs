namespace MlNetGuide.Training;

/// <summary>One plotted point of a <see cref="ProgressBoard"/> series: x (epoch, fractional within one) and the mean y.</summary>
public readonly record struct BoardPoint(double X, double Y);
