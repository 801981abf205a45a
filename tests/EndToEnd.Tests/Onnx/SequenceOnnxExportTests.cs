using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using MlNetGuide.EndToEnd.Tests.Interop;
using MlNetGuide.Modules;
using MlNetGuide.Modules.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.EndToEnd.Tests.Onnx;

/// <summary>
/// The sequence modules' export rules (issue #26): ONNX Runtime computes what TorchSharp computes on padded token ids
/// (a row of padding alone, a padding id inside a row, rows of other lengths), the graph's initializers are the
/// state dict under its keys, and every graph passes the ONNX reference checker.
/// </summary>
public sealed class SequenceOnnxExportTests : IDisposable
{
    // Float32 sums in other orders (ORT's GEMMs and recurrent kernels against libtorch's): PyTorch's assert_close bound.
    private const double AbsoluteTolerance = 1e-5, RelativeTolerance = 1.3e-6;

    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-onnx-seq-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    [Theory]
    [MemberData(nameof(SequenceNets.Names), MemberType = typeof(SequenceNets))]
    public void OnnxRuntimeGivesTheModulesLogitsOnPaddedIds(string name)
    {
        using var scope = NewDisposeScope();
        using var net = Trained(name);
        using var session = new InferenceSession(OnnxExporter.ExportTokenSequences(net).ToByteArray());
        foreach (var ids in new[]
        {
            SequenceNets.Ids(),
            tensor(new long[,] { { 12, 0, 0 } }),                                                   // one row, shorter than the widest kernel
            randint(1, SequenceNets.Vocabulary, [5, 13]).mul(rand(5, 13).gt(0.3).to_type(ScalarType.Int64)), // padding scattered inside rows
        })
        {
            float[] expected;
            using (no_grad()) expected = net.call(ids).data<float>().ToArray();
            var input = new DenseTensor<long>(ids.data<long>().ToArray(), [(int)ids.shape[0], (int)ids.shape[1]]);
            using var results = session.Run([NamedOnnxValue.CreateFromTensor("input", input)]);
            var output = results.Single().AsTensor<float>();
            Assert.Equal(new[] { (int)ids.shape[0], 3 }, output.Dimensions.ToArray());
            var actual = output.ToArray();
            for (int i = 0; i < expected.Length; i++)
                Assert.True(Math.Abs(actual[i] - expected[i]) <= AbsoluteTolerance + RelativeTolerance * Math.Abs(expected[i]),
                    $"{name}, batch [{string.Join(", ", ids.shape)}], output {i}: ONNX Runtime {actual[i]:R}, TorchSharp {expected[i]:R}");
        }
    }

    [Theory]
    [MemberData(nameof(SequenceNets.Names), MemberType = typeof(SequenceNets))]
    public void TheGraphsInitializersAreTheStateDictUnderItsKeys(string name)
    {
        using var net = SequenceNets.Build(name);
        var model = OnnxExporter.ExportTokenSequences(net);
        var keys = System.Text.Json.JsonSerializer.Deserialize<string[]>(
            model.MetadataProps.Single(p => p.Key == OnnxGraphBuilder.StateDictKeysMetadata).Value)!;
        Assert.Equal(StateDict.Get(net).Keys.Order(StringComparer.Ordinal), keys.Order(StringComparer.Ordinal));
        var input = model.Graph.Input.Single();
        Assert.Equal((int)global::Onnx.TensorProto.Types.DataType.Int64, input.Type.TensorType.ElemType);
        Assert.Equal(["batch", "time"], input.Type.TensorType.Shape.Dim.Select(d => d.DimParam));
    }

    [OnnxCheckerFact]
    public void SequenceGraphsPassTheOnnxReferenceChecker()
    {
        foreach (string name in SequenceNets.Names)
        {
            using var net = SequenceNets.Build(name);
            OnnxExporter.SaveTokenSequences(net, Path.Combine(_dir, $"{name}.onnx"));
        }
        var (exit, output) = OnnxChecker.Check(_dir);
        Assert.True(exit == 0, $"onnx.checker.check_model(full_check=True) failed:\n{output}");
    }

    /// <summary>The net after a few SGD steps, so that no weight is still at its initial value (a padding row included).</summary>
    private static nn.Module<torch.Tensor, torch.Tensor> Trained(string name)
    {
        manual_seed(11);
        var net = SequenceNets.Build(name);
        net.train();
        using (var sgd = optim.SGD(net.parameters(), 0.5))
            for (int step = 0; step < 3; step++)
            {
                using var stepScope = NewDisposeScope();
                sgd.zero_grad();
                var ids = randint(0, SequenceNets.Vocabulary, [4, 6]);
                nn.functional.cross_entropy(net.call(ids), randint(0, 3, [4])).backward();
                sgd.step();
            }
        net.eval();
        return net;
    }
}
