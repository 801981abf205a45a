using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// The memory of a contiguous CPU tensor, for loops that read or write it in place. TorchSharp's <c>Tensor.bytes</c>
/// is that memory as a span, but a span's length is an int; a one-row view's span starts at the same address and stays
/// short, so tensors past 2 GiB are reachable too.
/// </summary>
internal static class HostMemory
{
    /// <summary>Whether <paramref name="t"/> is a contiguous float32 tensor in CPU memory (what <see cref="Floats"/> takes).</summary>
    public static bool IsHostFloats(Tensor t) =>
        t.device_type == DeviceType.CPU && t.dtype == ScalarType.Float32 && !t.is_sparse && t.is_contiguous();

    /// <summary>The address of <paramref name="t"/>'s first float; valid while the tensor lives and is not resized.</summary>
    /// <exception cref="ArgumentException">Not a contiguous float32 CPU tensor.</exception>
    public static unsafe float* Floats(Tensor t)
    {
        if (!IsHostFloats(t))
            throw new ArgumentException($"A contiguous float32 CPU tensor is needed; got {t.dtype} on {t.device_type}{(t.is_contiguous() ? "" : ", not contiguous")}.", nameof(t));
        if (t.numel() == 0) return null;
        using var flat = t.view(-1);
        using var head = flat.narrow(0, 0, 1);
        return (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(head.bytes));
    }

    /// <summary>The address of a contiguous int64 CPU tensor's first element (sparse indices).</summary>
    /// <exception cref="ArgumentException">Not a contiguous int64 CPU tensor.</exception>
    public static unsafe long* Longs(Tensor t)
    {
        if (t.device_type != DeviceType.CPU || t.dtype != ScalarType.Int64 || t.is_sparse || !t.is_contiguous())
            throw new ArgumentException($"A contiguous int64 CPU tensor is needed; got {t.dtype} on {t.device_type}.", nameof(t));
        if (t.numel() == 0) return null;
        using var flat = t.view(-1);
        using var head = flat.narrow(0, 0, 1);
        return (long*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(head.bytes));
    }
}
