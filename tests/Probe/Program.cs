using System.Globalization;
using MlNetGuide.Modules;
using TorchSharp;
using static TorchSharp.torch;

// Usage:
//   probe mlp-forward <state-dict-path>   build MLP(32, 3, inputs: 8), load the file, print forward(X) for a fixed X
//   probe slow-save <path> <megabytes>    save a large tensor dictionary atomically (a test kills it midway)
return args switch
{
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

static int Usage()
{
    Console.Error.WriteLine("usage: probe mlp-forward <path> | slow-save <path> <megabytes>");
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
