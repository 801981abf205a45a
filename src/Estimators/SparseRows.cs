using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.ML.Data;
using MlNetGuide.Modules;
using MlNetGuide.Training;
using static TorchSharp.torch;

namespace MlNetGuide.Estimators;

/// <summary>
/// Rows of a wide, sparsely stored feature column (what FeaturizeText, OneHotEncoding and OneHotHashEncoding write) kept
/// as their non-zeros only — column indices and values per row, 8 bytes a non-zero — and handed to the network as
/// sparse COO batches, which its first <c>nn.Linear</c> multiplies without densifying (libtorch's sparse × dense mm, whose
/// gradient for the weight is dense). Memory and time per epoch follow the non-zeros, not the width.
/// </summary>
internal sealed class SparseRows(int width, bool classIndices)
{
    private readonly List<long> _starts = [0];
    private readonly List<int> _columns = [];
    private readonly List<float> _values = [];
    private readonly List<double> _labels = [];

    /// <summary>The most non-zeros one store holds (its lists are indexed by int).</summary>
    public const long MaxNonZeros = int.MaxValue / 2;

    /// <summary>Rows held.</summary>
    public int Count => _labels.Count;

    /// <summary>Non-zeros held.</summary>
    public long NonZeros => _columns.Count;

    /// <summary>Bytes held: 8 a non-zero (an int32 column, a float32 value), 16 a row (its start, its label).</summary>
    public long Bytes => NonZeros * 8 + Count * 16L;

    /// <summary>Adds a row; false (nothing added) when a value is NaN or infinite.</summary>
    public bool Add(in VBuffer<float> row, double label)
    {
        var values = row.GetValues();
        foreach (var v in values) if (!float.IsFinite(v)) return false;
        if (row.IsDense)
        {
            for (int i = 0; i < values.Length; i++)
                if (values[i] != 0) { _columns.Add(i); _values.Add(values[i]); }
        }
        else
        {
            var indices = row.GetIndices();
            for (int i = 0; i < indices.Length; i++)
                if (values[i] != 0) { _columns.Add(indices[i]); _values.Add(values[i]); }
        }
        _starts.Add(_columns.Count);
        _labels.Add(label);
        return true;
    }

    /// <summary>Batches of <paramref name="batchSize"/> rows per pass.</summary>
    public int Batches(int batchSize) => (Count + batchSize - 1) / batchSize;

    /// <summary>Epoch <paramref name="epoch"/>'s batches, the rows shuffled by a generator seeded with the seed and the epoch.</summary>
    public IEnumerable<Batch> Shuffled(int batchSize, int seed, int epoch)
    {
        var order = Enumerable.Range(0, Count).ToArray();
        new Random(unchecked(seed * 486187739 + epoch * 16777619 + 0x1b873593)).Shuffle(order);
        for (int start = 0; start < Count; start += batchSize)
            yield return Make(order.AsSpan(start, Math.Min(batchSize, Count - start)));
    }

    /// <summary>The rows in order, <paramref name="batchSize"/> at a time (validation).</summary>
    public IEnumerable<Batch> InOrder(int batchSize)
    {
        var all = Enumerable.Range(0, Count).ToArray();
        for (int start = 0; start < Count; start += batchSize)
            yield return Make(all.AsSpan(start, Math.Min(batchSize, Count - start)));
    }

    /// <summary>One batch: a sparse COO tensor [rows, width] (row-major, columns ascending within a row) and the labels.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a copy loop over every non-zero of a batch
    private unsafe Batch Make(ReadOnlySpan<int> rows)
    {
        var starts = CollectionsMarshal.AsSpan(_starts);
        var columns = CollectionsMarshal.AsSpan(_columns);
        var allValues = CollectionsMarshal.AsSpan(_values);
        long nnz = 0;
        foreach (var r in rows) nnz += starts[r + 1] - starts[r];
        using var scope = NewDisposeScope();
        // Written in place: TorchSharp's tensor(array) would clone the arrays, then copy them.
        var coordinates = empty([2, nnz], ScalarType.Int64);
        var values = empty([nnz], ScalarType.Float32);
        if (nnz > 0)
        {
            long* rowOf = HostMemory.Longs(coordinates), columnOf = rowOf + nnz;
            float* valueOf = HostMemory.Floats(values);
            long at = 0;
            for (int i = 0; i < rows.Length; i++)
            {
                int r = rows[i], start = (int)starts[r], count = (int)(starts[r + 1] - start);
                new Span<long>(rowOf + at, count).Fill(i);
                var from = columns.Slice(start, count);
                for (int k = 0; k < count; k++) columnOf[at + k] = from[k];
                allValues.Slice(start, count).CopyTo(new Span<float>(valueOf + at, count));
                at += count;
            }
        }
        var labels = new double[rows.Length];
        for (int i = 0; i < rows.Length; i++) labels[i] = _labels[rows[i]];
        var x = sparse_coo_tensor(coordinates, values, [rows.Length, width]);
        Tensor y = classIndices
            ? tensor(labels.Select(l => (long)l).ToArray(), [rows.Length])
            : tensor(labels.Select(l => (float)l).ToArray(), [rows.Length]);
        return new Batch(x.MoveToOuterDisposeScope(), y.MoveToOuterDisposeScope());
    }
}
