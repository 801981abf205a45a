using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.DotNet.Interactive;
using Microsoft.DotNet.Interactive.Commands;
using Microsoft.DotNet.Interactive.CSharp;
using Microsoft.DotNet.Interactive.Events;

namespace MlNetGuide.Notebooks.Tests;

/// <summary>One output of a code cell, as a Jupyter notebook stores it: stdout text, or a display's data by MIME type.</summary>
public sealed record CellOutput(string? Stdout, IReadOnlyDictionary<string, string>? Data)
{
    public JsonObject ToJson(int executionCount) => Stdout is not null
        ? new JsonObject { ["name"] = "stdout", ["output_type"] = "stream", ["text"] = Lines(Stdout) }
        : new JsonObject
        {
            ["data"] = new JsonObject(Data!.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)Lines(kv.Value)))),
            ["metadata"] = new JsonObject(),
            ["output_type"] = "display_data",
        };

    public static CellOutput FromJson(JsonNode output) => (string?)output["output_type"] switch
    {
        "stream" => new CellOutput(Text(output["text"]), null),
        _ => new CellOutput(null, output["data"]!.AsObject().ToDictionary(kv => kv.Key, kv => Text(kv.Value))),
    };

    private static JsonArray Lines(string text)
    {
        var lines = text.Split('\n');
        var array = new JsonArray();
        for (int i = 0; i < lines.Length; i++)
            if (i < lines.Length - 1) array.Add(lines[i] + "\n");
            else if (lines[i].Length > 0) array.Add(lines[i]);
        return array;
    }

    private static string Text(JsonNode? node) =>
        node is JsonArray lines ? string.Concat(lines.Select(l => (string?)l)) : (string?)node ?? "";
}

/// <summary>The result of running one notebook: each code cell's source and outputs, in order.</summary>
public sealed record NotebookRun(string Name, IReadOnlyList<(int Index, string Source, IReadOnlyList<CellOutput> Outputs)> Cells)
{
    /// <summary>Everything the notebook printed, in order.</summary>
    public string Stdout => string.Concat(Cells.SelectMany(c => c.Outputs).Select(o => o.Stdout));
}

/// <summary>
/// Runs a Jupyter notebook (.ipynb, C#) cell by cell in .NET Interactive's C# kernel — the engine behind Polyglot
/// Notebooks — and reads or rewrites the outputs saved in it.
/// </summary>
/// <remarks>
/// A reader's first cell references the library built in the clone (<c>#r "bin/Release/net10.0/..."</c>, after
/// <c>dotnet build notebooks -c Release</c>) and loads TorchSharp's native library from there. Here the kernel is given
/// this test's own output folder instead (the same assemblies, built by this test run; TorchSharp's native library is
/// already this process's), so the lines that name the reader's build folder, and only those, are dropped before the
/// cell is submitted. <see cref="NotebookTests"/> checks that the files they name exist.
/// </remarks>
public static class NotebookRunner
{
    /// <summary>The reader's build folder, as the notebooks name it (relative to notebooks/).</summary>
    public const string ReaderBuild = "bin/Release/net10.0";

    /// <summary>A line that loads something from the reader's build (a <c>#r</c>, or <c>TorchSharpRuntime.LoadFrom</c>).</summary>
    private static readonly Regex ReaderBuildLine = new(@"^.*""" + ReaderBuild + @"[/""].*$", RegexOptions.Multiline);

    /// <summary>The paths of a cell's <c>#r</c> lines.</summary>
    public static IEnumerable<string> References(string source) =>
        Regex.Matches(source, @"^\s*#r\s+""([^""]+)""", RegexOptions.Multiline).Select(m => m.Groups[1].Value);

    /// <summary>The assemblies a notebook's <c>#r</c> lines name, from this test's output folder.</summary>
    private static readonly string[] Assemblies =
        ["TorchSharp.dll", "MlNetGuide.Modules.dll", "MlNetGuide.Trainer.dll", "MlNetGuide.Plots.dll"];

    public static JsonObject Read(string path) => JsonNode.Parse(File.ReadAllText(path))!.AsObject();

    public static IEnumerable<(int Index, JsonObject Cell)> CodeCells(JsonObject notebook) =>
        notebook["cells"]!.AsArray().Select((c, i) => (i, c!.AsObject())).Where(c => (string?)c.Item2["cell_type"] == "code");

    public static string Source(JsonObject cell) =>
        cell["source"] is JsonArray lines ? string.Concat(lines.Select(l => (string?)l)) : (string?)cell["source"] ?? "";

    /// <summary>
    /// Runs every code cell in order, in a new kernel, in the notebook's folder (relative paths resolve as for a reader), and throws
    /// <see cref="NotebookCellException"/> at the first cell that fails to compile, throws, or reports an error diagnostic.
    /// </summary>
    /// <param name="path">The notebook.</param>
    /// <param name="asReader">Run the cells as written, loading the library from the reader's build as they say
    /// (tests/NotebookHost, a process without our assemblies); otherwise from this process's output folder.</param>
    public static async Task<NotebookRun> RunAsync(string path, bool asReader = false)
    {
        var notebook = Read(path);
        var name = Path.GetFileName(path);
        var previous = Environment.CurrentDirectory;
        Environment.CurrentDirectory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        try
        {
            using var kernel = new CSharpKernel().UseKernelHelpers();
            if (!asReader) kernel.AddAssemblyReferences(Assemblies.Select(a => Path.Combine(AppContext.BaseDirectory, a)));
            var cells = new List<(int, string, IReadOnlyList<CellOutput>)>();
            foreach (var (index, cell) in CodeCells(notebook))
            {
                var source = Source(cell);
                var code = asReader ? source : ReaderBuildLine.Replace(source, "// (test) loaded from the test's output folder instead");
                var result = await kernel.SendAsync(new SubmitCode(code));
                cells.Add((index, source, Outputs(name, index, source, result.Events)));
            }
            return new NotebookRun(name, cells);
        }
        finally
        {
            Environment.CurrentDirectory = previous;
        }
    }

    private static List<CellOutput> Outputs(string notebook, int index, string source, IEnumerable<KernelEvent> events)
    {
        var outputs = new List<CellOutput>();
        var stdout = new StringBuilder();
        void Flush()
        {
            if (stdout.Length == 0) return;
            outputs.Add(new CellOutput(stdout.ToString(), null));
            stdout.Clear();
        }
        foreach (var e in events)
        {
            switch (e)
            {
                case CommandFailed failed:
                    throw new NotebookCellException(notebook, index, source, failed.Exception?.ToString() ?? failed.Message);
                case DiagnosticsProduced diagnostics when diagnostics.Diagnostics.Any(d => d.Severity == DiagnosticSeverity.Error):
                    throw new NotebookCellException(notebook, index, source,
                        string.Join("\n", diagnostics.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).Select(d => d.ToString())));
                case StandardOutputValueProduced o:
                    stdout.Append(o.FormattedValues.First(v => v.MimeType == "text/plain").Value);
                    break;
                case StandardErrorValueProduced err:
                    throw new NotebookCellException(notebook, index, source, "wrote to stderr: " + err.FormattedValues.First().Value);
                case DisplayEvent display: // DisplayedValueProduced, ReturnValueProduced, DisplayedValueUpdated
                    Flush();
                    outputs.Add(new CellOutput(null, display.FormattedValues.ToDictionary(v => v.MimeType, v => v.Value)));
                    break;
            }
        }
        Flush();
        return outputs;
    }

    /// <summary>Replaces the saved outputs of every code cell with <paramref name="run"/>'s, and writes the file.</summary>
    public static void SaveOutputs(string path, NotebookRun run)
    {
        var notebook = Read(path);
        int count = 0;
        foreach (var (index, cell) in CodeCells(notebook))
        {
            var outputs = run.Cells.Single(c => c.Index == index).Outputs;
            cell["execution_count"] = ++count;
            cell["outputs"] = new JsonArray(outputs.Select(o => (JsonNode)o.ToJson(count)).ToArray());
        }
        var json = notebook.ToJsonString(new System.Text.Json.JsonSerializerOptions
        {
            WriteIndented = true,
            Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        });
        File.WriteAllText(path, json.Replace("\r\n", "\n") + "\n");
    }

    /// <summary>
    /// A cell's outputs as comparable text: stdout with timing lines removed, and each display by MIME type with
    /// images reduced to a marker (PNG bytes depend on the font rasterizer, not on our code).
    /// </summary>
    public static string Comparable(IEnumerable<CellOutput> outputs)
    {
        var text = new StringBuilder();
        foreach (var o in outputs)
        {
            if (o.Stdout is not null)
            {
                foreach (var line in o.Stdout.Split('\n').Where(l => !IsTimingLine(l)))
                    text.Append(line.TrimEnd()).Append('\n');
            }
            else
            {
                foreach (var (mime, value) in o.Data!.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                    text.Append('[').Append(mime).Append("] ").Append(Images.Replace(value, "data:image/png;base64,<png>")).Append('\n');
            }
        }
        return text.ToString();
    }

    private static readonly Regex Images = new(@"data:image/png;base64,[A-Za-z0-9+/=]+");

    /// <summary>A line that reports a duration (e.g. "trained in 2.4 s"): it differs from run to run.</summary>
    public static bool IsTimingLine(string line) => Regex.IsMatch(line, @"\b\d+(\.\d+)?\s?(s|ms|seconds)\b");
}

/// <summary>A notebook cell that did not compile, threw, or reported an error.</summary>
public sealed class NotebookCellException(string notebook, int cellIndex, string source, string error)
    : Exception($"{notebook}, cell {cellIndex} failed:\n{error}\n--- cell source ---\n{source}");
