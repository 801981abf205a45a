using System.Globalization;
using System.IO.Compression;

namespace MlNetGuide.Tests.Shared;

/// <summary>Finds the repository's data folder and reads the shipped data sets into plain arrays.</summary>
internal static class RepoData
{
    public static string Root
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "MlNetGuide.sln")))
                    return dir.FullName;
            throw new DirectoryNotFoundException("MlNetGuide.sln not found above " + AppContext.BaseDirectory);
        }
    }

    public static string DigitsPath => Path.Combine(Root, "samples", "data", "mnist-digits-10k.csv.gz");

    public static string SpamPath => Path.Combine(Root, "samples", "data", "spamassassin.csv.gz");

    public static string IrisPath => Path.Combine(Root, "samples", "data", "iris.csv");

    /// <summary>The digits as (pixels scaled to [0, 1], row-major n x 784; labels).</summary>
    public static (float[] pixels, long[] labels) Digits(int limit = int.MaxValue)
    {
        using var gz = new GZipStream(File.OpenRead(DigitsPath), CompressionMode.Decompress);
        using var reader = new StreamReader(gz);
        reader.ReadLine(); // header
        var pixels = new List<float>();
        var labels = new List<long>();
        string? line;
        while (labels.Count < limit && (line = reader.ReadLine()) is not null)
        {
            var parts = line.Split(',');
            labels.Add(long.Parse(parts[0], CultureInfo.InvariantCulture));
            for (int i = 1; i < parts.Length; i++) pixels.Add(float.Parse(parts[i], CultureInfo.InvariantCulture) / 255f);
        }
        return (pixels.ToArray(), labels.ToArray());
    }
}
