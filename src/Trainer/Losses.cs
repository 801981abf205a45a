using MlNetGuide.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>The losses and accuracies of d2l's Classifier, BinaryClassifier and Regressor, for any module that trains for those tasks.</summary>
public static class Losses
{
    /// <summary>Cross-entropy over logits [rows, classes] and int64 class indices [rows], averaged over the rows.</summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor classes) => nn.functional.cross_entropy(logits, classes);

    /// <summary>Binary cross-entropy of one logit per row against 0/1 targets, averaged over the rows.</summary>
    public static Tensor BinaryCrossEntropyWithLogits(Tensor logits, Tensor targets)
    {
        using var flat = logits.reshape(-1);
        using var target = targets.reshape(-1).to_type(flat.dtype);
        return nn.functional.binary_cross_entropy_with_logits(flat, target);
    }

    /// <summary>Mean squared error between a one-column output and float targets.</summary>
    public static Tensor MeanSquaredError(Tensor output, Tensor targets)
    {
        using var flat = output.reshape(-1);
        using var target = targets.reshape(-1).to_type(flat.dtype);
        return nn.functional.mse_loss(flat, target);
    }

    /// <summary>Fraction of rows whose arg-max logit is the class index (a one-element tensor on the logits' device).</summary>
    public static Tensor Accuracy(Tensor logits, Tensor classes)
    {
        using var pred = logits.argmax(-1);
        using var hit = pred.eq(classes.to_type(pred.dtype));
        return hit.to_type(ScalarType.Float32).mean();
    }

    /// <summary>Fraction of rows where the logit's sign (&gt; 0) agrees with the 0/1 target (&gt; 0.5).</summary>
    public static Tensor BinaryAccuracy(Tensor logits, Tensor targets)
    {
        using var pred = logits.reshape(-1).gt(Scalars.Zero);
        using var truth = targets.reshape(-1).gt(Scalars.Half);
        using var hit = pred.eq(truth);
        return hit.to_type(ScalarType.Float32).mean();
    }
}
