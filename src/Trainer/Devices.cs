using TorchSharp;
using MlNetGuide.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>
/// 6.7 GPUs: naming devices and finding out which exist. Naming a GPU never initializes CUDA and never throws;
/// only putting data on a missing GPU does, with TorchSharp's message.
/// </summary>
public static class Devices
{
    /// <summary>The CPU (d2l's <c>cpu()</c>).</summary>
    public static Device Cpu()
    {
        TorchSharpRuntime.EnsureLoaded();
        return CPU;
    }

    /// <summary>The GPU with index <paramref name="i"/> (d2l's <c>gpu(i)</c>); may not exist.</summary>
    public static Device Gpu(int i = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(i);
        TorchSharpRuntime.EnsureLoaded();
        return new Device(DeviceType.CUDA, i);
    }

    /// <summary>How many CUDA devices this process can use (0 with the CPU build of TorchSharp).</summary>
    public static int NumGpus()
    {
        TorchSharpRuntime.EnsureLoaded();
        return cuda.is_available() ? cuda.device_count() : 0;
    }

    /// <summary>
    /// GPUs <paramref name="first"/>, <paramref name="first"/> + 1, … up to <paramref name="count"/> of them, clamped to
    /// those that exist (empty: the CPU); when fewer than asked exist, says so through <paramref name="log"/>.
    /// </summary>
    public static List<Device> TakeGpus(int count, int first = 0, Action<string>? log = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfNegative(first);
        int available = Math.Max(0, NumGpus() - first);
        if (count > available)
            log?.Invoke($"{count} GPU(s) requested, {available} available{(first > 0 ? $" from cuda:{first} on" : "")}; using {(available == 0 ? "the CPU" : available.ToString(System.Globalization.CultureInfo.InvariantCulture))}.");
        return Enumerable.Range(first, Math.Min(count, available)).Select(Gpu).ToList();
    }

    /// <summary>GPU <paramref name="i"/> if it exists, else the CPU (d2l's <c>try_gpu(i)</c>).</summary>
    public static Device TryGpu(int i = 0) => NumGpus() >= i + 1 ? Gpu(i) : Cpu();

    /// <summary>All GPUs, or <c>[Cpu()]</c> when there are none (d2l's <c>try_all_gpus()</c> returns <c>[]</c> there: a known bug).</summary>
    public static IReadOnlyList<Device> TryAllGpus()
    {
        int n = NumGpus();
        return n == 0 ? [Cpu()] : Enumerable.Range(0, n).Select(Gpu).ToList();
    }

    /// <summary>A readable device name: <c>cpu</c>, <c>cuda:0</c>, <c>meta</c>.</summary>
    public static string Name(Device device) =>
        device.type == DeviceType.CUDA ? $"cuda:{Math.Max(0, device.index)}" : device.type.ToString().ToLowerInvariant();

    /// <summary>The device a tensor lives on, as a <see cref="Device"/>.</summary>
    public static Device Of(Tensor t) => new(t.device_type, t.device_type == DeviceType.CUDA ? t.device_index : -1);

    /// <summary>True when both name the same device.</summary>
    public static bool Same(Device a, Device b) =>
        a.type == b.type && (a.type != DeviceType.CUDA || Math.Max(0, a.index) == Math.Max(0, b.index));

    /// <summary>
    /// Throws <see cref="DeviceMismatchException"/> naming both devices when <paramref name="a"/> and
    /// <paramref name="b"/> live on different devices (libtorch would fail later with a less helpful error).
    /// </summary>
    public static void EnsureSameDevice(Tensor a, Tensor b, string whatA = "the first tensor", string whatB = "the second tensor")
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        Device da = Of(a), db = Of(b);
        if (!Same(da, db))
            throw new DeviceMismatchException($"{char.ToUpperInvariant(whatA[0])}{whatA[1..]} is on {Name(da)} but {whatB} is on {Name(db)}; move one with .to(device) first.");
    }
}
