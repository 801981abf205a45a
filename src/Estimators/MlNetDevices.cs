using Microsoft.ML.Runtime;
using MlNetGuide.Training;
using static TorchSharp.torch;

namespace MlNetGuide.Estimators;

/// <summary>Which devices an ML.NET environment asks for: the one rule training and loading share.</summary>
internal static class MlNetDevices
{
    /// <summary>
    /// <c>MLContext.GpuDeviceId</c> first (as Microsoft.ML.TorchSharp does): that GPU and the next ones up to
    /// <paramref name="numGpus"/> (at least one), or the CPU when it is missing and <c>MLContext.FallbackToCpu</c> is
    /// true (an error otherwise). Without a GPU id: the first <paramref name="numGpus"/> GPUs, clamped to those that
    /// exist. Empty means the CPU; <paramref name="warn"/> hears every fallback and clamp.
    /// </summary>
    public static List<Device> Resolve(IHostEnvironment env, int numGpus, Action<string>? warn = null)
    {
        var (gpuId, fallback) = MlNetInternals.DeviceSettings(env);
        if (gpuId is not int id) return Devices.TakeGpus(numGpus, log: warn);
        int available = Devices.NumGpus();
        if (id < available) return Devices.TakeGpus(Math.Max(1, numGpus), id, warn);
        if (!fallback)
            throw new InvalidOperationException(
                $"MLContext.GpuDeviceId is {id} but {(available == 0 ? "CUDA is not available (CPU build of TorchSharp, or no GPU/driver)" : $"only {available} GPU(s) exist")}. " +
                "Set MLContext.FallbackToCpu = true to use the CPU instead, or build with -p:TorchBackend=cuda on a machine with a GPU.");
        warn?.Invoke($"GPU {id} is not available; falling back to the CPU (MLContext.FallbackToCpu).");
        return [];
    }

    /// <summary>The one device a loaded model scores on: the CPU unless <c>MLContext.GpuDeviceId</c> names a GPU (see <see cref="Resolve"/>).</summary>
    public static Device ForScoring(IHostEnvironment env) =>
        MlNetInternals.DeviceSettings(env).gpuDeviceId is not null && Resolve(env, 1) is [var gpu, ..] ? gpu : CPU;
}
