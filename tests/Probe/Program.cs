using System.Globalization;
using MlNetGuide.Modules;
using TorchSharp;
using static TorchSharp.torch;

// Usage:
//   probe mlp-forward <state-dict-path>   build MLP(32, 3, inputs: 8), load the file, print forward(X) for a fixed X
//   probe slow-save <path> <megabytes>    save a large tensor dictionary atomically (a test kills it midway)
//   probe gc-stress <steps> <sgd|adam>    train through the Trainer while another thread forces GCs non-stop
return args switch
{
    ["gc-stress", var steps, var optimizer] => GcStress(int.Parse(steps, CultureInfo.InvariantCulture), optimizer),
    ["mlp-forward", var path] => MlpForward(path),
    ["slow-save", var path, var mb] => SlowSave(path, int.Parse(mb, CultureInfo.InvariantCulture)),
    _ => Usage(),
};

static int MlpForward(string path)
{
    using var net = ProbeNets.Mlp();
    StateDict.Load(net, path);
    using var x = ProbeNets.Input();
    using var y = net.call(x);
    Console.WriteLine(string.Join(" ", y.data<float>().ToArray().Select(v => BitConverter.SingleToInt32Bits(v).ToString("x8", CultureInfo.InvariantCulture))));
    return 0;
}

static int SlowSave(string path, int megabytes)
{
    var dict = new Dictionary<string, Tensor>();
    for (int i = 0; i < megabytes; i++) dict[$"t{i}"] = full(262144, (float)i); // 1 MiB each
    Console.WriteLine("saving");
    Console.Out.Flush();
    TensorIO.SaveDict(dict, path);
    Console.WriteLine("saved");
    return 0;
}

// TorchSharp's implicit Scalars can be finalized during native calls (see MlNetGuide.Modules.Scalars); forcing GCs
// from another thread makes that show within a few thousand steps. Exit code 0 means every step ran.
static int GcStress(int steps, string optimizer)
{
    var stop = false;
    var hammer = new Thread(() => { while (!Volatile.Read(ref stop)) { GC.Collect(); GC.WaitForPendingFinalizers(); } }) { IsBackground = true };
    hammer.Start();
    using var g = new Generator(1);
    using var x = randn(new long[] { 640, 20 }, generator: g);
    using var y = randint(10, new long[] { 640 }, generator: g);
    using var data = MlNetGuide.Training.TensorDataModule.Split(x, y, 0.1, 32, seed: 1);
    using var model = new MlNetGuide.Training.Classifier(
        torch.nn.Sequential(new MyLinear(20, 32, g), new CenteredLayer(), torch.nn.Linear(32, 10)), lr: 0.01);
    if (optimizer == "adam") model.OptimizerFactory = (ps, lr) => new MlNetGuide.Training.Adam(ps, lr);
    int epochs = Math.Max(1, steps / 18);
    using var trainer = new MlNetGuide.Training.Trainer(epochs, gradientClipVal: 1.0);
    trainer.Fit(model, data);
    Volatile.Write(ref stop, true);
    Console.WriteLine($"survived {trainer.TrainBatchIdx} steps");
    return 0;
}

static int Usage()
{
    Console.Error.WriteLine("usage: probe mlp-forward <path> | slow-save <path> <megabytes> | gc-stress <steps> <sgd|adam>");
    return 2;
}

/// <summary>The architecture and input both processes agree on.</summary>
public static class ProbeNets
{
    public static MLP Mlp() => new(hiddenUnits: 32, outputs: 3, inputs: 8);

    public static Tensor Input()
    {
        using var g = new Generator(123);
        return rand(new long[] { 4, 8 }, generator: g);
    }
}
