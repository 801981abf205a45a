using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Modules.Tests;

/// <summary>Small assertion helpers over tensors.</summary>
internal static class TensorAssert
{
    public static void Equal(Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(expected.equal(actual).all().item<bool>(), $"values differ:\n{expected.ToString(TorchSharp.TensorStringStyle.Numpy)}\nvs\n{actual.ToString(TorchSharp.TensorStringStyle.Numpy)}");
    }

    public static void Close(Tensor expected, Tensor actual, double atol = 1e-5)
    {
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(expected.allclose(actual, rtol: 1e-5, atol: atol), $"values differ:\n{expected.ToString(TorchSharp.TensorStringStyle.Numpy)}\nvs\n{actual.ToString(TorchSharp.TensorStringStyle.Numpy)}");
    }

    public static float[] Values(Tensor t) => t.detach().cpu().to_type(ScalarType.Float32).data<float>().ToArray();

    /// <summary>Live TorchSharp tensors created on this thread and not yet disposed.</summary>
    public static long LiveTensors => DisposeScopeManager.Statistics.ThreadTotalLiveCount;
}
