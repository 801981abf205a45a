using System.Text.Json;
using MlNetGuide.Modules;
using MlNetGuide.Tests.Shared;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.EndToEnd.Tests.Interop;

/// <summary>
/// 6.6 against real PyTorch (Debian's python3-torch), both ways: what we write in <see cref="TensorFileFormat.PyTorch"/>
/// is read by <c>torch.load</c> and loaded with <c>strict=True</c> into the same modules; what <c>torch.save</c> writes
/// is read by <see cref="TensorIO"/> and <see cref="StateDict"/>. Outputs on fixed inputs agree within PyTorch's own float32 <c>assert_close</c> bound,
/// |ours − theirs| ≤ 1e-5 + 1.3e-6 · |theirs|: two BLAS libraries sum in different orders, so an absolute 1e-6 is not a bound.
/// The Python side is Interop/pytorch_interop.py; each module there mirrors one here, name for name.
/// </summary>
public sealed class PyTorchInteropTests(PyTorchInteropFixture run) : IClassFixture<PyTorchInteropFixture>
{
    // torch.testing.assert_close's float32 defaults.
    private const double AbsoluteTolerance = 1e-5, RelativeTolerance = 1.3e-6;

    // C# -> PyTorch

    [PyTorchFact]
    public void OurTensorListAndDictLoadInPyTorchWithTheirValues()
    {
        foreach (var name in new[] { "tensor", "list", "dict" })
            run.Loaded(name);
    }

    [PyTorchFact]
    public void OurMlpStateDictLoadsStrictlyIntoPyTorchsMlpAndGivesOurOutputs() =>
        AssertClose(run.Written.Outputs["mlp"], run.Loaded("mlp"), "chapter MLP, ours vs PyTorch");

    [PyTorchFact]
    public void OurTrainedDigitsMlpGivesOurOutputsInPyTorch()
    {
        Assert.True(run.Written.DigitsLossAfter < run.Written.DigitsLossBefore * 0.8,
            $"training did not move the digits MLP (loss {run.Written.DigitsLossBefore} -> {run.Written.DigitsLossAfter})");
        AssertClose(run.Written.Outputs["digits"], run.Loaded("digits"), "trained digits MLP, ours vs PyTorch");
    }

    [PyTorchFact]
    public void OurTiedNetLoadsIntoPyTorchsTiedNetAndTheTieHolds() =>
        // The script checks net[2].weight is net[4].weight after load_state_dict(strict=True) and equals the file's.
        AssertClose(run.Written.Outputs["tied"], run.Loaded("tied"), "tied net, ours vs PyTorch");

    // PyTorch -> C#

    [PyTorchFact]
    public void PyTorchsTensorListAndDictLoadHere()
    {
        // Loaded tensors belong to the caller, not to a dispose scope.
        using var x = TensorIO.Load(run.SavedFile("x-file"));
        Assert.Equal(ScalarType.Int64, x.dtype);
        Assert.Equal(new long[] { 0, 1, 2, 3 }, x.data<long>().ToArray());

        var list = TensorIO.LoadList(run.SavedFile("x-files"));
        using var _list = Disposer(list);
        Assert.Equal(2, list.Count);
        Assert.Equal(new long[] { 0, 1, 2, 3 }, list[0].data<long>().ToArray());
        Assert.Equal(ScalarType.Float32, list[1].dtype);
        Assert.Equal(new float[4], list[1].data<float>().ToArray());

        var dict = TensorIO.LoadDict(run.SavedFile("mydict"));
        using var _dict = Disposer(dict.Values);
        Assert.Equal(new[] { "x", "y" }, dict.Keys);
        Assert.Equal(new long[] { 0, 1, 2, 3 }, dict["x"].data<long>().ToArray());
        Assert.Equal(new float[4], dict["y"].data<float>().ToArray());
    }

    [PyTorchFact]
    public void PyTorchsMlpStateDictLoadsStrictlyIntoOurMlp()
    {
        using var scope = NewDisposeScope();
        using var net = new MLP(256, 10, inputs: 20);
        StateDict.Load(net, run.SavedFile("mlp.params"));
        AssertClose(run.Saved.Outputs["mlp"], Forward(net, "mlp"), "chapter MLP, PyTorch vs ours");
    }

    [PyTorchFact]
    public void PyTorchsTiedNetLoadsAsOneTensorUnderBothNames()
    {
        using var scope = NewDisposeScope();
        var (net, shared) = TiedNet();
        using var _ = net;
        var file = TensorIO.LoadDict(run.SavedFile("tied.params"));
        using var _file = Disposer(file.Values);
        Assert.Contains("4.weight", file.Keys); // PyTorch lists the tie under both names
        StateDict.Load(net, run.SavedFile("tied.params"));
        var named = StateDict.Get(net, includeAliases: true);
        Assert.Same(((Linear)net[2]).weight, ((Linear)net[4]).weight);
        Assert.Equal(named["2.weight"].Handle, named["4.weight"].Handle);
        Assert.Equal(named["2.bias"].Handle, named["4.bias"].Handle);
        Assert.True(shared.weight.equal(file["4.weight"]).all().item<bool>());
        AssertClose(run.Saved.Outputs["tied"], Forward(net, "tied"), "tied net, PyTorch vs ours");
    }

    [PyTorchFact]
    public void PyTorchsKeyOrderAndBatchNormBuffersLoadStrictly()
    {
        using var scope = NewDisposeScope();
        using var net = new OrderedNet();
        // Same keys, another order: PyTorch lists head.* first (registration order), we list body.* first.
        var pytorchKeys = run.Saved.Keys;
        var ourKeys = StateDict.Get(net).Keys.ToList();
        Assert.Equal(pytorchKeys.Order(StringComparer.Ordinal), ourKeys.Order(StringComparer.Ordinal));
        Assert.NotEqual(pytorchKeys, ourKeys);

        StateDict.Load(net, run.SavedFile("ordered.params"));
        var state = StateDict.Get(net);
        Assert.Equal(ScalarType.Int64, state["norm.num_batches_tracked"].dtype);
        Assert.Equal(3L, state["norm.num_batches_tracked"].item<long>());
        Assert.False(state["norm.running_var"].allclose(ones(8))); // the running statistics came from the file
        net.eval();
        AssertClose(run.Saved.Outputs["ordered"], Forward(net, "ordered"), "BatchNorm net in eval mode, PyTorch vs ours");
    }

    // Sequence modules (issue #26): token ids with padding, both ways, strict, against PyTorch's own nn.Embedding,
    // nn.Conv1d, nn.LSTM, nn.GRU and nn.TransformerEncoderLayer. The float32 bound above holds for all five,
    // the Transformer's two layers of attention, softmax and layer norm included: none needs a looser one.

    [PyTorchTheory]
    [MemberData(nameof(SequenceNets.InteropNames), MemberType = typeof(SequenceNets))]
    public void OurSequenceModuleLoadsStrictlyIntoPyTorchsModulesAndGivesOurOutputs(string name) =>
        // The script loads our file with strict=True into its mirror, checks our ids equal its own, and runs them.
        AssertClose(run.Written.Outputs[name], run.Loaded(name), $"{name}, ours vs PyTorch");

    [PyTorchTheory]
    [MemberData(nameof(SequenceNets.InteropNames), MemberType = typeof(SequenceNets))]
    public void PyTorchsSequenceModuleLoadsStrictlyIntoOursAndGivesItsOutputs(string name)
    {
        using var scope = NewDisposeScope();
        using var net = SequenceNets.Build(name);
        StateDict.Load(net, run.SavedFile($"{name}.params"));
        using var ids = TensorIO.Load(run.SavedFile("sequence-ids.pth"));
        using var expectedIds = SequenceNets.Ids();
        Assert.True(ids.equal(expectedIds).all().item<bool>(), "PyTorch's token ids are not the ones SequenceNets.Ids gives");
        using var noGrad = no_grad();
        using var input = SequenceNets.Input(name, ids);
        AssertClose(run.Saved.Outputs[name], net.call(input).data<float>().ToArray(), $"{name}, PyTorch vs ours");
    }

    private float[] Forward(nn.Module<Tensor, Tensor> net, string input)
    {
        using var noGrad = no_grad();
        var inputs = TensorIO.LoadDict(run.SavedFile("inputs.pth"));
        try { return net.call(inputs[input]).data<float>().ToArray(); }
        finally { foreach (var t in inputs.Values) t.Dispose(); }
    }

    private static Owned Disposer(IEnumerable<Tensor> tensors) => new([.. tensors]);

    private sealed class Owned(List<Tensor> tensors) : IDisposable
    {
        public void Dispose() { foreach (var t in tensors) t.Dispose(); }
    }

    internal static (Sequential net, Linear shared) TiedNet()
    {
        var shared = nn.Linear(8, 8);
        return (nn.Sequential(nn.Linear(4, 8), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU(), nn.Linear(8, 1)), shared);
    }

    private static void AssertClose(IReadOnlyList<double> expected, IReadOnlyList<double> actual, string what)
    {
        Assert.True(expected.Count > 0, $"{what}: no outputs");
        Assert.True(expected.Count == actual.Count, $"{what}: {expected.Count} outputs expected, {actual.Count} found");
        // The worst ratio of the difference to its allowance: above 1 fails.
        var (worst, index) = expected.Zip(actual, (e, a) => Math.Abs(e - a) / (AbsoluteTolerance + RelativeTolerance * Math.Abs(e)))
            .Select((ratio, i) => (ratio, i)).Max();
        Assert.True(worst <= 1, $"{what}: output {index} is {actual[index]:R} where PyTorch gives {expected[index]:R}, " +
            $"past |diff| <= {AbsoluteTolerance} + {RelativeTolerance} * |expected| ({worst:F2} times the allowance)");
    }

    private static void AssertClose(IReadOnlyList<double> expected, float[] actual, string what) =>
        AssertClose(expected, actual.Select(v => (double)v).ToList(), what);

    /// <summary>Mirrors the script's Ordered: body -> BatchNorm1d -> ReLU -> head, registered in the order of use.</summary>
    private sealed class OrderedNet : nn.Module<Tensor, Tensor>
    {
        private readonly Linear body = nn.Linear(5, 8);
        private readonly BatchNorm1d norm = nn.BatchNorm1d(8);
        private readonly Linear head = nn.Linear(8, 3);

        public OrderedNet() : base(nameof(OrderedNet)) => RegisterComponents();

        public override Tensor forward(Tensor x)
        {
            using var h = norm.call(body.call(x));
            return head.call(h.relu());
        }
    }
}

/// <summary>
/// The script's SEQUENCE_NETS and sequence_ids(), net for net: one small net of each sequence module, in eval mode.
/// </summary>
public static class SequenceNets
{
    public const long Vocabulary = 50;

    /// <summary>The sequence modules (token ids in): what the ONNX export tests run too.</summary>
    public static TheoryData<string> Names => new() { "fasttext", "textcnn", "lstm", "gru", "transformer" };

    /// <summary>Those and the feature bag, which reads a bag of the same ids (<see cref="Input"/>): the script's SEQUENCE_NETS.</summary>
    public static TheoryData<string> InteropNames => new() { "fasttext", "feature-bag", "textcnn", "lstm", "gru", "transformer" };

    public static nn.Module<Tensor, Tensor> Build(string name)
    {
        nn.Module<Tensor, Tensor> net = name switch
        {
            "fasttext" => new FastTextClassifier(Vocabulary, 3, embeddingSize: 16),
            "feature-bag" => new FeatureBag(Vocabulary, 3, size: 16),
            "textcnn" => new TextCnn(Vocabulary, 3, embeddingSize: 16, kernelSizes: [2, 3, 5], channels: [8, 6, 4], dropout: 0.5),
            "lstm" => new BiRnnEncoder(Vocabulary, 3, RecurrentCell.Lstm, embeddingSize: 16, hiddenSize: 12, layers: 2),
            "gru" => new BiRnnEncoder(Vocabulary, 3, RecurrentCell.Gru, embeddingSize: 16, hiddenSize: 12, layers: 2),
            "transformer" => new TransformerTextEncoder(Vocabulary, 3, modelSize: 16, heads: 4, feedForwardSize: 32, layers: 2, dropout: 0.1),
            _ => throw new ArgumentOutOfRangeException(nameof(name), name, "not one of the script's SEQUENCE_NETS"),
        };
        net.eval();
        return net;
    }

    /// <summary>
    /// What <paramref name="name"/>'s net reads for <paramref name="ids"/>: the ids, or for the feature bag their bag of
    /// words as a sparse COO batch (0.5 per occurrence, padding dropped; the script's bag_of_ids), which its
    /// EmbeddingBag reads by the non-zeros.
    /// </summary>
    public static Tensor Input(string name, Tensor ids)
    {
        if (name != "feature-bag") return ids.alias();
        using var scope = NewDisposeScope();
        var x = zeros(ids.shape[0], Vocabulary).scatter_add_(1, ids, full(ids.shape, 0.5f));
        x[TensorIndex.Colon, 0] = tensor(0f);
        return x.to_sparse().MoveToOuterDisposeScope();
    }

    /// <summary>Rows of 7, 1 (shorter than the widest kernel), 4 (a padding id inside) and 0 tokens, then padding.</summary>
    public static Tensor Ids() => tensor(new long[,]
    {
        { 5, 3, 7, 1, 49, 2, 11, 0, 0 },
        { 4, 0, 0, 0, 0, 0, 0, 0, 0 },
        { 8, 8, 0, 9, 0, 0, 0, 0, 0 },
        { 0, 0, 0, 0, 0, 0, 0, 0, 0 },
    });
}

/// <summary>
/// Runs the script once each way for the whole class: "save" (PyTorch writes, prints its outputs) and "load" (we write,
/// PyTorch reads, checks and prints its outputs). Both run lazily, so a class whose tests are skipped starts no python.
/// </summary>
public sealed class PyTorchInteropFixture : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-pytorch-").FullName;
    private readonly Lazy<(Dictionary<string, double[]> outputs, List<string> keys)> _saved;
    private readonly Lazy<(OurFiles written, Dictionary<string, JsonElement> loaded)> _cs;

    public PyTorchInteropFixture()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "pytorch"));
        Directory.CreateDirectory(Path.Combine(_dir, "ours"));
        _saved = new(() =>
        {
            var json = RunScript("save", Path.Combine(_dir, "pytorch"));
            var outputs = new Dictionary<string, double[]>();
            foreach (var p in json.EnumerateObject().Where(p => p.Name != "ordered_keys"))
                outputs[p.Name] = p.Value.EnumerateArray().Select(v => v.GetDouble()).ToArray();
            return (outputs, json.GetProperty("ordered_keys").EnumerateArray().Select(v => v.GetString()!).ToList());
        });
        _cs = new(() =>
        {
            var written = OurFiles.Write(Path.Combine(_dir, "ours"));
            var json = RunScript("load", Path.Combine(_dir, "ours"));
            return (written, json.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.Clone()));
        });
    }

    /// <summary>What torch.save wrote: the forward outputs PyTorch printed and the BatchNorm net's state-dict keys.</summary>
    public (Dictionary<string, double[]> Outputs, List<string> Keys) Saved => _saved.Value;

    public string SavedFile(string name)
    {
        _ = _saved.Value;
        return Path.Combine(_dir, "pytorch", name);
    }

    public OurFiles Written => _cs.Value.written;

    /// <summary>PyTorch's outputs for one of our files; fails with PyTorch's traceback when its checks failed.</summary>
    public double[] Loaded(string name)
    {
        var result = _cs.Value.loaded[name];
        Assert.True(result.GetProperty("ok").GetBoolean(), $"PyTorch rejected our '{name}':\n{result.GetProperty("error").GetString()}");
        return result.GetProperty("out").EnumerateArray().Select(v => v.GetDouble()).ToArray();
    }

    private static JsonElement RunScript(string mode, string dir)
    {
        var python = SystemPython.With("torch")
            ?? throw new InvalidOperationException("No python3 can import torch: sudo apt-get install python3-torch (required here: CI=true or MLNETGUIDE_REQUIRE_PYTORCH=1).");
        var script = Path.Combine(AppContext.BaseDirectory, "Interop", "pytorch_interop.py");
        var (exit, stdout, stderr) = ChildProcess.RunProgram(python, script, mode, dir);
        Assert.True(exit == 0, $"pytorch_interop.py {mode} exited {exit}:\n{stderr}");
        return JsonDocument.Parse(stdout).RootElement.Clone();
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); }
        catch (IOException) { } // a leftover temp folder is not a test failure
    }
}

/// <summary>The chapter's objects written by us in PyTorch's format, with our forward outputs on the inputs saved beside them.</summary>
public sealed class OurFiles
{
    public Dictionary<string, double[]> Outputs { get; } = [];

    public double DigitsLossBefore { get; private set; }

    public double DigitsLossAfter { get; private set; }

    public static OurFiles Write(string dir)
    {
        const TensorFileFormat PyTorch = TensorFileFormat.PyTorch;
        string At(string name) => Path.Combine(dir, name);
        var result = new OurFiles();
        using var scope = NewDisposeScope();
        manual_seed(0);

        var x = arange(4);
        var y = zeros(4);
        TensorIO.Save(x, At("x-file"), PyTorch);
        TensorIO.SaveList([x, y], At("x-files"), PyTorch);
        TensorIO.SaveDict(new Dictionary<string, Tensor> { ["x"] = x, ["y"] = y }, At("mydict"), PyTorch);

        var (pixels, labels) = RepoData.Digits(limit: 512);
        var digits = tensor(pixels).reshape(512, 784);
        var digitLabels = tensor(labels);
        var inputs = new Dictionary<string, Tensor> { ["mlp"] = randn(2, 20), ["tied"] = randn(3, 4), ["digits"] = digits[..8] };
        TensorIO.SaveDict(inputs, At("inputs.pth"), PyTorch);

        using var mlp = new MLP(256, 10, inputs: 20);
        StateDict.Save(mlp, At("mlp.params"), PyTorch);
        result.Outputs["mlp"] = Forward(mlp, inputs["mlp"]);

        using var digitsNet = new MLP().ApplyInit(digits[..2], InitScheme.Xavier); // lazy: 784 inputs from the dry run
        result.DigitsLossBefore = Loss(digitsNet, digits, digitLabels);
        using (var sgd = optim.SGD(digitsNet.parameters(), 0.1))
            for (int step = 0; step < 40; step++)
            {
                using var stepScope = NewDisposeScope();
                long start = step % 8 * 64;
                sgd.zero_grad();
                nn.functional.cross_entropy(digitsNet.call(digits.narrow(0, start, 64)), digitLabels.narrow(0, start, 64)).backward();
                sgd.step();
            }
        result.DigitsLossAfter = Loss(digitsNet, digits, digitLabels);
        StateDict.Save(digitsNet, At("digits.params"), PyTorch);
        result.Outputs["digits"] = Forward(digitsNet, inputs["digits"]);

        var (tied, _) = PyTorchInteropTests.TiedNet();
        using var _tied = tied;
        StateDict.Save(tied, At("tied.params"), PyTorch);
        result.Outputs["tied"] = Forward(tied, inputs["tied"]);

        var ids = SequenceNets.Ids();
        TensorIO.Save(ids, At("sequence-ids.pth"), PyTorch);
        foreach (var name in SequenceNets.InteropNames)
        {
            using var net = SequenceNets.Build(name);
            StateDict.Save(net, At($"{name}.params"), PyTorch);
            using var input = SequenceNets.Input(name, ids);
            result.Outputs[name] = Forward(net, input);
        }
        return result;
    }

    private static double[] Forward(nn.Module<Tensor, Tensor> net, Tensor input)
    {
        using var noGrad = no_grad();
        using var output = net.call(input);
        return output.data<float>().ToArray().Select(v => (double)v).ToArray();
    }

    private static double Loss(nn.Module<Tensor, Tensor> net, Tensor x, Tensor y)
    {
        using var noGrad = no_grad();
        using var loss = nn.functional.cross_entropy(net.call(x), y);
        return loss.item<float>();
    }
}

/// <summary>A theory that needs Debian's python3-torch: skipped or failed as <see cref="PyTorchFactAttribute"/> is.</summary>
public sealed class PyTorchTheoryAttribute : TheoryAttribute
{
    public PyTorchTheoryAttribute()
    {
        if (!SystemPython.Required("MLNETGUIDE_REQUIRE_PYTORCH") && SystemPython.With("torch") is null)
            Skip = "python3-torch is not installed (sudo apt-get install python3-torch): the checks against real PyTorch cannot run. " +
                "Under CI=true or MLNETGUIDE_REQUIRE_PYTORCH=1 this test fails instead.";
    }
}

/// <summary>
/// A test that needs Debian's python3-torch: skipped with the apt command when it is missing, except under CI=true or
/// MLNETGUIDE_REQUIRE_PYTORCH=1 (as .ci/run sets), where it fails.
/// </summary>
public sealed class PyTorchFactAttribute() : SystemPythonFactAttribute("torch", "MLNETGUIDE_REQUIRE_PYTORCH",
    "python3-torch is not installed (sudo apt-get install python3-torch): the checks against real PyTorch cannot run");
