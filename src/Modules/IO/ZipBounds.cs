using System.IO.Compression;

namespace MlNetGuide.Modules;

/// <summary>
/// Bounds on a zip before any of its entries is inflated: how many entries, and how many bytes they inflate to
/// together. System.IO.Compression never inflates an entry past the uncompressed length its header declares, so the
/// declared lengths are a true upper bound on what reading the entries can allocate.
/// </summary>
internal static class ZipBounds
{
    /// <summary>The most entries a zip we load may have (our model zips have a handful; PyTorch's one per tensor).</summary>
    public const int MaxEntries = 65_536;

    /// <summary>
    /// Checks the entry count and that the entries' declared inflated lengths add up to at most <paramref name="budget"/>
    /// bytes; returns that sum. Throws <see cref="ModelFormatException"/> naming the first entry over the budget.
    /// </summary>
    public static long Check(ZipArchive archive, long budget, string source)
    {
        var entries = archive.Entries;
        if (entries.Count > MaxEntries)
            throw new ModelFormatException($"{source} has {entries.Count} zip entries; at most {MaxEntries} are accepted.");
        long total = 0;
        foreach (var entry in entries)
        {
            if (entry.Length > budget - total)
                throw new ModelFormatException(
                    $"{source}: entry '{entry.FullName}' inflates to {entry.Length:N0} bytes from {entry.CompressedLength:N0}, " +
                    $"which with the {total:N0} bytes before it exceeds the load budget of {budget:N0} bytes " +
                    "(LoadLimits.MaxLoadBytes; raise it only for a file you trust).");
            total += entry.Length;
        }
        return total;
    }

    /// <summary>Reads a whole entry of at most <paramref name="maxBytes"/> bytes (a JSON document, a nested zip).</summary>
    public static byte[] ReadAll(ZipArchiveEntry entry, long maxBytes, string source)
    {
        if (entry.Length > maxBytes)
            throw new ModelFormatException($"{source}: entry '{entry.FullName}' is {entry.Length:N0} bytes; at most {maxBytes:N0} are accepted there.");
        var bytes = new byte[entry.Length];
        using var s = entry.Open();
        s.ReadExactly(bytes); // EndOfStreamException when the entry is shorter than its header says
        return bytes;
    }
}
