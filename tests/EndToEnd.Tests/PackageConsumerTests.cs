using System.Diagnostics;
using System.IO.Compression;
using System.Reflection;
using System.Text;
using System.Xml.Linq;
using MlNetGuide.Tests.Shared;

namespace MlNetGuide.EndToEnd.Tests;

/// <summary>
/// The packages as a user gets them: the four libraries are packed into a local folder feed, and tests/PackageConsumer —
/// a console app with its own empty Directory.Build.props/.targets/Directory.Packages.props and a nuget.config that
/// names only that feed and nuget.org — is copied to a temp folder outside the repository, restored, built, run,
/// published and run again. Bin sizes go to artifacts/package-consumer.txt, which .ci/run prints.
/// </summary>
public sealed class PackageConsumerTests(PackageConsumerTests.Workspace ws) : IClassFixture<PackageConsumerTests.Workspace>
{
    private static readonly string[] PackageIds = ["MlNetGuide.Modules", "MlNetGuide.Trainer", "MlNetGuide.Estimators", "MlNetGuide.Plots"];

    [Fact]
    public void PackagesCarryMetadataTheBuildStepAndSymbols()
    {
        foreach (var id in PackageIds)
        {
            var nupkg = Path.Combine(ws.Feed, $"{id}.{ws.Version}.nupkg");
            Assert.True(File.Exists(Path.Combine(ws.Feed, $"{id}.{ws.Version}.snupkg")), $"{id}: no symbol package");
            using var zip = ZipFile.OpenRead(nupkg);
            var m = Nuspec(zip);
            string Get(string name) => m.Elements().FirstOrDefault(e => e.Name.LocalName == name)?.Value ?? "";
            Assert.Equal(ws.Version, Get("version"));
            Assert.True(Get("description").Length > 40 && Get("description") != "Package Description", $"{id}: description '{Get("description")}'");
            Assert.Equal("MIT", Get("license"));
            Assert.Equal("README.md", Get("readme"));
            Assert.NotNull(zip.GetEntry("README.md"));
            Assert.Contains("torchsharp", Get("tags"));
            Assert.NotEqual("", Get("authors"));
            // The repository URL is the clone's https origin, or absent: never a guess.
            Assert.Equal(OriginUrl ?? "", m.Elements().SingleOrDefault(e => e.Name.LocalName == "repository")?.Attribute("url")?.Value ?? "");
        }
        using (var modules = ZipFile.OpenRead(Path.Combine(ws.Feed, $"MlNetGuide.Modules.{ws.Version}.nupkg")))
        {
            // The native fix, as the repository uses it: NuGet imports buildTransitive/<id>.targets in every project that
            // references the package directly or through Trainer/Estimators.
            Assert.Equal(File.ReadAllBytes(Path.Combine(RepoData.Root, "build", "TorchSharpNativeFix.targets")),
                ReadAll(modules.GetEntry("buildTransitive/MlNetGuide.Modules.targets")!));
            Assert.Equal(File.ReadAllBytes(Path.Combine(RepoData.Root, "build", "PatchLibTorchSharpGlibcxx.cs")),
                ReadAll(modules.GetEntry("buildTransitive/PatchLibTorchSharpGlibcxx.cs")!));
        }
    }

    [Fact]
    public void TheReadmeSnippetIsTheConsumersCode()
    {
        var readme = File.ReadAllText(Path.Combine(RepoData.Root, "README.md")).Replace("\r\n", "\n", StringComparison.Ordinal);
        int section = readme.IndexOf("## Use it in your project", StringComparison.Ordinal);
        Assert.True(section >= 0, "README has no 'Use it in your project' section");
        int start = readme.IndexOf("```csharp\n", section, StringComparison.Ordinal) + "```csharp\n".Length;
        int end = readme.IndexOf("```", start, StringComparison.Ordinal);
        var program = File.ReadAllLines(Path.Combine(RepoData.Root, "tests", "PackageConsumer", "Program.cs"));
        int i = 0;
        foreach (var line in readme[start..end].Split('\n').Where(l => l.Trim().Length > 0))
        {
            while (i < program.Length && program[i] != line) i++;
            Assert.True(i < program.Length, $"README line not found (in order) in tests/PackageConsumer/Program.cs: {line}");
            i++;
        }
    }

    [Fact]
    public void AnEstimatorsUserGetsNoPlottingLibrary()
    {
        ws.EnsureBuilt();
        var assets = File.ReadAllText(Path.Combine(ws.Consumer, "obj", "project.assets.json"));
        Assert.Contains($"\"MlNetGuide.Estimators/{ws.Version}\"", assets);
        Assert.Contains($"\"MlNetGuide.Modules/{ws.Version}\"", assets);
        // SkiaSharp itself comes with TorchSharp (its image I/O); what rendering adds must not.
        foreach (var plotting in new[] { "OxyPlot", "HarfBuzzSharp", "SkiaSharp.HarfBuzz", "SkiaSharp.NativeAssets.Linux", "MlNetGuide.Plots" })
            Assert.DoesNotContain($"\"{plotting}", assets, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void BuildsRunsAndPublishesFromTheLocalFeed()
    {
        ws.EnsureBuilt();
        if (ws.PatchNeeded) // the package's build step ran in a project that references MlNetGuide.Estimators only
            Assert.Contains("MlNetGuide: marked GLIBCXX_3.4.32 weak", ws.BuildLog);
        AssertConsumerRan(ws.Run(Path.Combine(ws.Consumer, "bin", "Release", "net10.0", "PackageConsumer.dll")));
        // A consumer who trains and scores pulls no plotting library (MlNetGuide.Plots is its own package).
        Assert.DoesNotContain(Directory.GetFiles(Path.Combine(ws.Consumer, "bin", "Release", "net10.0"), "*.dll"),
            f => Path.GetFileName(f).StartsWith("OxyPlot", StringComparison.Ordinal) || Path.GetFileName(f) == "MlNetGuide.Plots.dll");
        ws.Record("default build (bin/Release/net10.0)", Path.Combine(ws.Consumer, "bin", "Release", "net10.0"));

        var publish = Path.Combine(ws.Root, "publish");
        ws.Dotnet("publish", "-c", "Release", "-o", publish, $"-p:MlNetGuideVersion={ws.Version}");
        AssertConsumerRan(ws.Run(Path.Combine(publish, "PackageConsumer.dll")));
        ws.Record("dotnet publish", publish);
    }

    [Fact]
    public void ARuntimeIdentifierKeepsOnePlatformsLibtorch()
    {
        ws.EnsureBuilt();
        var bin = Path.Combine(ws.Root, "linux-x64");
        ws.Dotnet("build", "-c", "Release", "-r", "linux-x64", "-o", bin, $"-p:MlNetGuideVersion={ws.Version}");
        AssertConsumerRan(ws.Run(Path.Combine(bin, "PackageConsumer.dll")));
        Assert.False(Directory.Exists(Path.Combine(bin, "runtimes", "win-x64")));
        Assert.DoesNotContain(Directory.GetFiles(bin, "*.dll", SearchOption.AllDirectories), f => Path.GetFileName(f).StartsWith("torch_cpu", StringComparison.Ordinal));
        Assert.True(File.Exists(Path.Combine(bin, "libtorch_cpu.so")));
        ws.Record("RuntimeIdentifier=linux-x64", bin);
    }

    [Fact]
    public void HardLinksKeepLibtorchInTheNuGetCache()
    {
        ws.EnsureBuilt();
        var bin = Path.Combine(ws.Root, "hardlinked");
        ws.Dotnet("build", "-c", "Release", "-o", bin, "-p:CreateHardLinksForCopyLocalIfPossible=true", $"-p:MlNetGuideVersion={ws.Version}");
        AssertConsumerRan(ws.Run(Path.Combine(bin, "PackageConsumer.dll")));
        var (total, own) = Workspace.Sizes(bin);
        Assert.True(own < total / 4, $"hard links: {own:N0} of {total:N0} bytes are not shared with the NuGet cache");
        ws.Record("CreateHardLinksForCopyLocalIfPossible=true", bin);
    }

    [Fact]
    public void WithTheBuildStepTurnedOffTheFirstCallNamesTheCause()
    {
        ws.EnsureBuilt();
        var bin = Path.Combine(ws.Root, "nopatch");
        ws.Dotnet("build", "-c", "Release", "-o", bin, "-p:MlNetGuideSkipTorchSharpPatch=true", $"-p:MlNetGuideVersion={ws.Version}");
        var (code, stdout, stderr) = ws.Run(Path.Combine(bin, "PackageConsumer.dll"), expectSuccess: false);
        if (!ws.PatchNeeded)
        {
            AssertConsumerRan((code, stdout, stderr)); // this libstdc++ has GLIBCXX_3.4.32: nothing to fix
            return;
        }
        Assert.NotEqual(0, code);
        Assert.Contains("MlNetGuide.Modules.TorchSharpLoadException", stderr);
        Assert.Contains("needs GLIBCXX_3.4.32", stderr);
        Assert.Contains("-p:MlNetGuideSkipTorchSharpPatch=true", stderr);
        Assert.Contains("at MlNetGuide.Modules.LazyLinear..ctor", stderr); // the first call into the library
        Assert.False(Directory.Exists(Path.Combine(bin, "cpu")), "TorchSharp's fallback copied libtorch into the output");
    }

    private static void AssertConsumerRan((int code, string stdout, string stderr) r)
    {
        Assert.True(r.code == 0, $"consumer exited {r.code}\n{r.stdout}\n{r.stderr}");
        Assert.Contains("check: lazy MLP output shape (2, 10)", r.stdout);
        var acc = r.stdout.Split('\n').Single(l => l.StartsWith("check: Iris test accuracy", StringComparison.Ordinal));
        Assert.InRange(double.Parse(acc.Split(' ')[^1], System.Globalization.CultureInfo.InvariantCulture), 0.85, 1.0);
        Assert.Contains("check: History has 60 epochs", r.stdout);
        Assert.Contains("check: save/load predictions agree True", r.stdout); // mlContext.Model.Save, then a plain Model.Load (ONNX Runtime)
        Assert.Contains("plain zip scores agree True", r.stdout); // a token network's plain zip, its tokenizer inside, from the packages
        Assert.Contains("consumer: all checks passed", r.stdout);
    }

    /// <summary>The repository's origin remote when it is an https URL (what the packages may name), else null.</summary>
    private static string? OriginUrl
    {
        get
        {
            var psi = new ProcessStartInfo("git", ["-C", RepoData.Root, "remote", "get-url", "origin"]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            using var p = Process.Start(psi)!;
            string url = p.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit();
            return p.ExitCode == 0 && url.StartsWith("https://", StringComparison.Ordinal) ? url : null;
        }
    }

    private static XElement Nuspec(ZipArchive zip)
    {
        var entry = zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal));
        using var s = entry.Open();
        return XDocument.Load(s).Root!.Elements().Single(e => e.Name.LocalName == "metadata");
    }

    private static byte[] ReadAll(ZipArchiveEntry entry)
    {
        using var s = entry.Open();
        using var ms = new MemoryStream();
        s.CopyTo(ms);
        return ms.ToArray();
    }

    /// <summary>Packs once into a temp feed, copies the consumer beside it; removes both and the packages' cache entries.</summary>
    public sealed class Workspace : IDisposable
    {
        // Builds and runs are bounded by their work; this only stops a hung child from hanging the whole run.
        private static readonly TimeSpan HangGuard = TimeSpan.FromMinutes(30);
        private readonly Lock _gate = new();
        private readonly List<string> _sizes = [];
        private bool _built;

        public Workspace()
        {
            Root = Directory.CreateTempSubdirectory("mlnetguide-consumer-").FullName;
            Feed = Path.Combine(Root, "consumer", "feed");
            Consumer = Path.Combine(Root, "consumer");
            // A version no earlier run used, so the NuGet cache never serves a stale package under the same number.
            Version = $"0.1.0-ci.{DateTime.UtcNow:yyyyMMddHHmmss}.{Environment.ProcessId}";
            string configuration = typeof(Workspace).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Release";

            CopyDirectory(Path.Combine(RepoData.Root, "tests", "PackageConsumer"), Consumer);
            File.Copy(RepoData.IrisPath, Path.Combine(Consumer, "iris.csv"));
            foreach (var id in PackageIds)
                DotnetIn(RepoData.Root, "pack", Path.Combine(RepoData.Root, "src", id["MlNetGuide.".Length..], $"{id}.csproj"),
                    "--no-build", "-c", configuration, "-o", Feed, $"-p:VersionSuffix={Version["0.1.0-".Length..]}");
            PatchNeeded = OperatingSystem.IsLinux() && !LibstdcxxHas("GLIBCXX_3.4.32");
        }

        public string Root { get; }
        public string Feed { get; }
        public string Consumer { get; }
        public string Version { get; }
        public bool PatchNeeded { get; }
        public string BuildLog { get; private set; } = "";

        /// <summary>Restores and builds the consumer (default settings) once.</summary>
        public void EnsureBuilt()
        {
            lock (_gate)
            {
                if (_built) return;
                BuildLog = Dotnet("build", "-c", "Release", $"-p:MlNetGuideVersion={Version}");
                _built = true;
            }
        }

        public string Dotnet(params string[] args) => DotnetIn(Consumer, args);

        public (int code, string stdout, string stderr) Run(string dll, bool expectSuccess = true)
        {
            var r = Start(Consumer, [dll]);
            if (expectSuccess) Assert.True(r.code == 0, $"{dll} exited {r.code}\n{r.stdout}\n{r.stderr}");
            return r;
        }

        public void Record(string setting, string folder)
        {
            var (total, own) = Sizes(folder);
            lock (_gate) _sizes.Add($"{setting,-45} {total / 1048576.0,8:N0} MiB in files, {own / 1048576.0,8:N0} MiB not shared with the NuGet cache");
        }

        /// <summary>Bytes of all files, and bytes of files that are not hard links (their own disk space).</summary>
        public static (long total, long own) Sizes(string folder)
        {
            long total = 0, own = 0;
            var psi = new ProcessStartInfo("find") { RedirectStandardOutput = true, UseShellExecute = false };
            foreach (var a in new[] { folder, "-type", "f", "-printf", "%n %s\n" }) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            string? line;
            while ((line = p.StandardOutput.ReadLine()) is not null)
            {
                var parts = line.Split(' ');
                long size = long.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture);
                total += size;
                if (parts[0] == "1") own += size;
            }
            p.WaitForExit();
            return (total, own);
        }

        private static string DotnetIn(string dir, params string[] args)
        {
            var r = Start(dir, args, dotnetCommand: true);
            Assert.True(r.code == 0, $"dotnet {string.Join(' ', args)} exited {r.code}\n{r.stdout}\n{r.stderr}");
            return r.stdout;
        }

        private static (int code, string stdout, string stderr) Start(string dir, string[] args, bool dotnetCommand = false)
        {
            var psi = new ProcessStartInfo(ChildProcess.DotnetHost)
            {
                WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            };
            foreach (var a in args) psi.ArgumentList.Add(a);
            // The test host runs under MSBuild's and the test platform's variables; a user's shell has none of them.
            foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase) ||
                                                              k.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase)).ToList())
                psi.Environment.Remove(key);
            if (dotnetCommand) psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
            using var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start dotnet");
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(HangGuard))
            {
                p.Kill(entireProcessTree: true);
                throw new TimeoutException($"dotnet {string.Join(' ', args)} did not finish in {HangGuard.TotalMinutes} minutes (a hang guard, not a time limit)");
            }
            return (p.ExitCode, stdout.Result, stderr.Result);
        }

        private static bool LibstdcxxHas(string version)
        {
            foreach (var dir in new[] { "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/aarch64-linux-gnu" })
            {
                var lib = Path.Combine(dir, "libstdc++.so.6");
                if (File.Exists(lib))
                    return Encoding.Latin1.GetString(File.ReadAllBytes(lib)).Contains(version + "\0", StringComparison.Ordinal);
            }
            return false;
        }

        private static void CopyDirectory(string from, string to)
        {
            Directory.CreateDirectory(to);
            foreach (var file in Directory.GetFiles(from))
                File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
            foreach (var dir in Directory.GetDirectories(from))
                if (Path.GetFileName(dir) is not ("bin" or "obj" or "feed"))
                    CopyDirectory(dir, Path.Combine(to, Path.GetFileName(dir)));
        }

        public void Dispose()
        {
            try
            {
                var report = Path.Combine(RepoData.Root, "artifacts", "package-consumer.txt");
                Directory.CreateDirectory(Path.GetDirectoryName(report)!);
                File.WriteAllLines(report, [$"Package consumer (MlNetGuide.Estimators {Version} from a local feed), bin sizes:", .. _sizes]);
            }
            finally
            {
                Directory.Delete(Root, recursive: true);
                var cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p
                    ? p : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
                foreach (var id in PackageIds)
                {
                    var entry = Path.Combine(cache, id.ToLowerInvariant(), Version);
                    if (Directory.Exists(entry)) Directory.Delete(entry, recursive: true);
                    var idFolder = Path.GetDirectoryName(entry)!;
                    if (Directory.Exists(idFolder) && !Directory.EnumerateFileSystemEntries(idFolder).Any()) Directory.Delete(idFolder);
                }
            }
        }
    }
}
