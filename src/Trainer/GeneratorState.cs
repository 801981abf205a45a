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
/// <c>mt19937::is_valid</c> asks seeded == 1, 1 ≤ left ≤ 624 and next ≤ 624.
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
        if (seeded != 1 || left < 1 || left > MersenneWords || next > MersenneWords)
            throw new ModelFormatException($"{path}: {what} is not a valid mt19937 state (seeded {seeded}, left {left}, next {next}).");
    }
}
