using MlNetGuide.Training;
using static TorchSharp.torch;

namespace MlNetGuide.Estimators;

/// <summary>
/// What Fit warns about so that a default run cannot end as a quietly useless model: feature slots far from unit scale
/// (raw columns in the hundreds or thousands, as in ML.NET's bike-sharing and heart-disease samples, make the default
/// learning rate diverge or learn one class; ML.NET's own linear trainers document "normalization: yes" for the same
/// reason), and a last epoch whose training loss is no better than predicting a constant.
/// </summary>
internal static class FitWarnings
{
    /// <summary>A slot whose root mean square exceeds this is far from unit scale.</summary>
    public const double RmsLimit = 10;

    /// <summary>The warning for rows <paramref name="x"/> [rows, slots] of <paramref name="column"/>, or null when every slot is near unit scale.</summary>
    public static string? FarFromUnitScale(Tensor x, string column)
    {
        if (x.dim() != 2 || x.shape[0] == 0 || x.is_sparse) return null; // wide sparse rows (FeaturizeText's) are not checked
        using var scope = NewDisposeScope();
        // Sums of squares in float64, a few million values at a time: the rows may be a gigabyte.
        long rows = x.shape[0], step = Math.Max(1, (1L << 22) / Math.Max(1, x.shape[1]));
        var sums = zeros(x.shape[1], dtype: ScalarType.Float64);
        for (long start = 0; start < rows; start += step)
        {
            using var inner = NewDisposeScope();
            sums.add_(x.narrow(0, start, Math.Min(step, rows - start)).to(ScalarType.Float64).square().sum([0]));
        }
        var rms = sums.div(rows).sqrt();
        long over = rms.gt(RmsLimit).sum().item<long>();
        if (over == 0) return null;
        long worst = rms.argmax().item<long>();
        double value = rms[worst].item<double>();
        return $"{over:N0} of {x.shape[1]:N0} slots of '{column}' are far from unit scale (root mean square up to {value:G3}, in slot {worst}): " +
               $"with the default learning rate a network on them tends to diverge or predict one class. Put mlContext.Transforms.NormalizeMeanVariance(\"{column}\") " +
               "before the trainer (as ML.NET's linear trainers need); it is saved with the pipeline.";
    }

    /// <summary>
    /// The task's loss for the best constant prediction on labels <paramref name="y"/>: the labels' variance (squared
    /// error), or the entropy of their class frequencies (cross-entropy, binary or multiclass), in nats as our losses.
    /// </summary>
    public static double ConstantLoss(NeuralTask task, Tensor y, int classes)
    {
        using var scope = NewDisposeScope();
        if (y.NumberOfElements == 0) return double.NaN;
        if (task == NeuralTask.Regression) return y.to(ScalarType.Float64).var(unbiased: false).item<double>();
        var counts = task == NeuralTask.BinaryClassification
            ? stack([y.numel() - y.sum().to(ScalarType.Float64), y.sum().to(ScalarType.Float64)])
            : y.reshape(-1).to(ScalarType.Int64).bincount(null, classes).to(ScalarType.Float64);
        var p = counts.div(counts.sum());
        return -p.mul(p.clamp_min(1e-300).log()).sum().item<double>();
    }

    /// <summary>The warning when the last epoch's training loss is no lower than <paramref name="constantLoss"/>, or null.</summary>
    public static string? NoBetterThanConstant(History history, double constantLoss, string column)
    {
        double last = history.Last?.TrainLoss ?? double.NaN;
        if (!(last >= constantLoss)) return null;
        return $"After {history.Epochs.Count} epoch(s) the training loss ({last:G4}) is no lower than a constant prediction's ({constantLoss:G4}): the model has learned nothing usable. " +
               $"Normalize the features (mlContext.Transforms.NormalizeMeanVariance(\"{column}\") before the trainer), lower LearningRate or train longer.";
    }
}
