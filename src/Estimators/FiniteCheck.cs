using System.Numerics;

namespace MlNetGuide.Estimators;

/// <summary>
/// Is every value finite? One SIMD pass: x·0 is 0 for finite x and NaN for NaN or ±∞, and a NaN survives the sum.
/// The copying variants check a row while they move it into a batch, so it is never read twice.
/// </summary>
internal static class FiniteCheck
{
    public static bool All(ReadOnlySpan<float> values)
    {
        var acc = Vector<float>.Zero;
        int i = 0, width = Vector<float>.Count;
        for (; i <= values.Length - width; i += width)
            acc += new Vector<float>(values.Slice(i, width)) * Vector<float>.Zero;
        float tail = 0;
        for (; i < values.Length; i++) tail += values[i] * 0f;
        return Vector.EqualsAll(acc, Vector<float>.Zero) && tail == 0f;
    }

    /// <summary>
    /// Copies <paramref name="source"/> to the start of <paramref name="destination"/> and says whether every value is
    /// finite, in the same pass.
    /// </summary>
    public static bool CopyAll(ReadOnlySpan<float> source, Span<float> destination)
    {
        if (destination.Length < source.Length) throw new ArgumentException("The destination is shorter than the source.", nameof(destination));
        var acc = Vector<float>.Zero;
        int i = 0, width = Vector<float>.Count;
        for (; i <= source.Length - width; i += width)
        {
            var v = new Vector<float>(source.Slice(i, width));
            v.CopyTo(destination.Slice(i, width));
            acc += v * Vector<float>.Zero;
        }
        float tail = 0;
        for (; i < source.Length; i++)
        {
            destination[i] = source[i];
            tail += source[i] * 0f;
        }
        return Vector.EqualsAll(acc, Vector<float>.Zero) && tail == 0f;
    }
}
