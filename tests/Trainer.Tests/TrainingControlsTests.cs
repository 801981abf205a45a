using MlNetGuide.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Training.Tests;

/// <summary>Gradient accumulation, early stopping with the best weights restored, and learning-rate schedules.</summary>
public class TrainingControlsTests
{
    private static nn.Module<Tensor, Tensor> Net(long seed)
    {
        using var g = new Generator((ulong)seed);
        var net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1));
        using (no_grad())
            foreach (var p in net.parameters()) p.copy_(randn(p.shape, generator: g).mul_(0.5));
        return net;
    }

    private static (Tensor x, Tensor y) Data(int n, long seed)
    {
        using var g = new Generator((ulong)seed);
        var x = randn(new long[] { n, 3 }, generator: g);
        var y = x.sum(1, keepdim: true).sin().add_(randn(new long[] { n, 1 }, generator: g).mul_(0.3));
        return (x, y);
    }

    private static float[] Weights(nn.Module module) => module.parameters().SelectMany(p => p.data<float>().ToArray()).ToArray();

    [Fact]
    public void FourAccumulatedBatchesOfEightStepLikeOneBatchOfThirtyTwo()
    {
        var (x, y) = Data(32, 1);
        float[] Run(int batch, int accumulate)
        {
            using var model = new Regressor(Net(7), lr: 0.1);
            using var data = new TensorDataModule([x, y], batch, seed: 3);
            using var trainer = new Trainer(1) { AccumulateGradBatches = accumulate };
            trainer.Fit(model, data);
            Assert.Equal(1, trainer.StepsPerEpoch);
            return Weights(model);
        }
        var accumulated = Run(8, 4);
        var whole = Run(32, 1);
        Assert.Equal(whole.Length, accumulated.Length);
        for (int i = 0; i < whole.Length; i++) Assert.True(Math.Abs(whole[i] - accumulated[i]) <= 1e-6, $"weight {i}: {whole[i]} vs {accumulated[i]}");
        // Without accumulation the same small batches take four steps and land elsewhere.
        using var plain = new Regressor(Net(7), lr: 0.1);
        using (var data = new TensorDataModule([x, y], 8, seed: 3))
        using (var trainer = new Trainer(1)) trainer.Fit(plain, data);
        Assert.True(Weights(plain).Zip(whole).Max(p => Math.Abs(p.First - p.Second)) > 1e-4);
        x.Dispose();
        y.Dispose();
    }

    [Fact]
    public void EarlyStoppingStopsAfterPatienceAndRestoresTheBestEpochBitForBit()
    {
        // 24 noisy rows and a wide net with a large step: validation loss bottoms out early, then climbs (overfitting).
        var (x, y) = Data(24, 2);
        var (vx, vy) = Data(200, 3);
        Dictionary<string, float[]> RunTo(int epochs, EarlyStopping? stop, out History history)
        {
            using var model = new Regressor(nn.Sequential(nn.Linear(3, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1)), lr: 0.2);
            manual_seed(11);
            model.Net.ApplyInit(new InitScheme(Initializer.XavierUniform(), Initializer.Zeros, Seed: 11));
            using var data = new TensorDataModule([x, y], 8, [vx, vy], seed: 5);
            using var trainer = new Trainer(epochs) { EarlyStopping = stop };
            history = trainer.Fit(model, data);
            return StateDict.Get(model).ToDictionary(kv => kv.Key, kv => kv.Value.data<float>().ToArray());
        }
        var stopped = RunTo(60, new EarlyStopping("val_loss", Patience: 3), out var h);
        Assert.True(h.Epochs.Count < 60, $"ran all {h.Epochs.Count} epochs: validation loss never stopped improving");
        int best = h.BestEpoch!.Value;
        var losses = h.Epochs.Select(e => e.ValLoss!.Value).ToList();
        Assert.Equal(losses.IndexOf(losses.Min()) + 1, best);     // the kept epoch has the lowest validation loss
        Assert.Equal(best + 3, h.Epochs.Count);                      // and training stopped 3 epochs after it
        // The same seeds trained for exactly `best` epochs give the same weights, bit for bit.
        var reference = RunTo(best, null, out _);
        Assert.Equal(reference.Keys, stopped.Keys);
        foreach (var key in reference.Keys) Assert.Equal(reference[key], stopped[key]);
        foreach (var t in new[] { x, y, vx, vy }) t.Dispose();
    }

    [Fact]
    public void EarlyStoppingNamesAMetricTheEpochDoesNotReport()
    {
        var (x, y) = Data(16, 4);
        using var model = new Regressor(Net(1), lr: 0.1);
        using var data = new TensorDataModule([x, y], 8, seed: 1);
        using var trainer = new Trainer(3) { EarlyStopping = new EarlyStopping("val_loss") };
        var ex = Assert.Throws<InvalidOperationException>(() => trainer.Fit(model, data));
        Assert.Contains("'val_loss'", ex.Message);
        Assert.Contains("validation data", ex.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new Trainer(3) { EarlyStopping = new EarlyStopping(Patience: 0) });
        Assert.Throws<ArgumentOutOfRangeException>(() => new Trainer(3) { AccumulateGradBatches = 0 });
        x.Dispose();
        y.Dispose();
    }

    [Fact]
    public void ASchedulerStepsEveryBatchAndHistoryRecordsTheRatePerEpoch()
    {
        var (x, y) = Data(32, 5);
        using var model = new Regressor(Net(2), lr: 0.4)
        {
            SchedulerFactory = (opt, steps) => optim.lr_scheduler.StepLR(opt, step_size: steps / 4, gamma: 0.5),
        };
        using var data = new TensorDataModule([x, y], 8, seed: 1); // 4 batches per epoch, 16 steps in 4 epochs
        using var trainer = new Trainer(4);
        var history = trainer.Fit(model, data);
        Assert.Equal(new double?[] { 0.4, 0.2, 0.1, 0.05 }, history.Epochs.Select(e => e.LearningRate is double r ? Math.Round(r, 12) : (double?)null));
        x.Dispose();
        y.Dispose();
    }
}

/// <summary>Checkpoints: training resumed from one ends with the weights of training that never stopped.</summary>
public sealed class CheckpointTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-ckpt-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Weights(string output) =>
        output.Split('\n').Select(l => l.Trim()).Single(l => l.StartsWith("weights ", StringComparison.Ordinal));

    [Fact]
    public void SixEpochsEqualThreeThenAKillThenThreeResumedBitForBit()
    {
        var straight = Weights(MlNetGuide.Tests.Shared.ChildProcess.RunProbe("checkpoint-train", Path.Combine(_dir, "straight.ckpt"), "0"));
        Assert.EndsWith("epochs 6", straight);

        // A child that is killed (SIGKILL) while epoch 4 is done but not yet checkpointed: its last checkpoint is epoch 3's.
        var path = Path.Combine(_dir, "killed.ckpt");
        using (var child = MlNetGuide.Tests.Shared.ChildProcess.StartProbe("checkpoint-train", path, "4"))
        {
            string? line;
            while ((line = child.StandardOutput.ReadLine()) != "epoch 4")
                if (line is null) Assert.Fail("the child ended before epoch 4: " + child.StandardError.ReadToEnd());
            child.Kill(); // SIGKILL
            child.WaitForExit();
        }
        var resumed = MlNetGuide.Tests.Shared.ChildProcess.RunProbe("checkpoint-resume", path);
        Assert.Contains("epoch 4", resumed); // it resumed after epoch 3: epochs 4, 5 and 6 ran again
        Assert.DoesNotContain("epoch 3", resumed);
        Assert.Equal(straight, Weights(resumed));
    }

    [Fact]
    public void AForeignFileIsRefusedAsACheckpoint()
    {
        var path = Path.Combine(_dir, "not-a-checkpoint.zip");
        File.WriteAllText(path, "hello");
        using var model = new Regressor(nn.Linear(2, 1));
        using var x = randn(8, 2);
        using var y = randn(8, 1);
        using var data = new TensorDataModule([x, y], 4);
        using var trainer = new Trainer(2);
        Assert.Throws<MlNetGuide.Modules.ModelFormatException>(() => trainer.Fit(model, data, path));
        Assert.Throws<FileNotFoundException>(() => trainer.Fit(model, data, Path.Combine(_dir, "missing.ckpt")));
    }
}
