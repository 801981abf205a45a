using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using MlNetGuide.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Training;

/// <summary>
/// Lazy Adam's update (<see cref="Adam"/>'s, for a row-sparse gradient) in one pass over CPU memory: the repeated rows
/// are summed into a scratch buffer and each touched row's moments and weights move in place. libtorch's way is about
/// fifteen ops (unique's sort, index_add_, two index_select and index_copy_ pairs, the arithmetic on the gathered rows),
/// each allocating; TorchSharp binds no fused sparse Adam, so this loop is written here. It does the same arithmetic in
/// float32 as the tensor path, which stays for other devices.
/// </summary>
internal static unsafe class FusedSparseAdam
{
    /// <summary>Whether the parameter, its gradient and its moments are all contiguous float32 tensors in CPU memory.</summary>
    public static bool Applies(Tensor p, Tensor gradient, Tensor expAvg, Tensor expAvgSq) =>
        HostMemory.IsHostFloats(p) && HostMemory.IsHostFloats(expAvg) && HostMemory.IsHostFloats(expAvgSq) && p.dim() >= 1
        && gradient.device_type == DeviceType.CPU && gradient.dtype == ScalarType.Float32;

    /// <summary>
    /// One step. <paramref name="rowSlots"/> is the parameter's scratch map from a row to its place among the touched ones
    /// (-1 for none), as long as the parameter has rows; it is left all -1.
    /// </summary>
    /// <param name="p">The parameter [rows, …].</param>
    /// <param name="gradient">Its row-sparse COO gradient (rows may repeat).</param>
    /// <param name="expAvg">m, shaped as <paramref name="p"/>.</param>
    /// <param name="expAvgSq">v, shaped as <paramref name="p"/>.</param>
    /// <param name="rowSlots">The scratch map, one entry per row of <paramref name="p"/>, all -1.</param>
    /// <param name="step">The parameter's step count, this step included (the bias correction's t).</param>
    /// <param name="lr">Learning rate.</param>
    /// <param name="beta1">β₁.</param>
    /// <param name="beta2">β₂.</param>
    /// <param name="eps">ε.</param>
    /// <param name="decay">λ: an L2 term in the gradient, or (<paramref name="decoupled"/>) AdamW's shrink of the touched rows.</param>
    /// <param name="decoupled">AdamW's decay rather than Adam's L2 term.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: optimized from the first call, not after 30 slow ones
    public static void Step(Tensor p, Tensor gradient, Tensor expAvg, Tensor expAvgSq, int[] rowSlots, long step,
        double lr, double beta1, double beta2, double eps, double decay, bool decoupled)
    {
        using var scope = NewDisposeScope();
        var indexTensor = gradient.SparseIndices;
        if (indexTensor.shape[0] != 1)
            throw new NotSupportedException($"A sparse gradient over {indexTensor.shape[0]} dimensions; only row-sparse ones (an embedding's) are supported.");
        var rowIndex = indexTensor[0].contiguous();
        var values = gradient.SparseValues.contiguous();
        long entries = rowIndex.shape[0], rows = p.shape[0];
        if (entries == 0) return;
        long width = p.numel() / rows;
        if (values.numel() != entries * width)
            throw new ArgumentException($"A sparse gradient of {values.numel()} values for {entries} rows of {width}.", nameof(gradient));
        long* index = HostMemory.Longs(rowIndex);
        float* g = HostMemory.Floats(values), w = HostMemory.Floats(p), m = HostMemory.Floats(expAvg), v = HostMemory.Floats(expAvgSq);

        // Mark the distinct rows, then number them in ascending order, so the update below walks w, m and v forwards.
        var touched = ArrayPool<int>.Shared.Rent((int)Math.Min(entries, rows));
        float[]? sums = null;
        int count = 0;
        try
        {
            for (long e = 0; e < entries; e++)
            {
                long r = index[e];
                if ((ulong)r >= (ulong)rows) throw new ArgumentOutOfRangeException(nameof(gradient), $"A sparse gradient names row {r} of a parameter with {rows}.");
                if (rowSlots[r] < 0) { rowSlots[r] = int.MaxValue; touched[count++] = (int)r; }
            }
            if ((long)count * 32 >= rows) // dense enough: a scan of the map is cheaper than a sort
            {
                count = 0;
                for (int r = 0; r < rows; r++) if (rowSlots[r] >= 0) touched[count++] = r;
            }
            else Array.Sort(touched, 0, count);
            for (int k = 0; k < count; k++) rowSlots[touched[k]] = k;

            sums = ArrayPool<float>.Shared.Rent(checked((int)(count * width)));
            Array.Clear(sums, 0, (int)(count * width));
            fixed (float* sum = sums)
            {
                for (long e = 0; e < entries; e++)
                    Add(sum + rowSlots[index[e]] * width, g + e * width, width);
                var c = new Constants(step, lr, beta1, beta2, eps, decay, decoupled);
                for (int k = 0; k < count; k++)
                {
                    long at = touched[k] * width;
                    Update(w + at, m + at, v + at, sum + k * width, width, c);
                }
            }
        }
        finally
        {
            for (int k = 0; k < count; k++) rowSlots[touched[k]] = -1;
            if (sums is not null) ArrayPool<float>.Shared.Return(sums);
            ArrayPool<int>.Shared.Return(touched);
        }
    }

    private readonly struct Constants(long step, double lr, double beta1, double beta2, double eps, double decay, bool decoupled)
    {
        public readonly float B1 = (float)beta1, B2 = (float)beta2, C1 = (float)(1 - beta1), C2 = (float)(1 - beta2), Eps = (float)eps;
        public readonly float SqrtBc2 = (float)Math.Sqrt(1 - Math.Pow(beta2, step)), StepSize = (float)(-lr / (1 - Math.Pow(beta1, step)));

        /// <summary>λ in the gradient (Adam's L2 term), 0 for none.</summary>
        public readonly float L2 = decoupled ? 0 : (float)decay;

        /// <summary>−lr·λ, AdamW's shrink of a row, 0 for none.</summary>
        public readonly float Shrink = decoupled ? (float)(-lr * decay) : 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Add(float* to, float* from, long width)
    {
        long j = 0;
        if (Vector.IsHardwareAccelerated)
            for (; j + Vector<float>.Count <= width; j += Vector<float>.Count)
                Vector.Store(Vector.Load(to + j) + Vector.Load(from + j), to + j);
        for (; j < width; j++) to[j] += from[j];
    }

    /// <summary>One row: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², w ← w + stepSize·m / (√v / √bc₂ + ε) (+ −lr·λ·w).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Update(float* w, float* m, float* v, float* g, long width, in Constants c)
    {
        long j = 0;
        if (Vector.IsHardwareAccelerated)
        {
            Vector<float> b1 = new(c.B1), b2 = new(c.B2), c1 = new(c.C1), c2 = new(c.C2), eps = new(c.Eps), sqrtBc2 = new(c.SqrtBc2),
                stepSize = new(c.StepSize), l2 = new(c.L2), shrink = new(c.Shrink);
            for (; j + Vector<float>.Count <= width; j += Vector<float>.Count)
            {
                var weight = Vector.Load(w + j);
                var grad = Vector.Load(g + j) + l2 * weight;
                var mj = b1 * Vector.Load(m + j) + c1 * grad;
                var vj = b2 * Vector.Load(v + j) + c2 * grad * grad;
                Vector.Store(mj, m + j);
                Vector.Store(vj, v + j);
                Vector.Store(weight + mj / (Vector.SquareRoot(vj) / sqrtBc2 + eps) * stepSize + shrink * weight, w + j);
            }
        }
        for (; j < width; j++)
        {
            float weight = w[j], grad = g[j] + c.L2 * weight;
            float mj = m[j] = c.B1 * m[j] + c.C1 * grad;
            float vj = v[j] = c.B2 * v[j] + c.C2 * grad * grad;
            w[j] = weight + mj / (MathF.Sqrt(vj) / c.SqrtBc2 + c.Eps) * c.StepSize + c.Shrink * weight;
        }
    }
}
