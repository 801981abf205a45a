using MlNetGuide.Training;
using static TorchSharp.torch;

namespace MlNetGuide.Estimators;

/// <summary>
/// Training batches of token rows held in memory, of similar lengths so that padding costs little: every epoch the rows
/// are shuffled (seeded by the seed and the epoch), cut into windows of 16 batches, sorted by length within each
/// window, cut into batches, and the batches shuffled. Each batch is one gather; <see cref="TokenIdsInput"/> then cuts
/// it to its longest row. References the rows, owns nothing.
/// </summary>
internal sealed class LengthBuckets
{
    private const int WindowBatches = 16;
    private readonly Tensor _x, _y;
    private readonly int[] _lengths;
    private readonly int _batchSize, _seed;

    /// <param name="rows">(token slots [n, MaxTokens] with trailing zeros as padding, labels [n]).</param>
    /// <param name="batchSize">Rows per batch.</param>
    /// <param name="seed">Shuffle seed (with the epoch).</param>
    public LengthBuckets(Tensor[] rows, int batchSize, int seed)
    {
        (_x, _y, _batchSize, _seed) = (rows[0], rows[1], batchSize, seed);
        _lengths = Lengths(_x);
    }

    /// <summary>Batches per epoch.</summary>
    public int Count => (_lengths.Length + _batchSize - 1) / _batchSize;

    /// <summary>Each row's length: its last token's position + 1 (0 for a row of padding).</summary>
    public static int[] Lengths(Tensor slots)
    {
        using var lengths = TokenIdsInput.Lengths(slots);
        return lengths.data<long>().ToArray().Select(l => (int)l).ToArray();
    }

    /// <summary>The fraction of token slots that are padding in <paramref name="batches"/> of row indices, each cut to its longest row.</summary>
    public double PaddingFraction(IEnumerable<int[]> batches)
    {
        long slots = 0, tokens = 0;
        foreach (var b in batches)
        {
            int longest = Math.Max(1, b.Max(i => _lengths[i]));
            slots += (long)longest * b.Length;
            tokens += b.Sum(i => (long)_lengths[i]);
        }
        return slots == 0 ? 0 : 1 - (double)tokens / slots;
    }

    /// <summary>Epoch <paramref name="epoch"/>'s batches as row indices (bucketed by length, or in a plain shuffle for comparison).</summary>
    public List<int[]> Order(int epoch, bool bucket = true)
    {
        var random = new Random(unchecked(_seed * 486187739 + epoch * 16777619 + 0x3c6ef372));
        var rows = Enumerable.Range(0, _lengths.Length).ToArray();
        random.Shuffle(rows);
        var batches = new List<int[]>();
        int window = _batchSize * WindowBatches;
        for (int start = 0; start < rows.Length; start += window)
        {
            var part = rows.AsSpan(start, Math.Min(window, rows.Length - start)).ToArray();
            if (bucket) Array.Sort(part, (a, b) => _lengths[b].CompareTo(_lengths[a]));
            for (int i = 0; i < part.Length; i += _batchSize) batches.Add(part[i..Math.Min(part.Length, i + _batchSize)]);
        }
        if (bucket)
        {
            var shuffled = batches.ToArray();
            random.Shuffle(shuffled); // long and short batches mixed through the epoch
            return [.. shuffled];
        }
        return batches;
    }

    /// <summary>Epoch <paramref name="epoch"/>'s batches.</summary>
    public IEnumerable<Batch> Epoch(int epoch)
    {
        foreach (var rows in Order(epoch))
        {
            using var index = tensor(rows.Select(i => (long)i).ToArray());
            yield return new Batch(_x.index_select(0, index).DetachFromDisposeScope(), _y.index_select(0, index).DetachFromDisposeScope());
        }
    }
}
