using System.Runtime.InteropServices;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Estimators;

/// <summary>Where a getter reads its row's outputs: a block of results and the row within it.</summary>
internal sealed class ResultRow
{
    public float[] Values = [];
    public bool[] NonFinite = [];
    public int Row;
}

/// <summary>
/// The trained network and what its outputs mean: runs batched forward passes (thread-safe: no_grad and dispose
/// scopes are per thread, the module is only read) and describes and serves the output columns. It owns the module:
/// <see cref="Dispose"/> frees it, so it must not overlap scoring on another thread (as with any ML.NET transformer,
/// dispose it when every consumer is done).
/// </summary>
internal sealed class NeuralScorer : IDisposable
{
    public NeuralScorer(NeuralTask task, nn.Module<Tensor, Tensor> module, Device device, int featureCount, int outputs,
        string featureColumn, string scoreColumn, string? probabilityColumn, string? predictedLabelColumn, KeyValues? keyValues, int vocabulary = 0,
        string? tokenKeys = null, TokenText? text = null, bool sparseInput = false)
    {
        SparseInput = sparseInput && vocabulary == 0;
        Vocabulary = vocabulary;
        Text = text;
        TokenKeys = tokenKeys;
        Task = task;
        Module = module;
        Device = device;
        FeatureCount = featureCount;
        Outputs = outputs;
        FeatureColumn = featureColumn;
        ScoreColumn = scoreColumn;
        ProbabilityColumn = probabilityColumn;
        PredictedLabelColumn = predictedLabelColumn;
        KeyValues = keyValues;
        module.eval();
    }

    public NeuralTask Task { get; }

    /// <summary>
    /// Whether batches go to the network as sparse COO tensors of the rows' non-zeros (a wide column and a network that
    /// reads them as they are, <see cref="NetworkArchitecture.ReadsSparse"/>), as in training: no dense rows of the
    /// column's width are filled or multiplied.
    /// </summary>
    public bool SparseInput { get; }
    public nn.Module<Tensor, Tensor> Module { get; }
    public Device Device { get; }
    public int FeatureCount { get; }

    /// <summary>For a network over a token column: its ids (the key count + 1); 0 for numeric features.</summary>
    public int Vocabulary { get; }

    /// <summary>For a token network, the digest of the training key mapping's values (<see cref="KeyValues.Digest"/>), or null.</summary>
    public string? TokenKeys { get; }

    /// <summary>For a token network, the text column its tokens came from (what a plain zip's tokenizer model splits), or null when unknown.</summary>
    public TokenText? Text { get; }

    /// <summary>Reads the feature column of <paramref name="row"/> as this network's input rows are laid out.</summary>
    public ColumnChecks.FeatureRead FeatureReader(DataViewRow row) => ColumnChecks.FeatureReader(row, row.Schema[FeatureColumn], FeatureCount, Vocabulary);
    public int Outputs { get; }
    public string FeatureColumn { get; }
    public string ScoreColumn { get; }
    public string? ProbabilityColumn { get; }
    public string? PredictedLabelColumn { get; }
    public KeyValues? KeyValues { get; }

    private long _forwardPasses;

    /// <summary>Forward passes run so far (tests use it to prove scoring is batched).</summary>
    public long ForwardPasses => Interlocked.Read(ref _forwardPasses);

    /// <summary>Values stored per row: K probabilities for multiclass, one number otherwise.</summary>
    public int Width => Task == NeuralTask.MulticlassClassification ? Outputs : 1;

    /// <summary>A CPU tensor of <paramref name="rows"/> x features that readers fill through <see cref="Rows"/>.</summary>
    public Tensor NewInput(int rows) => empty(rows, FeatureCount).DetachFromDisposeScope();

    private volatile bool _disposed;

    /// <summary>The memory of an input tensor from <see cref="NewInput"/>, row-major.</summary>
    public static Span<float> Rows(Tensor input) => MemoryMarshal.Cast<byte, float>(input.bytes);

    /// <summary>
    /// One forward pass over the first <paramref name="rows"/> rows of <paramref name="input"/>; fills
    /// <paramref name="result"/>. <paramref name="nonFinite"/> flags the rows the reader found a NaN or infinity in
    /// (empty: none); they are zeroed for the pass and get NaN outputs, so they cannot affect other rows.
    /// </summary>
    public void Score(Tensor input, int rows, ResultRow result, ReadOnlySpan<bool> nonFinite)
    {
        ObjectDisposedException.ThrowIf(_disposed, typeof(NeuralNetworkTransformer));
        if (result.Values.Length < rows * Width) result.Values = new float[rows * Width];
        if (result.NonFinite.Length < rows) result.NonFinite = new bool[rows];
        if (nonFinite.IsEmpty)
            Array.Clear(result.NonFinite, 0, rows);
        else
        {
            nonFinite[..rows].CopyTo(result.NonFinite);
            var memory = Rows(input);
            for (int r = 0; r < rows; r++)
                if (nonFinite[r]) memory.Slice(r * FeatureCount, FeatureCount).Clear();
        }
        using (var scope = NewDisposeScope())
            Forward(rows == input.shape[0] ? input : input.narrow(0, 0, rows), rows, result);
        for (int r = 0; r < nonFinite.Length && r < rows; r++)
            if (nonFinite[r]) result.Values.AsSpan(r * Width, Width).Fill(float.NaN);
    }

    /// <summary>
    /// <see cref="Score"/> for <see cref="SparseInput"/>: row r's non-zeros are <paramref name="columns"/> and
    /// <paramref name="values"/> from <paramref name="starts"/>[r] to <paramref name="starts"/>[r + 1] (columns ascending
    /// within a row); a row flagged in <paramref name="nonFinite"/> goes in empty and gets NaN outputs.
    /// </summary>
    public void ScoreSparse(List<int> starts, List<int> columns, List<float> values, int rows, ResultRow result, ReadOnlySpan<bool> nonFinite)
    {
        ObjectDisposedException.ThrowIf(_disposed, typeof(NeuralNetworkTransformer));
        if (result.Values.Length < rows * Width) result.Values = new float[rows * Width];
        if (result.NonFinite.Length < rows) result.NonFinite = new bool[rows];
        if (nonFinite.IsEmpty) Array.Clear(result.NonFinite, 0, rows);
        else nonFinite[..rows].CopyTo(result.NonFinite);
        long nnz = 0;
        for (int r = 0; r < rows; r++)
            if (nonFinite.IsEmpty || !nonFinite[r]) nnz += starts[r + 1] - starts[r];
        var coordinates = new long[2 * nnz];
        var kept = new float[nnz];
        long at = 0;
        for (int r = 0; r < rows; r++)
        {
            if (!nonFinite.IsEmpty && nonFinite[r]) continue;
            for (int k = starts[r]; k < starts[r + 1]; k++, at++)
            {
                coordinates[at] = r;
                coordinates[nnz + at] = columns[k];
                kept[at] = values[k];
            }
        }
        using (var scope = NewDisposeScope())
            Forward(sparse_coo_tensor(tensor(coordinates, [2, nnz]), tensor(kept, [nnz]), [rows, FeatureCount]), rows, result);
        for (int r = 0; r < nonFinite.Length && r < rows; r++)
            if (nonFinite[r]) result.Values.AsSpan(r * Width, Width).Fill(float.NaN);
    }

    /// <summary>One forward pass over <paramref name="x"/> (<paramref name="rows"/> rows) into <paramref name="result"/>'s values; call it inside a dispose scope.</summary>
    private void Forward(Tensor x, int rows, ResultRow result)
    {
        Interlocked.Increment(ref _forwardPasses);
        using (no_grad())
        {
            if (Device.type != DeviceType.CPU) x = x.to(Device);
            var output = Module.call(x);
            if (output.dim() == 1) output = output.unsqueeze(1);
            if (output.shape[0] != rows || output.shape[1] != Outputs)
                throw new InvalidOperationException(
                    $"The network returned shape [{string.Join(", ", output.shape)}] for {rows} rows; the {Task} task needs [{rows}, {Outputs}].");
            if (Task == NeuralTask.MulticlassClassification) output = nn.functional.softmax(output, 1);
            output = output.to_type(ScalarType.Float32).cpu().contiguous();
            MemoryMarshal.Cast<byte, float>(output.bytes).CopyTo(result.Values.AsSpan(0, rows * Width));
        }
    }

    /// <summary>The output columns, in order, with their types and annotations.</summary>
    public void AddOutputColumns(DataViewSchema.Builder builder) =>
        AddOutputColumns(builder, Task, Outputs, ScoreColumn, ProbabilityColumn, PredictedLabelColumn, KeyValues);

    /// <summary>Describes the output columns of a network for <paramref name="task"/> (also before there is one).</summary>
    public static void AddOutputColumns(DataViewSchema.Builder builder, NeuralTask task, int outputs, string scoreColumn,
        string? probabilityColumn, string? predictedLabelColumn, KeyValues? keyValues)
    {
        if (task == NeuralTask.MulticlassClassification)
        {
            var score = ScoreKindBuilder("MulticlassClassification", "Score");
            if (keyValues is { } values && values.Count == outputs) values.AddScoreAnnotations(score);
            builder.AddColumn(scoreColumn, new VectorDataViewType(NumberDataViewType.Single, outputs), score.ToAnnotations());
            var label = ScoreKindBuilder("MulticlassClassification", "PredictedLabel");
            keyValues?.AddTo(label);
            builder.AddColumn(predictedLabelColumn!, new KeyDataViewType(typeof(uint), outputs), label.ToAnnotations());
        }
        else if (task == NeuralTask.BinaryClassification)
        {
            builder.AddColumn(scoreColumn, NumberDataViewType.Single, ScoreKind("BinaryClassification", "Score"));
            var probability = ScoreKindBuilder("BinaryClassification", "Probability");
            // What ML.NET's calibrated binary trainers put on Probability: its values lie in [0, 1].
            probability.Add("IsNormalized", BooleanDataViewType.Instance, (ValueGetter<bool>)((ref bool v) => v = true));
            builder.AddColumn(probabilityColumn!, NumberDataViewType.Single, probability.ToAnnotations());
            builder.AddColumn(predictedLabelColumn!, BooleanDataViewType.Instance, ScoreKind("BinaryClassification", "PredictedLabel"));
        }
        else
            builder.AddColumn(scoreColumn, NumberDataViewType.Single, ScoreKind("Regression", "Score"));
    }

    private static DataViewSchema.Annotations ScoreKind(string kind, string valueKind) => ScoreKindBuilder(kind, valueKind).ToAnnotations();

    private static DataViewSchema.Annotations.Builder ScoreKindBuilder(string kind, string valueKind)
    {
        var b = new DataViewSchema.Annotations.Builder();
        b.Add("ScoreColumnKind", TextDataViewType.Instance, (ValueGetter<ReadOnlyMemory<char>>)((ref ReadOnlyMemory<char> v) => v = kind.AsMemory()));
        b.Add("ScoreValueKind", TextDataViewType.Instance, (ValueGetter<ReadOnlyMemory<char>>)((ref ReadOnlyMemory<char> v) => v = valueKind.AsMemory()));
        return b;
    }

    /// <summary>Number of output columns.</summary>
    public int OutputColumnCount => Task switch { NeuralTask.MulticlassClassification => 2, NeuralTask.BinaryClassification => 3, _ => 1 };

    /// <summary>A getter for output column <paramref name="index"/> (0-based among the outputs) reading from <paramref name="row"/>.</summary>
    public Delegate Getter(int index, ResultRow row)
    {
        int k = Outputs;
        switch (Task, index)
        {
            case (NeuralTask.MulticlassClassification, 0):
                return (ValueGetter<VBuffer<float>>)((ref VBuffer<float> dst) =>
                {
                    var editor = VBufferEditor.Create(ref dst, k);
                    row.Values.AsSpan(row.Row * k, k).CopyTo(editor.Values);
                    dst = editor.Commit();
                });
            case (NeuralTask.MulticlassClassification, 1):
                return (ValueGetter<uint>)((ref uint dst) =>
                {
                    if (row.NonFinite[row.Row]) { dst = 0; return; }
                    var p = row.Values.AsSpan(row.Row * k, k);
                    int best = 0;
                    for (int i = 0; i < k; i++)
                    {
                        if (float.IsNaN(p[i])) { dst = 0; return; } // NaN scores (the network overflowed): the missing key
                        if (p[i] > p[best]) best = i;
                    }
                    dst = (uint)best + 1;
                });
            case (NeuralTask.BinaryClassification, 1):
                return (ValueGetter<float>)((ref float dst) => dst = 1f / (1f + MathF.Exp(-row.Values[row.Row])));
            case (NeuralTask.BinaryClassification, 2):
                return (ValueGetter<bool>)((ref bool dst) => dst = row.Values[row.Row] > 0);
            case (_, 0):
                return (ValueGetter<float>)((ref float dst) => dst = row.Values[row.Row]);
            default:
                throw new ArgumentOutOfRangeException(nameof(index));
        }
    }

    /// <summary>Releases the network; <see cref="Score"/> throws <see cref="ObjectDisposedException"/> from now on.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Module.Dispose();
    }
}
