using System.Globalization;
using System.IO.Compression;
using Microsoft.ML.Data;

namespace MlNetGuide.Samples.Digits;

/// <summary>One handwritten digit: 784 pixel intensities (0-255) and its label.</summary>
public sealed class Digit
{
    /// <summary>The digit 0-9 (a float, as ML.NET's loaders read numbers).</summary>
    public float Label { get; set; }

    /// <summary>28 x 28 pixels, row-major, 0 (white) to 255 (black).</summary>
    [VectorType(784)]
    public float[] Pixels { get; set; } = [];
}

/// <summary>What the pipeline predicts for a digit.</summary>
public sealed class DigitPrediction
{
    /// <summary>The predicted digit.</summary>
    public float PredictedLabel { get; set; }

    /// <summary>Probabilities of the ten classes, in key order.</summary>
    public float[] Score { get; set; } = [];
}

/// <summary>Reads the shipped digits file (samples/data/mnist-digits-10k.csv.gz: header label,p0..p783).</summary>
public static class DigitsData
{
    /// <summary>The default location: the repository's data folder, found from the working directory or the binary.</summary>
    public static string DefaultPath()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "samples", "data", "mnist-digits-10k.csv.gz");
                if (File.Exists(candidate)) return candidate;
            }
        throw new FileNotFoundException("samples/data/mnist-digits-10k.csv.gz not found above the working directory or the program; pass --data PATH.");
    }

    /// <summary>Reads up to <paramref name="limit"/> digits.</summary>
    public static List<Digit> Read(string path, int limit = int.MaxValue)
    {
        using var gz = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        using var reader = new StreamReader(gz);
        var header = reader.ReadLine() ?? throw new InvalidDataException($"{path} is empty.");
        if (!header.StartsWith("label,p0,", StringComparison.Ordinal))
            throw new InvalidDataException($"{path}: expected a header 'label,p0..p783', found '{header[..Math.Min(40, header.Length)]}'.");
        var digits = new List<Digit>();
        string? line;
        int lineNumber = 1;
        while (digits.Count < limit && (line = reader.ReadLine()) is not null)
        {
            lineNumber++;
            var parts = line.Split(',');
            if (parts.Length != 785) throw new InvalidDataException($"{path} line {lineNumber}: expected 785 values, found {parts.Length}.");
            var pixels = new float[784];
            for (int i = 0; i < 784; i++) pixels[i] = float.Parse(parts[i + 1], CultureInfo.InvariantCulture);
            digits.Add(new Digit { Label = float.Parse(parts[0], CultureInfo.InvariantCulture), Pixels = pixels });
        }
        return digits;
    }
}
