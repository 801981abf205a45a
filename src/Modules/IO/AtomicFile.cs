using System.Diagnostics;
using System.Globalization;

namespace MlNetGuide.Modules;

/// <summary>
/// Writes a file atomically: into a temporary file in the same folder, flushed to disk, then renamed over the target.
/// An interrupted save leaves the previous file intact.
/// </summary>
/// <remarks>
/// A process killed mid-save (<c>kill -9</c>, a power cut) leaves its temporary file behind:
/// <c>.{file name}.{process id}.{random}.mlnetguide.tmp</c> beside the target. The next save of the same target
/// removes those whose process no longer runs; one whose process id now belongs to another running process is kept
/// (it cannot be told apart from a save in progress), and can be deleted by hand once no save is running.
/// </remarks>
internal static class AtomicFile
{
    private const string Suffix = ".mlnetguide.tmp";

    /// <summary>Runs <paramref name="write"/> against a temporary file, then moves it to <paramref name="path"/>.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(write);
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir))
            throw new DirectoryNotFoundException($"Cannot save {full}: folder {dir} does not exist.");
        RemoveStaleTemporaries(dir, Path.GetFileName(full));
        var tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}{Suffix}");
        try
        {
            using (var stream = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { /* best effort: the target is untouched either way */ }
            throw;
        }
    }

    /// <summary>Deletes the temporary files of earlier saves of <paramref name="fileName"/> whose process has died.</summary>
    private static void RemoveStaleTemporaries(string dir, string fileName)
    {
        var prefix = "." + fileName + ".";
        foreach (var tmp in Directory.EnumerateFiles(dir, prefix + "*" + Suffix))
        {
            // .{name}.{pid}.{32 hex digits}.mlnetguide.tmp — anything else is not ours to delete.
            var middle = Path.GetFileName(tmp)[prefix.Length..^Suffix.Length].Split('.');
            if (middle.Length != 2 || middle[1].Length != 32 || !middle[1].All(char.IsAsciiHexDigit)
                || !int.TryParse(middle[0], NumberStyles.None, CultureInfo.InvariantCulture, out int pid)
                || IsRunning(pid))
                continue;
            try { File.Delete(tmp); } catch (IOException) { /* another saver got there first */ } catch (UnauthorizedAccessException) { }
        }
    }

    private static bool IsRunning(int pid)
    {
        if (pid == Environment.ProcessId) return true; // another thread of this process may be saving
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false; // no such process
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }
}
