using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetGuide.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Estimators.Tests;

/// <summary>
/// How Fit reads an IDataView: into memory once when it fits <see cref="NeuralNetworkOptions.InMemoryLimitMB"/>,
/// streamed every epoch otherwise — the same rows, the same split, the same errors either way.
/// </summary>
public class TrainingDataTests
{
    /// <summary>A row whose first feature is its index, so batches can be traced back to rows.</summary>
    private sealed class IdRow
    {
        [VectorType(4)] public float[] Features { get; set; } = [];
        public float Value { get; set; }
    }

    private static List<IdRow> Rows(int n) =>
        Enumerable.Range(0, n).Select(i => new IdRow { Features = [i, 1, 2, 3], Value = i }).ToList();

    private static RegressionNeuralNetworkOptions Options(double validation = 0, int batch = 32) =>
        new() { LabelColumnName = "Value", BatchSize = batch, ValidationFraction = validation };

    private static List<long> Ids(Tensor x) => x.select(1, 0).data<float>().ToArray().Select(v => (long)v).ToList();

    private static List<long> Ids(IEnumerable<Batch> batches)
    {
        var ids = new List<long>();
        foreach (var b in batches)
            using (b)
            {
                ids.AddRange(Ids(b.X));
                Assert.Equal(Ids(b.X), b.Y.data<float>().ToArray().Select(v => (long)v)); // labels travel with their rows
            }
        return ids;
    }

    public enum View { InOrder, Cached, UnknownRowCount }

    private static IDataView Data(MLContext ml, View kind, int n)
    {
        var raw = ml.Data.LoadFromEnumerable(Rows(n));
        return kind switch
        {
            View.Cached => ml.Data.Cache(raw),
            View.UnknownRowCount => ml.Data.FilterRowsByColumn(raw, "Value", 0, double.MaxValue), // a filter cannot know its count
            _ => raw,
        };
    }

    [Theory]
    [InlineData(View.InOrder)]
    [InlineData(View.Cached)]
    [InlineData(View.UnknownRowCount)]
    public void InMemoryAndStreamedReadTheSameRowsAndTheSameSplit(View kind)
    {
        var ml = new MLContext(seed: 1);
        var data = Data(ml, kind, 300);
        Assert.Equal(kind == View.UnknownRowCount, data.GetRowCount() is null);

        using var memory = new DataViewBatchSource(data, Options(validation: 0.25), seed: 7);
        memory.Prepare(1 << 20);
        Assert.True(memory.InMemory);
        var memTrain = Ids(memory.MemoryTrain![0]);
        var memVal = Ids(memory.MemoryVal![0]);
        Assert.Equal(memTrain, memory.MemoryTrain[1].data<float>().ToArray().Select(v => (long)v)); // labels line up with features
        Assert.Equal((300L, 300L * 5 * 4), (memory.TrainRows + memory.ValRows, memory.MemoryBytes)); // 4 features + 1 label, float32

        using var streamed = new DataViewBatchSource(data, Options(validation: 0.25), seed: 7);
        streamed.Prepare(0);
        Assert.False(streamed.InMemory);
        Assert.Equal((memory.TrainRows, memory.ValRows), (streamed.TrainRows, streamed.ValRows));
        var epoch0 = Ids(streamed.Train(0));
        var epoch1 = Ids(streamed.Train(1));
        // Every training row exactly once per epoch, in a new order each epoch; the held-out rows never train.
        Assert.Equal(memTrain.Order(), epoch0.Order());
        Assert.Equal(memTrain.Order(), epoch1.Order());
        Assert.NotEqual(epoch0, epoch1);
        Assert.NotEqual(epoch0.Order(), epoch0);
        Assert.Equal(memVal, Ids(streamed.Validation()));
        Assert.Empty(memTrain.Intersect(memVal));
        Assert.Equal(Enumerable.Range(0, 300).Select(i => (long)i), memTrain.Concat(memVal).Order());
        // About a quarter held out (a seeded hash of the row id decides).
        Assert.InRange(memVal.Count, 50, 100);
    }

    [Theory]
    [InlineData(View.InOrder)] // rows shuffled in windows, then copied into the batch
    [InlineData(View.Cached)]  // rows go from a shuffled cursor straight into the batch
    public void LargeStreamedBatchesCarryEveryRowOnceWithItsLabel(View kind)
    {
        const int batch = 16_384, rows = 40_000; // a partial last batch, and (in order) windows of 16 batches
        var ml = new MLContext(seed: 1);
        using var source = new DataViewBatchSource(Data(ml, kind, rows), Options(batch: batch), seed: 5);
        source.Prepare(0);
        var ids = Ids(source.Train(0)); // also checks that each label travels with its row
        Assert.Equal(Enumerable.Range(0, rows).Select(i => (long)i), ids.Order());
        Assert.NotEqual(ids.Order(), ids);
    }

    [Fact]
    public void DataOverTheLimitStreamsWhetherOrNotItsRowCountIsKnown()
    {
        var ml = new MLContext(seed: 1);
        // 5,000 rows x 5 floats = 100,000 bytes: over a 64 KB limit, under 1 MB.
        foreach (var kind in new[] { View.InOrder, View.UnknownRowCount })
        {
            using var over = new DataViewBatchSource(Data(ml, kind, 5000), Options(), seed: 1);
            over.Prepare(64 << 10);
            Assert.False(over.InMemory);
            Assert.Equal(5000, over.TrainRows);
            Assert.Equal(0, over.MemoryBytes);

            // A view that cannot count its rows is read once: past the limit the same pass counts the rest.
            var counted = new RowCountingView(Data(ml, kind, 5000));
            using (var once = new DataViewBatchSource(counted, Options(validation: 0.1), seed: 1))
            {
                once.Prepare(64 << 10);
                Assert.False(once.InMemory);
                Assert.Equal(5000, once.TrainRows + once.ValRows);
                Assert.InRange(once.ValRows, 400, 600);
                Assert.Equal(1, counted.CursorsOpened);
                Assert.Equal(5000, counted.RowsRead);
            }

            using var under = new DataViewBatchSource(Data(ml, kind, 5000), Options(), seed: 1);
            under.Prepare(1 << 20); // the unknown count grows the buffer past its first 4,096 rows
            Assert.True(under.InMemory);
            Assert.Equal(Enumerable.Range(0, 5000).Select(i => (long)i), Ids(under.MemoryTrain![0]));
            Assert.Equal(100_000, under.MemoryBytes);
        }
    }

    [Fact]
    public void InMemoryRowsAreReleasedWithTheSource()
    {
        var ml = new MLContext(seed: 1);
        var data = Data(ml, View.Cached, 200);
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        using (var source = new DataViewBatchSource(data, Options(validation: 0.2), seed: 1))
        {
            source.Prepare(1 << 20);
            Assert.Equal(before + 4, DisposeScopeManager.Statistics.ThreadTotalLiveCount); // train and validation X and y
        }
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1024)]
    public void BothModesNameTheFirstNonFiniteRowAndSkipRowsAlike(int inMemoryLimitMB)
    {
        var ml = new MLContext(seed: 1);
        var rows = Rows(100);
        rows[41].Features[2] = float.NaN;
        rows[77].Features[3] = float.NegativeInfinity;
        var data = ml.Data.LoadFromEnumerable(rows);
        var options = Options();
        options.InMemoryLimitMB = inMemoryLimitMB;
        options.Epochs = 1;
        var ex = Assert.Throws<SchemaMismatchException>(() => ml.Regression.Trainers.NeuralNetwork(options).Fit(data));
        Assert.Contains("row 41", ex.Message);

        options.NonFiniteFeatures = NonFiniteFeaturePolicy.SkipRow;
        using var source = new DataViewBatchSource(data, options, seed: 1);
        source.Prepare((long)inMemoryLimitMB << 20);
        Assert.Equal((98L, 2L), (source.TrainRows, source.SkippedRows));
        var ids = source.InMemory ? Ids(source.MemoryTrain![0]) : Ids(source.Train(0));
        Assert.Equal(Enumerable.Range(0, 100).Where(i => i is not 41 and not 77).Select(i => (long)i), ids.Order());
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1024)]
    public void EachModeIsDeterministicAndLogsHowItReadTheData(int inMemoryLimitMB)
    {
        string Train(out List<string> log)
        {
            var ml = new MLContext(seed: 3);
            var messages = new List<string>();
            ml.Log += (_, e) => messages.Add(e.Message);
            var raw = ml.Data.LoadFromEnumerable(Synthetic.Rows(400));
            using var model = ml.Regression.Trainers.NeuralNetwork(new RegressionNeuralNetworkOptions
            {
                LabelColumnName = "Value", Epochs = 3, BatchSize = 16, InMemoryLimitMB = inMemoryLimitMB, ValidationFraction = 0.1,
            }).Fit(raw);
            log = messages;
            return model.WeightsDigest();
        }
        Assert.Equal(Train(out var log), Train(out _));
        Assert.Contains(log, m => m.Contains(inMemoryLimitMB > 0 ? "read into memory once" : "streamed from the data view every epoch"));
    }

    /// <summary>
    /// Under the in-memory limit a Fit reads its rows in one pass — one cursor, each row once — however the validation rows
    /// come: none, split off with ValidationFraction, or given as a data view of their own (also read once). Over the
    /// limit every epoch streams. (The Digits job's ValidationFraction = 0.1 once streamed its rows every epoch.)
    /// </summary>
    [Theory]
    [InlineData(0.0, false)]
    [InlineData(0.1, false)]
    [InlineData(0.0, true)]
    public void UnderTheLimitEveryRowIsReadOnceWhateverTheValidation(double validationFraction, bool validationData)
    {
        const int n = 400, m = 100, epochs = 3;
        var ml = new MLContext(seed: 3);
        var log = new List<string>();
        ml.Log += (_, e) => { if (e.Source.StartsWith("MlNetGuide", StringComparison.Ordinal)) lock (log) log.Add(e.Message); };
        var train = new RowCountingView(ml.Data.LoadFromEnumerable(Rows(n)));
        var val = new RowCountingView(ml.Data.LoadFromEnumerable(Rows(m)));
        var options = Options(validationFraction, batch: 16);
        options.Epochs = epochs;
        var estimator = ml.Regression.Trainers.NeuralNetwork(options);
        using var model = validationData ? estimator.Fit(train, val) : estimator.Fit(train);
        Assert.Equal(epochs, model.History!.Epochs.Count);
        Assert.Equal(1, train.CursorsOpened);
        Assert.Equal(n, train.RowsRead);
        Assert.Equal(validationData ? 1 : 0, val.CursorsOpened);
        Assert.Equal(validationData ? m : 0, val.RowsRead);
        if (validationFraction > 0 || validationData) Assert.NotNull(model.History.Epochs[^1].ValLoss);
        Assert.Contains(log, l => l.Contains("read into memory once", StringComparison.Ordinal));

        // Over the limit (0: always stream) each epoch reads the view again: the count this test tells apart.
        var streamed = new RowCountingView(ml.Data.LoadFromEnumerable(Rows(n)));
        options.InMemoryLimitMB = 0;
        using (ml.Regression.Trainers.NeuralNetwork(options).Fit(streamed))
            Assert.True(streamed.RowsRead >= epochs * (long)n, $"{streamed.RowsRead} rows read in {epochs} streamed epochs");
    }

    [Fact]
    public void ANegativeInMemoryLimitIsRejectedAndAnyOtherAccepted()
    {
        var ml = new MLContext(seed: 1);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() =>
            ml.Regression.Trainers.NeuralNetwork(new RegressionNeuralNetworkOptions { InMemoryLimitMB = -1 }));
        Assert.Equal("InMemoryLimitMB", ex.ParamName);
        // No 2 GiB ceiling: rows are addressed with 64-bit offsets (a limit is a budget, not a span length).
        foreach (int limit in new[] { 0, 2048, 64 * 1024 })
            Assert.Equal(limit, ml.Regression.Trainers.NeuralNetwork(new RegressionNeuralNetworkOptions { InMemoryLimitMB = limit }).Options.InMemoryLimitMB);
    }
}
