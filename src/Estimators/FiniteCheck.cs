using System.Numerics;

namespace MlNetGuide.Estimators;

/// <summary>Is every value finite? One SIMD pass: x·0 is 0 for finite x and NaN for NaN or ±∞, and a NaN survives the sum.</summary>
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
}
