using MlNetGuide.Tests.Shared;

namespace MlNetGuide.Notebooks.Tests;

/// <summary>
/// Runs every code cell of every notebook in notebooks/, in order, in .NET Interactive's C# kernel; fails on a compile
/// error, an exception or an error diagnostic; checks the values the book prints; and compares each cell's output with
/// the output saved in the notebook (timing lines ignored), so that what a reader sees on GitHub is what the code does.
/// </summary>
/// <remarks>
/// <c>MLNETGUIDE_REGENERATE_NOTEBOOKS=1 dotnet test tests/Notebooks.Tests -c Release</c> rewrites the saved outputs from
/// the run instead of comparing them (the key values are still checked).
/// </remarks>
public class NotebookTests
{
    public static string Folder => Path.Combine(RepoData.Root, "notebooks");

    private static bool Regenerate => Environment.GetEnvironmentVariable("MLNETGUIDE_REGENERATE_NOTEBOOKS") == "1";

    public static TheoryData<string> Notebooks()
    {
        var data = new TheoryData<string>();
        foreach (var path in Directory.GetFiles(Folder, "*.ipynb").Order(StringComparer.Ordinal))
            data.Add(Path.GetFileName(path));
        return data;
    }

    /// <summary>What the book prints, as this notebook must print it (substrings of its standard output, in order).</summary>
    private static readonly Dictionary<string, string[]> KeyValues = new()
    {
        ["index.ipynb"] = ["(2, 3) tensor on cpu"],
        ["6.1-layers-and-modules.ipynb"] =
        [
            "net(X).shape = (2, 10)", "MLP()(X).shape = (2, 10)", "children: 0, 1, 2", "MySequential(X).shape = (2, 10)",
            "parameters: linear.weight, linear.bias (rand_weight", "chimera(X) = ",
        ],
        ["6.2-parameter-management.ipynb"] =
        [
            "weight: (1, 8)\nbias: (1)\n", "net[2].weight.grad == None: True",
            "('0.weight', (8, 4))\n('0.bias', (8))\n('2.weight', (1, 8))\n('2.bias', (1))\n",
            "net[2].weight[0] == net[4].weight[0]: [True, True, True, True, True, True, True, True]\nafter net[2].weight[0, 0] = 100:\n" +
            "net[2].weight[0] == net[4].weight[0]: [True, True, True, True, True, True, True, True]\nnet[4].weight[0, 0] = 100\n",
            "PyTorch keys:    0.weight, 0.bias, 2.weight, 2.bias, 4.weight, 4.bias, 6.weight, 6.bias",
        ],
        ["6.3-parameter-initialization.ipynb"] =
        [
            "net[0].bias.data[0] = 0", "net[0].weight.data[0] = [1, 1, 1, 1]\nnet[0].bias.data[0] = 0",
            "net[2].weight.data = [[42, 42, 42, 42, 42, 42, 42, 42]]", "net[0].weight.data[0] = [42,",
        ],
        ["6.4-lazy-initialization.ipynb"] =
        [
            "[uninitialized]", "net[0].weight -> LazyModuleNotInitializedException",
            "net[0].weight.shape = (256, 20)\nnet[2].weight.shape = (10, 256)",
            "Sgd before the dry run -> The optimizer got an empty parameter list",
            "net.0.weight: (32, 20)", "net.2.weight: (3, 32)",
        ],
        ["6.5-custom-layers.ipynb"] =
        [
            "[-2, -1, 0, 1, 2]", "|Y.mean()| < 1e-6: True", "linear.weight = [[", "linear(rand(2, 5)) = [[",
        ],
        ["6.6-file-io.ipynb"] =
        [
            "x2 = [0, 1, 2, 3]", "(x2, y2) = ([0, 1, 2, 3], [0, 0, 0, 0])", "{'x': [0, 1, 2, 3], 'y': [0, 0, 0, 0]}",
            "Y_clone == Y: [[True, True, True, True, True, True, True, True, True, True]\n [True, True, True, True, True, True, True, True, True, True]]",
            "all equal: True",
        ],
        ["6.7-gpus.ipynb"] =
        [
            "cpu() = cpu, gpu() = cuda:0, gpu(1) = cuda:1\nnum_gpus() = 0",
            "try_gpu() = cpu\ntry_gpu(10) = cpu\ntry_all_gpus() = [cpu]", "X = [[1, 1, 1]\n [1, 1, 1]] on cpu",
            "net[0].weight.data.device = cpu", "images (2000, 784), labels (2000)", "training on cpu", "epoch 8: ",
        ],
    };

    [Theory]
    [MemberData(nameof(Notebooks))]
    public async Task NotebookRunsCellByCellAndPrintsWhatItsSavedOutputsShow(string name)
    {
        var path = Path.Combine(Folder, name);
        var run = await NotebookRunner.RunAsync(path);

        Assert.True(KeyValues.ContainsKey(name), $"{name}: add the values it must print to {nameof(KeyValues)}");
        var stdout = run.Stdout.Replace("\r\n", "\n");
        int from = 0;
        foreach (var expected in KeyValues[name])
        {
            int at = stdout.IndexOf(expected, from, StringComparison.Ordinal);
            Assert.True(at >= 0, $"{name} did not print, after position {from}:\n{expected}\n--- it printed ---\n{stdout}");
            from = at + expected.Length;
        }

        if (Regenerate)
        {
            NotebookRunner.SaveOutputs(path, run);
            return;
        }
        var saved = NotebookRunner.Read(path);
        foreach (var (index, cell) in NotebookRunner.CodeCells(saved))
        {
            var expected = NotebookRunner.Comparable(cell["outputs"]!.AsArray().Select(o => CellOutput.FromJson(o!)));
            var actual = NotebookRunner.Comparable(run.Cells.Single(c => c.Index == index).Outputs);
            Assert.True(expected == actual,
                $"{name}, cell {index}: the output saved in the notebook differs from this run's " +
                $"(MLNETGUIDE_REGENERATE_NOTEBOOKS=1 rewrites it).\n--- saved ---\n{expected}--- this run ---\n{actual}");
        }
    }

    [Theory]
    [MemberData(nameof(Notebooks))]
    public async Task NotebookRunsAsAReadersKernelRunsIt(string name)
    {
        // A child process with none of our assemblies runs the cells as written: the #r lines and
        // TorchSharpRuntime.LoadFrom load the library from `dotnet build notebooks` (built by this project's build).
        var configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;   // bin/<configuration>/net10.0
        var host = Path.Combine(RepoData.Root, "tests", "NotebookHost", "bin", configuration, "net10.0", "MlNetGuide.NotebookHost.dll");
        var copy = Path.Combine(Path.GetTempPath(), $"mlnetguide-reader-{Guid.NewGuid():N}-{name}");
        var psi = new System.Diagnostics.ProcessStartInfo(
            Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } dotnet && File.Exists(dotnet) ? dotnet : "dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var arg in new[] { host, Path.Combine(Folder, name), copy }) psi.ArgumentList.Add(arg);
        try
        {
            using var process = System.Diagnostics.Process.Start(psi)!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            using (var hangGuard = new CancellationTokenSource(TimeSpan.FromMinutes(10)))
                await process.WaitForExitAsync(hangGuard.Token);
            Assert.True(process.ExitCode == 0, $"{name} failed in a reader's kernel (exit {process.ExitCode}):\n{await stderr}\n{await stdout}");

            var saved = NotebookRunner.Read(Path.Combine(Folder, name));
            var run = NotebookRunner.Read(copy);
            foreach (var ((index, expected), (_, actual)) in NotebookRunner.CodeCells(saved).Zip(NotebookRunner.CodeCells(run)))
            {
                string Text(System.Text.Json.Nodes.JsonObject cell) =>
                    NotebookRunner.Comparable(cell["outputs"]!.AsArray().Select(o => CellOutput.FromJson(o!)));
                Assert.True(Text(expected) == Text(actual),
                    $"{name}, cell {index}: a reader's kernel printed other than the saved output.\n--- saved ---\n{Text(expected)}--- reader ---\n{Text(actual)}");
            }
        }
        finally
        {
            File.Delete(copy);
        }
    }

    [Fact]
    public void TheReadersReferencesNameFilesOfTheNotebooksBuild()
    {
        // The test skips these lines (it runs on its own output folder); a reader runs them after `dotnet build notebooks`,
        // which this test project's build has done too.
        foreach (var path in Directory.GetFiles(Folder, "*.ipynb"))
        {
            var references = NotebookRunner.CodeCells(NotebookRunner.Read(path))
                .SelectMany(c => NotebookRunner.References(NotebookRunner.Source(c.Cell))).ToList();
            Assert.Contains($"{NotebookRunner.ReaderBuild}/MlNetGuide.Modules.dll", references);
            foreach (var reference in references)
                Assert.True(File.Exists(Path.Combine(Folder, reference)), $"{Path.GetFileName(path)}: #r \"{reference}\" names no file under notebooks/");
        }
    }

    [Fact]
    public void EveryNotebookIsListedInTheIndexAndHasItsKeyValues()
    {
        var index = File.ReadAllText(Path.Combine(Folder, "index.ipynb"));
        foreach (var path in Directory.GetFiles(Folder, "6.*.ipynb"))
            Assert.Contains($"({Path.GetFileName(path)})", index);
        Assert.Equal(KeyValues.Keys.Order(StringComparer.Ordinal),
            Directory.GetFiles(Folder, "*.ipynb").Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }
}
