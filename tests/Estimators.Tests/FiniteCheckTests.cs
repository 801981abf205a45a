namespace MlNetGuide.Estimators.Tests;

/// <summary>The row copy that checks for NaN and infinity on the way, at every length and alignment the vector loop and its tail cover.</summary>
public class FiniteCheckTests
{
    public static TheoryData<int, int> Shapes()
    {
        var data = new TheoryData<int, int>();
        foreach (int length in new[] { 0, 1, 7, 15, 16, 17, 31, 64, 100, 784 })
            foreach (int offset in new[] { 0, 1, 3, 5 }) // destination starts off a vector boundary: body and tail
                data.Add(length, offset);
        return data;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void CopiesExactlyAndFindsEveryNonFiniteValueWhereverItIs(int length, int offset)
    {
        var rng = new Random(length * 31 + offset);
        var source = Enumerable.Range(0, length).Select(_ => (float)(rng.NextDouble() * 200 - 100)).ToArray();
        var destination = new float[length + offset + 3];
        destination.AsSpan().Fill(-7f);

        Assert.True(FiniteCheck.CopyAll(source, destination.AsSpan(offset)));
        Assert.Equal(source, destination.AsSpan(offset, length).ToArray());
        Assert.All(destination[..offset], v => Assert.Equal(-7f, v));        // nothing written before
        Assert.All(destination[(offset + length)..], v => Assert.Equal(-7f, v)); // nor after
        Assert.True(FiniteCheck.All(source));

        foreach (float bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
            for (int at = 0; at < length; at++)
            {
                var dirty = (float[])source.Clone();
                dirty[at] = bad;
                Assert.False(FiniteCheck.CopyAll(dirty, destination.AsSpan(offset)), $"{bad} at {at}");
                Assert.False(FiniteCheck.All(dirty));
                Assert.Equal(BitConverter.SingleToInt32Bits(bad), BitConverter.SingleToInt32Bits(destination[offset + at]));
            }
    }

    [Fact]
    public void ExtremeFiniteValuesAreFinite()
    {
        float[] values = [float.MaxValue, float.MinValue, float.Epsilon, -float.Epsilon, 0f, -0f, 1e-45f, 3e38f];
        var destination = new float[values.Length * 8];
        var wide = Enumerable.Repeat(values, 8).SelectMany(v => v).ToArray(); // long enough for the vector paths
        Assert.True(FiniteCheck.All(wide));
        Assert.True(FiniteCheck.CopyAll(wide, destination));
        Assert.Equal(wide, destination);
    }

    [Fact]
    public void AShortDestinationIsRefused()
    {
        Assert.Throws<ArgumentException>(() => FiniteCheck.CopyAll(new float[20], new float[19]));
    }
}
