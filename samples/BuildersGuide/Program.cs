// Chapter 6 of Dive into Deep Learning ("Builders' Guide") in C#, section by section.
//   dotnet run --project samples/BuildersGuide              all sections
//   dotnet run --project samples/BuildersGuide -- --section 6.4
using MlNetGuide.Modules;
using MlNetGuide.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

var sections = new (string id, string title, Action run)[]
{
    ("6.1", "Layers and Modules", LayersAndModules),
    ("6.2", "Parameter Management", ParameterManagement),
    ("6.3", "Parameter Initialization", ParameterInitialization),
    ("6.4", "Lazy Initialization", LazyInitialization),
    ("6.5", "Custom Layers", CustomLayers),
    ("6.6", "File I/O", FileIO),
    ("6.7", "GPUs", Gpus),
};

string? only = null;
for (int i = 0; i < args.Length; i++)
{
    if (args[i] == "--section" && i + 1 < args.Length) only = args[++i];
    else if (args[i] is "-h" or "--help") { Console.WriteLine("usage: BuildersGuide [--section 6.1|6.2|...|6.7]"); return 0; }
    else { Console.Error.WriteLine($"Unknown argument '{args[i]}'. usage: BuildersGuide [--section 6.1|...|6.7]"); return 2; }
}
if (only is not null && sections.All(s => s.id != only))
{
    Console.Error.WriteLine($"No section {only}; choose one of {string.Join(", ", sections.Select(s => s.id))}.");
    return 2;
}

foreach (var (id, title, run) in sections.Where(s => only is null || s.id == only))
{
    Console.WriteLine($"\n=== {id} {title} ===");
    manual_seed(0); // every section is deterministic on its own
    using var scope = NewDisposeScope();
    run();
}
return 0;

static string Shape(Tensor t) => $"({string.Join(", ", t.shape)})";
static string Values(Tensor t, int n = 6) =>
    "[" + string.Join(", ", t.detach().cpu().to_type(ScalarType.Float32).data<float>().ToArray().Take(n).Select(v => (v == 0 ? 0f : v).ToString("0.####", System.Globalization.CultureInfo.InvariantCulture))) + (t.numel() > n ? ", ..." : "") + "]";

static void LayersAndModules()
{
    var X = rand(2, 20);
    var net = nn.Sequential(new LazyLinear(256), nn.ReLU(), new LazyLinear(10));
    Console.WriteLine($"Sequential(LazyLinear(256), ReLU, LazyLinear(10))(X) -> {Shape(net.call(X))}");
    Console.WriteLine($"MLP()(X) -> {Shape(new MLP().call(X))}");
    var mySeq = new MySequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10));
    Console.WriteLine($"MySequential children: {string.Join(", ", mySeq.named_children().Select(c => c.name))} -> {Shape(mySeq.call(X))}");
    var fixedHidden = new FixedHiddenMLP();
    Console.WriteLine($"FixedHiddenMLP()(X) = {fixedHidden.call(X).item<float>():0.####} (a scalar)");
    Console.WriteLine($"  its parameters: {string.Join(", ", fixedHidden.named_parameters().Select(p => p.name))} — the constant rand_weight is not one");
    var chimera = nn.Sequential(new NestMLP(), new LazyLinear(20), new FixedHiddenMLP());
    Console.WriteLine($"chimera(X) = {chimera.call(X).item<float>():0.####}");
}

static void ParameterManagement()
{
    var X = rand(2, 4);
    var net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1));
    net.call(X);
    var last = (Linear)net[2];
    Console.WriteLine($"net[2].state_dict(): {string.Join(", ", last.state_dict().Select(kv => $"{kv.Key} {Shape(kv.Value)}"))}");
    Console.WriteLine($"net[2].bias: {Values(last.bias!)}  grad before backward: {(last.weight.grad is null ? "None" : "set")}");
    Console.WriteLine("All parameters: " + string.Join(", ", net.named_parameters().Select(p => $"('{p.name}', {Shape(p.parameter)})")));
    var shared = nn.Linear(8, 8);
    var tied = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU(), nn.Linear(8, 1));
    tied.call(X);
    var w2 = ((Linear)tied[2]).weight;
    var w4 = ((Linear)tied[4]).weight;
    Console.WriteLine($"tied: net[2].weight[0] == net[4].weight[0]: {w2[0].equal(w4[0]).all().item<bool>()}");
    using (no_grad()) w2[0, 0] = 100;
    Console.WriteLine($"after net[2].weight[0, 0] = 100: net[4].weight[0, 0] = {w4[0, 0].item<float>()}");
    Console.WriteLine($"TorchSharp state_dict keys: {string.Join(", ", tied.state_dict().Keys)}");
    Console.WriteLine($"PyTorch-style keys:        {string.Join(", ", StateDict.Get(tied, includeAliases: true).Keys)}");
    Console.Write(ModuleSummary.Describe(tied));
}

static void ParameterInitialization()
{
    var X = rand(2, 4);
    var net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1));
    net.ApplyInit(InitScheme.NormalSmall);
    Console.WriteLine($"init_normal:   net[0].weight[0] = {Values(((Linear)net[0]).weight[0])}, bias[0] = {((Linear)net[0]).bias![0].item<float>()}");
    net.ApplyInit(InitScheme.ConstantOne);
    Console.WriteLine($"init_constant: net[0].weight[0] = {Values(((Linear)net[0]).weight[0])}, bias[0] = {((Linear)net[0]).bias![0].item<float>()}");
    net[0].ApplyInit(Initializer.XavierUniform());
    net[2].ApplyInit(Initializer.Constant(42));
    Console.WriteLine($"xavier on net[0]: {Values(((Linear)net[0]).weight[0])}; 42 on net[2]: {Values(((Linear)net[2]).weight)}");
    net.ApplyInit(new InitScheme(Initializer.ChapterCustom(), Seed: 0));
    Console.WriteLine($"my_init: net[0].weight[:2] = {Values(((Linear)net[0]).weight[..2], 8)}");
    var w = ((Linear)net[0]).weight;
    using (no_grad()) { w.add_(1.0.ToScalar()); w[0, 0] = 42; }
    Console.WriteLine($"after weight += 1 and weight[0, 0] = 42: {Values(w[0])}");
}

static void LazyInitialization()
{
    var net = nn.Sequential(new LazyLinear(256), nn.ReLU(), new LazyLinear(10));
    Console.WriteLine($"before: net[0] = {net[0]}");
    try { _ = ((LazyLinear)net[0]).weight; }
    catch (LazyModuleNotInitializedException e) { Console.WriteLine($"net[0].weight -> {e.GetType().Name}"); }
    var X = rand(2, 20);
    net.call(X);
    Console.WriteLine($"after the dry run: net[0].weight.shape = {Shape(((LazyLinear)net[0]).weight)}");
    var model = new Classifier(nn.Sequential(new LazyLinear(32), nn.ReLU(), new LazyLinear(3)), lr: 0.1);
    model.ApplyInit(X, InitScheme.Xavier);
    Console.WriteLine($"apply_init(X, xavier): {string.Join(", ", model.named_parameters().Select(p => $"{p.name} {Shape(p.parameter)}"))}");
}

static void CustomLayers()
{
    var layer = new CenteredLayer();
    Console.WriteLine($"CenteredLayer()([1, 2, 3, 4, 5]) = {Values(layer.call(tensor(new float[] { 1, 2, 3, 4, 5 })))}");
    var net = nn.Sequential(new LazyLinear(128), new CenteredLayer());
    Console.WriteLine($"mean of Sequential(LazyLinear(128), CenteredLayer())(rand(4, 8)) = {net.call(rand(4, 8)).mean().item<float>():E2}");
    var linear = new MyLinear(5, 3);
    Console.WriteLine($"MyLinear(5, 3).weight: {Shape(linear.weight)}; forward(rand(2, 5)) = {Values(linear.call(rand(2, 5)))}");
    var mlp = nn.Sequential(new MyLinear(64, 8), new MyLinear(8, 1));
    Console.WriteLine($"Sequential(MyLinear(64, 8), MyLinear(8, 1))(rand(2, 64)) -> {Shape(mlp.call(rand(2, 64)))}");
}

static void FileIO()
{
    var dir = Directory.CreateTempSubdirectory("buildersguide-").FullName;
    try
    {
        var x = arange(4, dtype: ScalarType.Float32);
        TensorIO.Save(x, Path.Combine(dir, "x-file"));
        Console.WriteLine($"x2 = load('x-file') = {Values(TensorIO.Load(Path.Combine(dir, "x-file")))}");
        var y = zeros(4);
        TensorIO.SaveList([x, y], Path.Combine(dir, "x-files"));
        var list = TensorIO.LoadList(Path.Combine(dir, "x-files"));
        Console.WriteLine($"(x2, y2) = {Values(list[0])}, {Values(list[1])}");
        TensorIO.SaveDict(new Dictionary<string, Tensor> { ["x"] = x, ["y"] = y }, Path.Combine(dir, "mydict"));
        Console.WriteLine($"mydict2 = {{{string.Join(", ", TensorIO.LoadDict(Path.Combine(dir, "mydict")).Select(kv => $"'{kv.Key}': {Values(kv.Value)}"))}}}");
        var net = new MLP();
        var X = randn(2, 20);
        var Y = net.call(X);
        foreach (var format in new[] { TensorFileFormat.TorchSharp, TensorFileFormat.PyTorch, TensorFileFormat.Safetensors })
        {
            var path = Path.Combine(dir, $"mlp.{format}");
            StateDict.Save(net, path, format);
            var clone = new MLP();
            StateDict.Load(clone, path);
            clone.eval();
            Console.WriteLine($"{format,-11}: Y_clone == Y: {clone.call(X).equal(Y).all().item<bool>()} ({new FileInfo(path).Length:N0} bytes)");
        }
    }
    finally
    {
        Directory.Delete(dir, true);
    }
}

static void Gpus()
{
    int n = Devices.NumGpus();
    Console.WriteLine($"cpu() = {Devices.Name(Devices.Cpu())}, gpu(0) = {Devices.Name(Devices.Gpu(0))}, num_gpus() = {n}");
    if (n == 0) Console.WriteLine("This machine has no CUDA GPU (or runs the CPU build of TorchSharp): try_gpu() and try_all_gpus() fall back to the CPU.");
    Console.WriteLine($"try_gpu() = {Devices.Name(Devices.TryGpu())}, try_gpu(10) = {Devices.Name(Devices.TryGpu(10))}, try_all_gpus() = [{string.Join(", ", Devices.TryAllGpus().Select(Devices.Name))}]");
    var X = ones(new long[] { 2, 3 }, device: Devices.TryGpu());
    Console.WriteLine($"X = ones(2, 3, device=try_gpu()) lives on {Devices.Name(Devices.Of(X))}");
    var net = nn.Sequential(nn.Linear(3, 1));
    net.to(Devices.TryGpu());
    Console.WriteLine($"net(X) = {Values(net.call(X))}; net[0].weight on {Devices.Name(Devices.Of(((Linear)net[0]).weight))}");
    var meta = new Device(DeviceType.META);
    try { Devices.EnsureSameDevice(X, zeros(new long[] { 1 }, device: meta), "X", "this META tensor"); }
    catch (DeviceMismatchException e) { Console.WriteLine($"mixing devices: {e.Message}"); }
    var trainer = new Trainer(maxEpochs: 1, numGpus: 1, log: Console.WriteLine);
    Console.WriteLine($"Trainer(num_gpus=1) trains on {Devices.Name(trainer.Device)}");
}
