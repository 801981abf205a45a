using Microsoft.ML;
using TorchSharp;

namespace MlNetGuide.Estimators.Tests;

/// <summary><c>MLContext.CancelExecution()</c> stops a Fit within one batch, as ML.NET's own trainers do (they check their host every step).</summary>
public class CancellationTests
{
    [Theory]
    [InlineData(1024)] // rows in memory
    [InlineData(0)]    // rows streamed: the rows read after the cancel show how far training went on
    public void CancelExecutionStopsFitWithinOneBatchAndLeaksNothing(int inMemoryLimitMB)
    {
        const int batch = 16, rows = 320, epochs = 5;
        var ml = new MLContext(seed: 1);
        var data = new RowCountingView(Synthetic.Data(ml, rows));
        long baseline = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        long readAtCancel = -1;
        var completed = new List<int>();
        var estimator = ml.Regression.Trainers.NeuralNetwork(new RegressionNeuralNetworkOptions
        {
            LabelColumnName = "Value", Epochs = epochs, BatchSize = batch, InMemoryLimitMB = inMemoryLimitMB,
            EpochCompleted = m =>
            {
                completed.Add(m.Epoch);
                if (completed.Count == 1) { readAtCancel = data.RowsRead; CancelExecution(ml); }
            },
        });
        var ex = Assert.ThrowsAny<OperationCanceledException>(() => estimator.Fit(data));
        Assert.Contains("cancel", ex.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Single(completed); // the second epoch's first batch is where it stopped
        // In memory nothing more is read. Streamed, the next epoch filled one shuffle window (16 batches: this view cannot
        // shuffle itself) before its first batch reached the check, which refused to step on it; not the 4 epochs left.
        Assert.InRange(data.RowsRead - readAtCancel, 0, inMemoryLimitMB == 0 ? 16 * batch : 0);
        Assert.Equal(baseline, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    // ML.NET 5.0.1 keeps CancelExecution on the context's environment behind its internal ICancelable (AutoML and the
    // CLI call it); reach it the way they do.
    private static void CancelExecution(MLContext ml)
    {
        var env = MlNetInternals.EnvironmentOf(ml.Regression.Trainers);
        env.GetType().GetInterfaces().Single(i => i.Name == "ICancelable").GetMethod("CancelExecution")!.Invoke(env, null);
    }
}
