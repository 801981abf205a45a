namespace MlNetGuide.Training;

/// <summary>The one check every learning rate passes (optimizers, d2l's Module, the estimator's options).</summary>
public static class LearningRates
{
    /// <summary>Returns <paramref name="lr"/> when it is a positive, finite number; otherwise throws, naming <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="lr"/> is zero, negative, NaN or infinite.</exception>
    public static double Check(double lr, string name) =>
        lr > 0 && double.IsFinite(lr) ? lr : throw new ArgumentOutOfRangeException(name, lr, "The learning rate must be a positive, finite number.");
}
