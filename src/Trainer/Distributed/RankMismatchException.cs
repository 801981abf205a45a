namespace MlNetGuide.Training;

/// <summary>
/// The ranks of a distributed job were started with different settings (data widths, options, seeds, model layouts):
/// thrown on every rank at once, before any training, naming the first setting that differs and both values.
/// </summary>
public sealed class RankMismatchException(string message) : Exception(message);
