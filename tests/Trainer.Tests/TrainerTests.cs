using MlNetGuide.Modules;
using MlNetGuide.Tests.Shared;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Training.Tests;

public class TrainerTests
{
    private static readonly Device Meta = new(DeviceType.META);

    /// <summary>y = X w + b + small noise, w = [2, -3.4], b = 4.2 (d2l's synthetic regression data).</summary>
    private static (Tensor x, Tensor y) Synthetic(int n = 1000, long seed = 0)
    {
        using var g = new Generator((ulong)seed);
        var x = randn(new long[] { n, 2 }, generator: g);
        using var w = tensor(new float[] { 2, -3.4f });
        var y = x.matmul(w).add_(4.2f).add_(randn(new long[] { n }, generator: g).mul_(0.01f));
        return (x, y);
    }

    /// <summary>A regressor that plots nothing while training (as the estimator's objective), and records each step's loss.</summary>
    private sealed class QuietRegressor(nn.Module<Tensor, Tensor> net) : Regressor(net, lr: 0.05)
    {
        public List<double> StepLosses { get; } = [];

        public override Tensor TrainingStep(Batch batch)
        {
            using var yHat = call(batch.X);
            var loss = Loss(yHat, batch.Y);
            StepLosses.Add(loss.item<float>());
            return loss;
        }
    }

    [Fact]
    public void WithoutAPlottedTrainingLossTheEpochMeanComesFromTheTrainersOwnRecord()
    {
        var (x, y) = Synthetic(n: 100);
        using var _x = x; using var _y = y;
        using var data = new TensorDataModule([x, y], batchSize: 32, seed: 1); // 4 batches: 32, 32, 32, 4
        using var model = new QuietRegressor(nn.Linear(2, 1)) { DrawsBoard = false };
        using var trainer = new Trainer(maxEpochs: 2);
        var history = trainer.Fit(model, data);
        Assert.Equal(8, model.StepLosses.Count);
        for (int epoch = 0; epoch < 2; epoch++)
            Assert.Equal(model.StepLosses.Skip(4 * epoch).Take(4).Average(), history.Epochs[epoch].TrainLoss, 5);
        Assert.Equal("train_loss", history.Epochs[0].Values.Keys.First()); // first, as when a module plots it
        Assert.Empty(model.Board.Lines); // nothing drawn
    }

    [Fact]
    public void ReleaseNetHandsTheNetworkOverAndDisposingTheModuleLeavesItAlive()
    {
        using var input = ones(1, 2);
        var model = new Regressor(nn.Linear(2, 1));
        var net = model.ReleaseNet();
        Assert.Empty(model.parameters());
        Assert.Throws<InvalidOperationException>(() => model.Net);
        model.Dispose();
        using (net)
        using (var output = net.call(input)) // still usable: the module no longer owned it
            Assert.Equal(new long[] { 1, 1 }, output.shape);
    }

    [Fact]
    public void FitLearnsSyntheticRegressionAndReturnsHistory()
    {
        var (x, y) = Synthetic();
        using var _x = x; using var _y = y;
        using var data = TensorDataModule.Split(x, y, valFraction: 0.2, batchSize: 32, seed: 1);
        using var model = new Regressor(nn.Linear(2, 1), lr: 0.1);
        using var trainer = new Trainer(maxEpochs: 3);
        var history = trainer.Fit(model, data);
        Assert.Equal(3, history.Epochs.Count);
        Assert.Equal(new[] { 1, 2, 3 }, history.Epochs.Select(e => e.Epoch));
        Assert.True(history.Last!.TrainLoss < 0.01, $"train loss {history.Last.TrainLoss}");
        Assert.True(history.Last.ValLoss < 0.01);
        var lin = (Linear)model.Net;
        Assert.Equal(2f, lin.weight[0, 0].item<float>(), 1);
        Assert.Equal(-3.4f, lin.weight[0, 1].item<float>(), 1);
        Assert.Equal(4.2f, lin.bias![0].item<float>(), 1);
        // d2l's counters and board: 25 batches per epoch, two training points and one validation point per epoch.
        Assert.Equal(25, trainer.NumTrainBatches);
        Assert.Equal(7, trainer.NumValBatches);
        Assert.Equal(75, trainer.TrainBatchIdx);
        Assert.Equal(21, trainer.ValBatchIdx);
        Assert.Equal(6, model.Board.Lines["train_loss"].Count);
        Assert.Equal(3, model.Board.Lines["val_loss"].Count);
        Assert.Equal(new double[] { 1, 2, 3 }, model.Board.Lines["val_loss"].Select(p => p.X));
        Assert.Equal((0.0, 3.0), model.Board.XLim);
    }

    [Fact]
    public void NumGpusAboveWhatExistsIsClampedAndLogged()
    {
        var log = new List<string>();
        using var trainer = new Trainer(maxEpochs: 1, numGpus: 4, log: log.Add);
        Assert.Empty(trainer.TrainingDevices);
        Assert.Equal(DeviceType.CPU, trainer.Device.type);
        Assert.Contains(log, l => l.Contains("4 GPU(s) requested, 0 available"));
    }

    [Fact]
    public void BadArgumentsAreRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new Trainer(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Trainer(1, numGpus: -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Trainer(1, gradientClipVal: double.NaN));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Regressor(nn.Linear(2, 1), lr: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TensorDataModule([zeros(2, 2), zeros(2)], batchSize: 0));
        var ex = Assert.Throws<ArgumentException>(() => new TensorDataModule([zeros(3, 2), zeros(2)], batchSize: 2));
        Assert.Contains("3 rows", ex.Message);
    }

    [Fact]
    public void PrepareModelAndPrepareBatchMoveEverythingToTheDevice()
    {
        // META stands in for CUDA: same code path, no GPU needed.
        manual_seed(0);
        var net = nn.Sequential(new LazyLinear(20), new FixedHiddenMLP());
        using var model = new Regressor(net);
        using (var x0 = rand(2, 20)) model.call(x0).backward(); // materialize, and give every parameter a gradient
        var lazyTail = new LazyLinear(3); // still uninitialized when moved
        using var trainer = new Trainer(1, [Meta]);
        trainer.PrepareModel(model);
        Assert.Same(trainer, model.Trainer);
        Assert.All(model.parameters(), p =>
        {
            Assert.Equal(DeviceType.META, p.device_type);
            Assert.Equal(DeviceType.META, p.grad!.device_type);
        });
        var fixedHidden = (FixedHiddenMLP)((Sequential)model.Net)[1];
        Assert.Equal(DeviceType.META, fixedHidden.RandWeight.device_type);
        using var batch = new Batch(rand(4, 20), rand(4));
        using var moved = trainer.PrepareBatch(batch);
        Assert.NotSame(batch, moved);
        Assert.All(moved.Tensors, t => Assert.Equal(DeviceType.META, t.device_type));
        Assert.Same(moved, trainer.PrepareBatch(moved)); // already there: no copy

        using var lazyModel = new Regressor(nn.Sequential(lazyTail));
        trainer.PrepareModel(lazyModel);
        using var xm = rand(new long[] { 2, 5 }, device: Meta);
        lazyModel.call(xm).Dispose();
        Assert.Equal(DeviceType.META, lazyTail.weight.device_type);
    }

    [Fact]
    public void ClipGradientsScalesToTheGlobalNorm()
    {
        using var lin = nn.Linear(2, 1, hasBias: false);
        using var other = nn.Linear(1, 1, hasBias: false);
        using var net = nn.Sequential(lin, other);
        lin.weight.grad = tensor(new float[,] { { 3, 0 } });
        other.weight.grad = tensor(new float[,] { { 4 } });
        Trainer.ClipGradients(10, net); // norm 5 <= 10: unchanged
        Assert.Equal(new float[] { 3, 0 }, lin.weight.grad!.data<float>().ToArray());
        Trainer.ClipGradients(1, net); // norm 5 -> 1: scale 1/5
        Assert.Equal(0.6f, lin.weight.grad!.data<float>()[0], 4);
        Assert.Equal(0.8f, other.weight.grad!.data<float>()[0], 4);
    }

    [Fact]
    public void ClippingDuringFitKeepsLearning()
    {
        var (x, y) = Synthetic(256);
        using var _x = x; using var _y = y;
        using var data = new TensorDataModule([x, y], 32);
        using var model = new Regressor(nn.Linear(2, 1), lr: 0.03);
        using var trainer = new Trainer(2, gradientClipVal: 1.0);
        var h = trainer.Fit(model, data);
        Assert.True(h.Epochs[1].TrainLoss < h.Epochs[0].TrainLoss);
    }

    [Fact]
    public void DataParallelReplicasGiveTheSameUpdateAsOneDevice()
    {
        var (x, y) = Synthetic(96, seed: 3);
        using var _x = x; using var _y = y;
        nn.Module<Tensor, Tensor> Factory() => nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1));
        using var single = new Regressor(Factory, lr: 0.05);
        using var parallel = new Regressor(Factory, lr: 0.05);
        StateDict.Load(parallel.Net, StateDict.Get(single.Net));
        using var d1 = new TensorDataModule([x, y], 32, seed: 5);
        using var d2 = new TensorDataModule([x, y], 32, seed: 5);
        using var t1 = new Trainer(2, [CPU]);
        using var t3 = new Trainer(2, [CPU, CPU, CPU]);
        var h1 = t1.Fit(single, d1);
        var h3 = t3.Fit(parallel, d2);
        foreach (var ((name, a), (_, b)) in single.Net.named_parameters().Zip(parallel.Net.named_parameters()))
            Assert.True(a.allclose(b, rtol: 1e-4, atol: 1e-5), $"{name} differs");
        Assert.Equal(h1.Last!.TrainLoss, h3.Last!.TrainLoss, 4);
    }

    [Fact]
    public void DataParallelResumeStartsTheReplicasFromTheLoadedWeights()
    {
        var (x, y) = Synthetic(96, seed: 3);
        using var _x = x; using var _y = y;
        nn.Module<Tensor, Tensor> Factory() => nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1));
        var dir = Directory.CreateTempSubdirectory("mlnetguide-dp-resume-").FullName;
        try
        {
            string path = Path.Combine(dir, "checkpoint.bin");
            manual_seed(1);
            using var straight = new Regressor(Factory, lr: 0.05);
            using (var d = new TensorDataModule([x, y], 32, seed: 5))
            using (var t = new Trainer(4, [CPU, CPU]))
                t.Fit(straight, d);
            manual_seed(1);
            using var first = new Regressor(Factory, lr: 0.05);
            using (var d = new TensorDataModule([x, y], 32, seed: 5))
            using (var t = new Trainer(2, [CPU, CPU]) { CheckpointPath = path })
                t.Fit(first, d);
            manual_seed(99); // other initial weights: the replica is built from these, then must take the checkpoint's
            using var resumed = new Regressor(Factory, lr: 0.05);
            using (var d = new TensorDataModule([x, y], 32, seed: 5))
            using (var t = new Trainer(4, [CPU, CPU]))
                t.Fit(resumed, d, path);
            foreach (var ((name, a), (_, b)) in straight.Net.named_parameters().Zip(resumed.Net.named_parameters()))
                Assert.True(a.allclose(b, rtol: 1e-5, atol: 1e-6), $"{name} differs after a data-parallel resume");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void DataParallelNeedsANetFactory()
    {
        using var model = new Regressor(nn.Linear(2, 1));
        using var trainer = new Trainer(1, [CPU, CPU]);
        var ex = Assert.Throws<InvalidOperationException>(() => trainer.PrepareModel(model));
        Assert.Contains("net factory", ex.Message);
    }

    [Fact]
    public void CancellationStopsBetweenBatchesAndLeavesTheModelUsable()
    {
        var (x, y) = Synthetic(256);
        using var _x = x; using var _y = y;
        using var data = new TensorDataModule([x, y], 32);
        using var model = new Regressor(nn.Linear(2, 1), lr: 0.03);
        using var trainer = new Trainer(10);
        using var cts = new CancellationTokenSource();
        trainer.EpochCompleted += m => { if (m.Epoch == 2) cts.Cancel(); };
        Assert.ThrowsAny<OperationCanceledException>(() => trainer.Fit(model, data, cts.Token));
        Assert.Equal(2, trainer.Epoch);
        Assert.Equal(16, trainer.TrainBatchIdx);
        using var out_ = model.call(x);
        Assert.True(out_.isfinite().all().item<bool>());
    }

    [Fact]
    public void NonFiniteLossNamesEpochAndBatch()
    {
        var (x, y) = Synthetic(64);
        using var _x = x; using var _y = y;
        using (no_grad()) x[40, 0] = float.NaN; // row 40 is in batch 3 of 4 (16 rows each, in order)
        var module = new EnumerableDataModule(() => Enumerable.Range(0, 4).Select(i =>
            new Batch(x[TensorIndex.Slice(i * 16, (i + 1) * 16)].clone(), y[TensorIndex.Slice(i * 16, (i + 1) * 16)].clone())), 4);
        using var model = new Regressor(nn.Linear(2, 1));
        using var trainer = new Trainer(2);
        var ex = Assert.Throws<NonFiniteLossException>(() => trainer.Fit(model, module));
        Assert.Equal(1, ex.Epoch);
        Assert.Equal(3, ex.Batch);
        Assert.Contains("epoch 1, batch 3 of 4", ex.Message);
    }

    [Fact]
    public void UninitializedLazyModelIsRejectedBeforeTraining()
    {
        using var model = new Regressor(nn.Sequential(new LazyLinear(1)));
        using var data = new TensorDataModule([zeros(4, 2), zeros(4)], 2);
        using var trainer = new Trainer(1);
        var ex = Assert.Throws<LazyModuleNotInitializedException>(() => trainer.Fit(model, data));
        Assert.Contains("dry run", ex.Message);
    }

    private sealed class ForeignOptimizerRegressor : Regressor
    {
        private readonly nn.Module _stale = nn.Linear(2, 1);
        public ForeignOptimizerRegressor() : base(nn.Linear(2, 1)) { }
        // An optimizer over parameters the model does not hold (as one built before .to() replaced them would be).
        public override optim.Optimizer ConfigureOptimizers() => optim.SGD(_stale.parameters(), 0.1);
    }

    [Fact]
    public void AnOptimizerOverParametersTheModelDoesNotHoldIsRejected()
    {
        using var model = new ForeignOptimizerRegressor();
        using var data = new TensorDataModule([zeros(4, 2), zeros(4)], 2);
        using var trainer = new Trainer(1);
        var ex = Assert.Throws<InvalidOperationException>(() => trainer.Fit(model, data));
        Assert.Contains("create the optimizer in ConfigureOptimizers", ex.Message);
    }

    [Fact]
    public void FitLeavesNoLiveTensorsAndDoesNotGrowPerEpoch()
    {
        var (x, y) = Synthetic(512);
        using var _x = x; using var _y = y;
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        var perEpoch = new List<long>();
        using (var data = TensorDataModule.Split(x, y, 0.25, 32))
        using (var model = new Regressor(nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1)), lr: 0.01))
        using (var trainer = new Trainer(6))
        {
            trainer.EpochCompleted += _ => perEpoch.Add(DisposeScopeManager.Statistics.ThreadTotalLiveCount);
            trainer.Fit(model, data);
        }
        Assert.Equal(6, perEpoch.Count);
        Assert.All(perEpoch.Skip(1), c => Assert.Equal(perEpoch[1], c)); // flat from epoch 2 on
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    [Fact]
    public void ClassifierReachesNinetyFourPercentOnRealDigits()
    {
        manual_seed(0);
        var (pixels, labels) = RepoData.Digits();
        using var x = tensor(pixels).reshape(labels.Length, 784);
        using var y = tensor(labels);
        using var data = TensorDataModule.Split(x, y, valFraction: 0.2, batchSize: 128, seed: 42);
        using var model = new Classifier(new MLP(256, 10, inputs: 784), lr: 0.3);
        model.Net.ApplyInit(InitScheme.Xavier.WithSeed(1));
        using var trainer = new Trainer(maxEpochs: 12);
        var history = trainer.Fit(model, data);
        double acc = history.Last!.ValAccuracy!.Value;
        Assert.True(acc >= 0.94, $"held-out accuracy {acc:P2}");
        var png = Path.Combine(Path.GetTempPath(), $"mlnetguide-digits-curve-{Environment.ProcessId}.png");
        model.Board.SavePng(png, title: "MLP on 8,000 MNIST digits");
        Assert.True(new FileInfo(png).Length > 5_000);
        File.Delete(png);
    }
}
