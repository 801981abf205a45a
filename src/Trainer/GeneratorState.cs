using MlNetGuide.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>
/// Checks a CPU generator's saved state before libtorch sees it: libtorch's <c>set_state</c> rejects a wrong size or an
/// invalid mt19937 state with an error that aborts the process from inside TorchSharp, so nothing may reach it unchecked.
/// </summary>
/// <remarks>
/// Layout (PyTorch's <c>CPUGeneratorImplState</c>, little-endian): <c>uint64 the_initial_seed</c> at 0, <c>int left</c> at 8,
/// <c>int seeded</c> at 12, <c>uint64 next</c> at 16, then the 624 words of the Mersenne twister; libtorch's
/// <c>mt19937::is_valid</c> asks seeded == 1, 1 ≤ left ≤ 624 and next ≤ 624; we ask what a real engine holds (below).
/// </remarks>
internal static class GeneratorState
{
    private const int MersenneWords = 624;
    private static readonly Lazy<int> Size = new(() =>
    {
        using var g = new Generator(0);
        using var state = g.get_state();
        return (int)state.NumberOfElements;
    });

    /// <exception cref="ModelFormatException">The blob is not a state libtorch accepts.</exception>
    public static void Check(byte[] blob, string what, string path)
    {
        if (blob.Length != Size.Value)
            throw new ModelFormatException($"{path}: {what} has {blob.Length} bytes; a CPU generator's state has {Size.Value}.");
        int left = BitConverter.ToInt32(blob, 8), seeded = BitConverter.ToInt32(blob, 12);
        ulong next = BitConverter.ToUInt64(blob, 16);
        // libtorch asks only 1 <= left <= 624 and next <= 624, which lets a crafted (624, 624) read past the state; a real
        // engine is freshly seeded (left 1, next 0) or has left + next = 625 after each refill.
        bool position = (left == 1 && next == 0) || (left is >= 1 and <= MersenneWords && (ulong)left + next == MersenneWords + 1);
        bool words = true, anyNonZero = false;
        for (int i = 0; i < MersenneWords && words; i++)
        {
            ulong w = BitConverter.ToUInt64(blob, 24 + 8 * i);
            words = w >> 32 == 0; // 32-bit words stored in 64 bits
            anyNonZero |= w != 0;
        }
        if (seeded != 1 || !position || !words || !anyNonZero)
            throw new ModelFormatException($"{path}: {what} is not a valid mt19937 state (seeded {seeded}, left {left}, next {next}).");
    }
}
