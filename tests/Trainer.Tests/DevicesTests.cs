using MlNetGuide.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Training.Tests;

/// <summary>6.7 GPUs, on a machine without one.</summary>
public class DevicesTests
{
    [Fact]
    public void NamingDevicesNeverThrowsOnACpuOnlyMachine()
    {
        Assert.Equal(DeviceType.CPU, Devices.Cpu().type);
        var gpu = Devices.Gpu(1);
        Assert.Equal(DeviceType.CUDA, gpu.type);
        Assert.Equal(1, gpu.index);
        Assert.Equal("cuda:1", Devices.Name(gpu));
        Assert.Equal(0, Devices.NumGpus());
    }

    [Fact]
    public void TryGpuFallsBackToCpuAndTryAllGpusIsNeverEmpty()
    {
        Assert.Equal(DeviceType.CPU, Devices.TryGpu().type);
        Assert.Equal(DeviceType.CPU, Devices.TryGpu(10).type);
        var all = Devices.TryAllGpus();
        Assert.Single(all); // d2l returns [] here: a known bug
        Assert.Equal(DeviceType.CPU, all[0].type);
    }

    [Fact]
    public void PuttingDataOnAMissingGpuFailsWithAClearMessage()
    {
        var ex = Assert.ThrowsAny<Exception>(() => zeros(new long[] { 2 }, device: Devices.Gpu(0)));
        Assert.Contains("CUDA", ex.Message);
    }

    [Fact]
    public void TensorsOnTwoDevicesFailNamingBoth()
    {
        using var a = zeros(2);
        using var b = zeros(new long[] { 2 }, device: new Device(DeviceType.META));
        var ex = Assert.Throws<DeviceMismatchException>(() => Devices.EnsureSameDevice(a, b, "input", "weight"));
        Assert.Equal("Input is on cpu but weight is on meta; move one with .to(device) first.", ex.Message);
    }

    [Fact]
    public void NegativeGpuIndexIsRejected() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => Devices.Gpu(-1));
}
