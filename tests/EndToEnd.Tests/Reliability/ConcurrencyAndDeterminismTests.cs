using Microsoft.ML;
using MlNetGuide.Tests.Shared;
using Xunit.Abstractions;

namespace MlNetGuide.EndToEnd.Tests.Reliability;

public sealed class ConcurrencyAndDeterminismTests(ITestOutputHelper output)
{
    [Fact]
    public void ManyThreadsWithTheirOwnEnginesMatchTheBatchedScoresWithinOneMillionth()
    {
        var ml = new MLContext(seed: 1);
        var rows = Fixtures.Rows(300);
        var data = Fixtures.Keyed(ml, rows);
        using var model = Fixtures.Train(ml, data);
        var expected = Fixtures.Scores(model, data);
        const int threads = 8, rounds = 3;
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            var engine = ml.Model.CreatePredictionEngine<Row, Scored>(model);
            for (int r = 0; r < rounds; r++)
                for (int i = (t * 37) % rows.Count, n = 0; n < rows.Count; n++, i = (i + 1) % rows.Count)
                {
                    var got = engine.Predict(rows[i]).Score;
                    for (int k = 0; k < got.Length; k++)
                        if (Math.Abs(got[k] - expected[i][k]) > 1e-6f) { failures.Add($"thread {t} row {i}: {got[k]} vs {expected[i][k]}"); return; }
                }
        });
        Assert.Empty(failures);
        output.WriteLine($"{threads} threads x {rounds} x {rows.Count} single-row predictions matched the batched scores (|diff| <= 1e-6)");
    }

    [Fact]
    public void TransformCursorsConsumedInParallelGiveIdenticalResults()
    {
        var ml = new MLContext(seed: 1);
        var data = Fixtures.Keyed(ml, Fixtures.Rows(1000));
        using var model = Fixtures.Train(ml, data);
        var expected = Fixtures.Scores(model, data);
        var scored = model.Transform(data);
        var results = new float[6][][];
        Parallel.For(0, results.Length, new ParallelOptions { MaxDegreeOfParallelism = 6 }, i =>
            results[i] = Microsoft.ML.Data.ColumnCursorExtensions.GetColumn<float[]>(scored, "Score").ToArray());
        foreach (var r in results)
        {
            Assert.Equal(expected.Length, r.Length);
            for (int i = 0; i < r.Length; i++) Assert.True(r[i].AsSpan().SequenceEqual(expected[i]), $"row {i}");
        }
        output.WriteLine($"{results.Length} cursors in parallel x {expected.Length} rows: bit-identical to one cursor");
    }

    [Fact]
    public void SameSeedGivesBitIdenticalWeightsAndPredictionsInTwoSeparateProcesses()
    {
        var first = ChildProcess.RunProbe("train-digest", "17");
        var second = ChildProcess.RunProbe("train-digest", "17");
        var other = ChildProcess.RunProbe("train-digest", "18");
        Assert.Equal(first, second);
        Assert.NotEqual(first, other);
        Assert.Matches(@"^weights [0-9A-F]{16} predictions ([0-9A-F]{16}) reloaded \1$", first); // reload predicts identically too
        output.WriteLine($"seed 17, two processes: {first}; seed 18: {other}");
    }
}
