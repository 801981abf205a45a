using System.IO.Compression;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetGuide.Samples.SpamFilter;

/// <summary>One row of the shipped file as ML.NET's TextLoader reads it (header <c>label,kind,subject,body</c>).</summary>
public sealed class EmailRow
{
    /// <summary><c>spam</c> or <c>ham</c>.</summary>
    [LoadColumn(0)]
    public string Label { get; set; } = "";

    /// <summary>The corpus's folder: <c>spam</c>, <c>easy_ham</c> or <c>hard_ham</c>.</summary>
    [LoadColumn(1)]
    public string Kind { get; set; } = "";

    /// <summary>The Subject header (may be empty).</summary>
    [LoadColumn(2)]
    public string Subject { get; set; } = "";

    /// <summary>The message's text, newlines kept, cut at 4,000 characters.</summary>
    [LoadColumn(3)]
    public string Body { get; set; } = "";
}

/// <summary>
/// What the pipelines read, and so the saved zip's input schema: a label and one plain text column. A caller that scores
/// an email builds <see cref="Text"/> the same way, <c>subject + "\n" + body</c>.
/// </summary>
public sealed class Email
{
    /// <summary>True for spam.</summary>
    public bool Label { get; set; }

    /// <summary>The subject, a newline, and the body.</summary>
    public string Text { get; set; } = "";

    /// <summary>The email a pipeline reads: the label as a bool, subject and body joined into one text column.</summary>
    public static Email From(EmailRow row) => new()
    {
        Label = row.Label switch
        {
            "spam" => true,
            "ham" => false,
            _ => throw new InvalidDataException($"The label column must be 'spam' or 'ham'; found '{row.Label}' (subject '{row.Subject}')."),
        },
        Text = row.Subject + "\n" + row.Body,
    };
}

/// <summary>Reads the shipped emails (samples/data/spamassassin.csv.gz: quoted CSV with newlines inside the body).</summary>
public static class SpamData
{
    private const string FileName = "spamassassin.csv.gz";

    /// <summary>The default location: the repository's data folder, found from the working directory or the binary.</summary>
    public static string DefaultPath()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "samples", "data", FileName);
                if (File.Exists(candidate)) return candidate;
            }
        throw new FileNotFoundException($"samples/data/{FileName} not found above the working directory or the program; pass --data PATH.");
    }

    /// <summary>
    /// Reads the first <paramref name="limit"/> emails with ML.NET's TextLoader. The pipelines then load them with
    /// <c>LoadFromEnumerable</c>: joining subject and body is done here in C#, because ML.NET has no stock transform that
    /// concatenates two text columns into one string, and a custom mapping would make the saved zip need this assembly.
    /// </summary>
    public static List<Email> Read(MLContext ml, string path, int limit = int.MaxValue)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"The emails file '{path}' does not exist.", path);
        var loader = ml.Data.CreateTextLoader<EmailRow>(new TextLoader.Options
        {
            AllowQuoting = true,   // subject and body are quoted where they hold commas, quotes ("") or newlines
            ReadMultilines = true, // a quoted body spans lines
            HasHeader = true,
            Separators = [','],
        });
        var rows = ml.Data.CreateEnumerable<EmailRow>(loader.Load(new FileSource(path)), reuseRowObject: false);
        return rows.Take(limit).Select(Email.From).ToList();
    }

    /// <summary>
    /// One file for the TextLoader, decompressed on the fly when its name ends in .gz: ML.NET's own file source
    /// (<c>LoadFromTextFile</c>) reads the bytes as they are, so a .gz would be parsed as garbage.
    /// </summary>
    private sealed class FileSource(string path) : IMultiStreamSource
    {
        public int Count => 1;

        public string GetPathOrNull(int index)
        {
            Check(index);
            return path;
        }

        public Stream Open(int index)
        {
            Check(index);
            var file = File.OpenRead(path);
            return path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(file, CompressionMode.Decompress) : file;
        }

        public TextReader OpenTextReader(int index) => new StreamReader(Open(index));

        private static void Check(int index)
        {
            if (index != 0) throw new ArgumentOutOfRangeException(nameof(index), index, "This source holds one file, index 0.");
        }
    }
}
