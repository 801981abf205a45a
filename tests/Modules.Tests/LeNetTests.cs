using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules.Tests;

/// <summary>D2L 7.6 LeNet, and initializers on convolution kernels (fans as PyTorch computes them).</summary>
public class LeNetTests
{
    [Fact]
    public void LayerSummaryMatchesTheBooksTableForOneImage()
    {
        // d2l 7.6: model.layer_summary((1, 1, 28, 28)).
        using var net = new LeNet(style: LeNetStyle.Book);
        var rows = net.LayerSummary(1, 1, 28, 28);
        var expected = new (string, long[])[]
        {
            ("Conv2d", [1, 6, 28, 28]), ("Sigmoid", [1, 6, 28, 28]), ("AvgPool2d", [1, 6, 14, 14]),
            ("Conv2d", [1, 16, 10, 10]), ("Sigmoid", [1, 16, 10, 10]), ("AvgPool2d", [1, 16, 5, 5]),
            ("Flatten", [1, 400]), ("LazyLinear", [1, 120]), ("Sigmoid", [1, 120]),
            ("LazyLinear", [1, 84]), ("Sigmoid", [1, 84]), ("LazyLinear", [1, 10]),
        };
        Assert.Equal(expected.Select(e => e.Item1), rows.Select(r => r.Layer));
        Assert.Equal(expected.Select(e => string.Join(",", e.Item2)), rows.Select(r => string.Join(",", r.OutputShape)));
        Assert.StartsWith("Conv2d output shape:", ModuleSummary.DescribeShapes(rows));
        // The summary's dry run sized the lazy layers: the first dense layer takes 16 x 5 x 5 = 400 inputs.
        Assert.Equal(new long[] { 120, 400 }, ((LazyLinear)net.Layers[7]).weight.shape);
    }

    [Fact]
    public void ModernLeNetUsesReluAndMaxPoolingWithTheSameShapes()
    {
        using var net = new LeNet();
        var rows = net.LayerSummary();
        Assert.Equal(["Conv2d", "ReLU", "MaxPool2d"], rows.Take(3).Select(r => r.Layer));
        Assert.Equal(new long[] { 1, 10 }, rows[^1].OutputShape);
    }

    [Fact]
    public void ParameterCountIsLeCunsSixtyOneThousandSevenHundredAndSix()
    {
        // conv1 6·1·25+6 = 156, conv2 16·6·25+16 = 2,416, fc 400·120+120 = 48,120, 120·84+84 = 10,164, 84·10+10 = 850.
        Assert.Equal(61_706, LeNet.ParameterCount(10, 1, 28, 28));
        using var net = new LeNet();
        net.LayerSummary(); // materialize the lazy layers
        Assert.Equal(61_706, ModuleSummary.CountParameters(net));
    }

    [Fact]
    public void FlatRowsAreImagesAndOtherWidthsAreRefused()
    {
        using var net = new LeNet();
        using var g = new Generator(3);
        using var images = rand(new long[] { 2, 1, 28, 28 }, generator: g);
        using var rows = images.reshape(2, 784);
        using var fromImages = net.call(images);
        using var fromRows = net.call(rows);
        Assert.True(fromImages.equal(fromRows).all().item<bool>());
        using var wrong = zeros(2, 785);
        var ex = Assert.Throws<ArgumentException>(() => net.call(wrong));
        Assert.Contains("rows of 784 pixels", ex.Message);
    }

    [Fact]
    public void FansOfAConvolutionKernelCountItsReceptiveField()
    {
        // PyTorch's _calculate_fan_in_and_fan_out: (out, in, kh, kw) -> (in·kh·kw, out·kh·kw).
        Assert.Equal((150.0, 400.0), Initializer.Fans([16, 6, 5, 5]));
        Assert.Equal((784.0, 256.0), Initializer.Fans([256, 784]));
        Assert.Throws<ArgumentException>(() => Initializer.Fans([10]));
    }

    [Fact]
    public void KaimingAndXavierOnConvolutionsFollowPyTorchsFormulas()
    {
        using var conv = nn.Conv2d(64, 128, 3); // fan_in 576, fan_out 1,152; 73,728 weights
        double fanIn = 64 * 9, fanOut = 128 * 9;
        void Check(Initializer init, double std, double? bound)
        {
            conv.ApplyInit(new InitScheme(init, Initializer.Zeros, Seed: 5));
            var w = conv.weight!;
            Assert.InRange(w.std().item<float>(), 0.98 * std, 1.02 * std); // standard error ≈ 0.3 %
            if (bound is double b) Assert.True(w.abs().max().item<float>() <= b * (1 + 1e-6), $"{init}: max |w| above {b}");
            Assert.Equal(0f, conv.bias!.abs().max().item<float>());
        }
        Check(Initializer.KaimingUniform(), Math.Sqrt(2.0 / fanIn), Math.Sqrt(6.0 / fanIn));       // kaiming_uniform_(relu)
        Check(Initializer.KaimingNormal(), Math.Sqrt(2.0 / fanIn), null);                           // kaiming_normal_(relu)
        Check(Initializer.KaimingNormal(FanMode.FanOut), Math.Sqrt(2.0 / fanOut), null);            // mode='fan_out'
        Check(Initializer.XavierUniform(), Math.Sqrt(2.0 / (fanIn + fanOut)), Math.Sqrt(6.0 / (fanIn + fanOut)));
        Check(Initializer.XavierNormal(), Math.Sqrt(2.0 / (fanIn + fanOut)), null);
    }

    [Fact]
    public void InitSchemesReachEveryConvolutionAndDenseLayerOfLeNet()
    {
        using var net = new LeNet();
        net.ApplyInit(zeros(1, 784), InitScheme.ConstantOne);
        var weighted = net.Layers.named_children().Select(c => c.module)
            .Where(m => m is Conv2d or LazyLinear).ToList();
        Assert.Equal(5, weighted.Count);
        foreach (var m in weighted)
            foreach (var (name, p) in m.named_parameters())
                Assert.All(TensorAssert.Values(p), v => Assert.Equal(name == "weight" ? 1f : 0f, v));
    }
}
