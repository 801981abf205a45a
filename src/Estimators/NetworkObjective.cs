using MlNetGuide.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Estimators;

/// <summary>
/// What the estimator hands the Trainer: the network and the task's loss. Unlike d2l's Classifier it plots no training
/// loss (the Trainer's own per-step record gives the epoch's mean) and draws no board; validation loss and accuracy go
/// to the epoch's metrics. After Fit the estimator takes the network back with <see cref="TrainableModule.ReleaseNet"/>
/// and disposes this wrapper, so the transformer holds nothing of the training run but its <see cref="History"/>.
/// </summary>
internal sealed class NetworkObjective : TrainableModule
{
    private readonly NeuralTask _task;

    public NetworkObjective(NeuralTask task, Func<nn.Module<Tensor, Tensor>> netFactory, double lr)
        : base(nameof(NetworkObjective), netFactory, lr)
    {
        _task = task;
        DrawsBoard = false;
    }

    public override Tensor Loss(Tensor yHat, Tensor y) => _task switch
    {
        NeuralTask.MulticlassClassification => Losses.CrossEntropy(yHat, y),
        NeuralTask.BinaryClassification => Losses.BinaryCrossEntropyWithLogits(yHat, y),
        _ => Losses.MeanSquaredError(yHat, y),
    };

    public override Tensor TrainingStep(Batch batch)
    {
        using var yHat = call(batch.X);
        return Loss(yHat, batch.Y);
    }

    public override void ValidationStep(Batch batch)
    {
        using var yHat = call(batch.X);
        using var l = Loss(yHat, batch.Y);
        Plot("loss", l, train: false);
        if (_task == NeuralTask.Regression) return;
        using var acc = _task == NeuralTask.MulticlassClassification ? Losses.Accuracy(yHat, batch.Y) : Losses.BinaryAccuracy(yHat, batch.Y);
        Plot("acc", acc, train: false);
    }
}
