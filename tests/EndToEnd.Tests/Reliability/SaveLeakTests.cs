using System.Globalization;
using MlNetGuide.Tests.Shared;
using Xunit.Abstractions;

namespace MlNetGuide.EndToEnd.Tests.Reliability;

/// <summary>
/// <c>mlContext.Model.Save</c> builds a stock chain around an ONNX Runtime session for every save: 1,000 saves in one
/// process (a child, with its own temp folder) leave no file behind, hold no more open files, and resident memory stops
/// growing (bounded by the count of saves, not by time).
/// </summary>
public sealed class SaveLeakTests(ITestOutputHelper output)
{
    [Fact]
    public void AThousandSavesLeaveNoFilesHandlesOrMemoryBehind()
    {
        var temp = Path.Combine(Path.GetTempPath(), $"mlnetguide-saves-{Guid.NewGuid():N}");
        Directory.CreateDirectory(temp);
        try
        {
            var lines = ChildProcess.RunProbeWith(new Dictionary<string, string> { ["TMPDIR"] = temp }, "save-loop", "1000")
                .Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            output.WriteLine(string.Join("\n", lines));
            var at = lines.Select(Parse).ToDictionary(r => r.save);
            // The first save creates one entry the process keeps (it stays after the child exits), not one per save.
            var (firstSave, first, middle, last) = (at[1], at[100], at[500], at[1000]);
            Assert.Equal(firstSave.temp, last.temp); // ML.NET's stream-made OnnxTransformer once left one file per save
            Assert.True(last.fds <= first.fds + 8, $"open files grew from {first.fds} to {last.fds} over 900 saves");
            double growthMb = (last.rssKb - middle.rssKb) / 1024.0;
            Assert.True(growthMb < 16, $"resident memory grew {growthMb:F1} MB over the last 500 saves");
            Assert.Empty(Directory.GetFiles(temp, "*.onnx"));
        }
        finally
        {
            Directory.Delete(temp, recursive: true);
        }
    }

    private static (int save, int fds, int temp, long rssKb) Parse(string line)
    {
        // "save <i> fds <n> temp <n> rss <kB>"
        var f = line.Split(' ');
        int I(int k) => int.Parse(f[k], CultureInfo.InvariantCulture);
        return (I(1), I(3), I(5), long.Parse(f[7], CultureInfo.InvariantCulture));
    }
}
