using MlNetGuide.Samples.Digits;
using MlNetGuide.Tests.Shared;

namespace MlNetGuide.EndToEnd.Tests;

public sealed class RealDataTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-digits-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void EstimatorOnAllDigitsReachesNinetyFourPercentBeatsLbfgsAndReloadsIdentically()
    {
        // The default main job: seeded 80/20 split of the 10,000 real digits.
        var report = DigitsJob.Run(new DigitsSettings { Output = _dir, DataPath = RepoData.DigitsPath })!; // null only on MPI ranks other than 0
        Assert.True(report.Accuracy >= 0.94, $"accuracy {report.Accuracy:P2}");
        Assert.True(report.Accuracy > report.Baseline.Accuracy, $"ours {report.Accuracy:P2} vs LbfgsMaximumEntropy {report.Baseline.Accuracy:P2}");
        Assert.True(report.LogLoss < report.Baseline.LogLoss);
        Assert.True(report.ReloadIdentical, "a saved-and-reloaded model must predict identically on every test row");
        Assert.Empty(report.Failures);
    }
}
