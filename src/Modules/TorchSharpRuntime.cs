using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// Checks once per process that TorchSharp's native library loads, and turns a failure into a
/// <see cref="TorchSharpLoadException"/> that names the cause and the fix. MlNetGuide's public entry points (module
/// constructors, <c>Trainer</c>, <c>Devices</c>, the estimators, <c>NeuralModel.Load</c>) call it first; after the first
/// call it costs one field read.
/// </summary>
/// <remarks>
/// TorchSharp's own errors bury the cause: a <c>DllNotFoundException</c> that lists a dozen paths, one of which says
/// <c>GLIBCXX_3.4.32 not found</c>, or a <c>TypeInitializationException</c> about a missing libtorch package after
/// copying libtorch into a <c>cpu</c> folder of the output. On Linux the library is opened here first (dlopen gives the
/// loader's own message), so that the common case — Debian 12 or Ubuntu 22.04 without the build step — fails before
/// TorchSharp's fallback copies anything.
/// </remarks>
public static class TorchSharpRuntime
{
    /// <summary>The libstdc++ symbol version TorchSharp 0.107's libLibTorchSharp.so asks for (GCC 13).</summary>
    internal const string NeededGlibcxx = "GLIBCXX_3.4.32";
    private const string LinuxLibrary = "libLibTorchSharp.so";

    private static readonly Lazy<Failure?> s_failure = new(Probe, LazyThreadSafetyMode.ExecutionAndPublication);
    private static volatile bool s_loaded;

    /// <summary>
    /// Loads TorchSharp's native library if it is not loaded yet; throws <see cref="TorchSharpLoadException"/> naming the
    /// cause and the fix when it cannot be loaded. Call it at start-up to fail early; MlNetGuide's entry points call it.
    /// </summary>
    /// <exception cref="TorchSharpLoadException">TorchSharp's native library cannot be loaded in this process.</exception>
    public static void EnsureLoaded()
    {
        if (s_loaded) return;
        if (s_failure.Value is { } f)
            throw new TorchSharpLoadException(f.Message, f.MissingGlibcxx, f.Inner);
        s_loaded = true;
    }

    /// <summary>
    /// For hosts that are not the app whose output holds TorchSharp — a notebook kernel, a script runner: loads
    /// TorchSharp's native library from <paramref name="outputFolder"/>, a build output with <c>runtimes/&lt;rid&gt;/native</c>
    /// (e.g. the notebooks' <c>bin/Release/net10.0</c>), then checks as <see cref="EnsureLoaded"/> does. Call it once,
    /// before the first tensor. Once TorchSharp is loaded in this process it only checks that the folder holds the library.
    /// In a notebook kernel it also keeps that folder's assemblies loaded once and their native libraries (SkiaSharp's)
    /// found there.
    /// </summary>
    /// <exception cref="TorchSharpLoadException">The library is not in that folder, or cannot be loaded.</exception>
    public static void LoadFrom(string outputFolder)
    {
        ArgumentException.ThrowIfNullOrEmpty(outputFolder);
        var (rid, file) = OperatingSystem.IsWindows() ? ("win-x64", "LibTorchSharp.dll")
            : OperatingSystem.IsMacOS() ? ("osx-arm64", "libLibTorchSharp.dylib")
            : (RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? "linux-arm64" : "linux-x64", LinuxLibrary);
        var path = Path.GetFullPath(Path.Combine(outputFolder, "runtimes", rid, "native", file));
        if (!File.Exists(path))
            throw new TorchSharpLoadException(
                $"TorchSharp's native library is not at {path}: build the project whose output folder that is first " +
                $"(for the notebooks: dotnet build notebooks -c Release). Current directory: {Environment.CurrentDirectory}.");
        ServeFolder(Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(path))))!, Path.GetDirectoryName(path)!);
        if (s_loaded) return;
        if (OperatingSystem.IsLinux() && TryDlopen(path) is { } loaderError) // the loader's message, explained
        {
            var f = Explain(loaderError, path, inner: null);
            throw new TorchSharpLoadException(f.Message, f.MissingGlibcxx, f.Inner);
        }
        if (!OperatingSystem.IsLinux()) NativeLibrary.Load(path);
        EnsureLoaded(); // TorchSharp now finds the library loaded under its name
    }

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, bool> s_servedFolders = new();

    /// <summary>
    /// A notebook kernel (Roslyn scripting) loads each <c>#r</c>'d assembly, and each dependency it resolves, into a load
    /// context of its own. Two things then break: an assembly that two others need is loaded twice (TorchSharp, for the
    /// script and for TorchSharp.PyBridge: their <c>Tensor</c> types differ and PyBridge's savers throw
    /// <c>MissingMethodException</c>), and the native libraries the output carries (SkiaSharp's, for the plots) are not
    /// found. For the assemblies of <paramref name="folder"/> only: a second load of one returns the first, and their
    /// native libraries resolve from <paramref name="nativeFolder"/>. In an ordinary app (one load context) neither fires.
    /// </summary>
    private static void ServeFolder(string folder, string nativeFolder)
    {
        if (!s_servedFolders.TryAdd(folder, true)) return;
        bool InFolder(System.Reflection.Assembly a) => !a.IsDynamic && a.Location.Length > 0 &&
            string.Equals(Path.GetDirectoryName(a.Location), folder, OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal);
        System.Runtime.Loader.AssemblyLoadContext.Default.Resolving += (_, name) =>
            AppDomain.CurrentDomain.GetAssemblies().FirstOrDefault(a => a.GetName().Name == name.Name && InFolder(a));
        AppDomain.CurrentDomain.AssemblyLoad += (_, e) =>
        {
            var assembly = e.LoadedAssembly;
            if (System.Runtime.Loader.AssemblyLoadContext.GetLoadContext(assembly) == System.Runtime.Loader.AssemblyLoadContext.Default || !InFolder(assembly))
                return;
            try
            {
                NativeLibrary.SetDllImportResolver(assembly, (name, _, _) => LoadNative(nativeFolder, name));
            }
            catch (InvalidOperationException)
            {
                // The assembly set a resolver of its own; it knows best.
            }
        };
    }

    private static IntPtr LoadNative(string nativeFolder, string name)
    {
        foreach (var file in new[] { name, $"lib{name}.so", $"{name}.so", $"{name}.dll", $"lib{name}.dylib", $"{name}.dylib" })
        {
            var candidate = Path.Combine(nativeFolder, file);
            if (File.Exists(candidate) && NativeLibrary.TryLoad(candidate, out var handle)) return handle;
        }
        return IntPtr.Zero; // .NET's own probing goes on
    }

    /// <summary>For module constructors: <c>: base(TorchSharpRuntime.Checked(nameof(X)))</c> runs the check before TorchSharp's constructor.</summary>
    internal static string Checked(string moduleName)
    {
        EnsureLoaded();
        return moduleName;
    }

    internal sealed record Failure(string Message, string? MissingGlibcxx, Exception? Inner);

    private static Failure? Probe()
    {
        string? libraryPath = null;
        if (OperatingSystem.IsLinux())
        {
            libraryPath = FindLinuxLibrary();
            if (libraryPath is not null && TryDlopen(libraryPath) is { } loaderError)
                return Explain(loaderError, libraryPath, inner: null);
        }
        try
        {
            InitializeDeviceType(DeviceType.CPU);
            return null;
        }
        catch (Exception ex)
        {
            return Explain(AllMessages(ex), libraryPath, ex);
        }
    }

    /// <summary>Turns a loader or TorchSharp error text into the message a user can act on.</summary>
    internal static Failure Explain(string error, string? libraryPath, Exception? inner)
    {
        var missing = Regex.Match(error, @"version [`'](GLIBCXX_[0-9.]+)' not found");
        if (missing.Success)
        {
            string version = missing.Groups[1].Value;
            var stdcxx = Regex.Match(error, @"(/\S*libstdc\+\+\.so\.6): version");
            string has = stdcxx.Success && HighestGlibcxx(stdcxx.Groups[1].Value) is { } highest
                ? $"this system's {stdcxx.Groups[1].Value} stops at {highest}"
                : "this system's libstdc++ does not have it";
            string message =
                $"TorchSharp cannot load its native library: {LinuxLibrary} needs {version} (GCC 13's libstdc++) and {has} " +
                "(Debian 12 and Ubuntu 22.04 ship GLIBCXX_3.4.30). " +
                "MlNetGuide.Modules fixes this in the output folder of every build and publish on such a system; it did not run " +
                "for this copy: either it was turned off with -p:MlNetGuideSkipTorchSharpPatch=true, or the app was built or " +
                "published on a machine whose libstdc++ has the version and then copied here. " +
                "Fix: build or publish on this machine (or one like it) without MlNetGuideSkipTorchSharpPatch, or install " +
                $"a libstdc++ with {version} (GCC 13 or newer). " +
                $"Library: {libraryPath ?? "(see the loader's message)"}. Loader: {FirstLineWith(error, version)}";
            return new Failure(message, version, inner);
        }
        if (error.Contains("libtorch-cpu", StringComparison.OrdinalIgnoreCase) ||
            Regex.IsMatch(error, @"lib(torch|torch_cpu|c10)\.so: cannot open shared object file"))
        {
            string message =
                "TorchSharp cannot load its native library: libtorch is not in this app's output. MlNetGuide.Modules depends " +
                "on the TorchSharp-cpu package, which brings libtorch through libtorch-cpu-<platform>; check that nothing " +
                "excludes it (ExcludeAssets/PrivateAssets on the package reference), that a RuntimeIdentifier you set is one " +
                "it ships (linux-x64, win-x64, osx-arm64), and that a published folder was copied whole. " +
                $"TorchSharp said: {FirstLine(error)}";
            return new Failure(message, null, inner);
        }
        return new Failure(
            $"TorchSharp cannot load its native library{(libraryPath is null ? "" : $" ({libraryPath})")}: {FirstLine(error)}",
            null, inner);
    }

    private static string? FindLinuxLibrary()
    {
        string rid = RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? "linux-arm64" : "linux-x64";
        foreach (var path in new[]
                 {
                     Path.Combine(AppContext.BaseDirectory, LinuxLibrary),
                     Path.Combine(AppContext.BaseDirectory, "runtimes", rid, "native", LinuxLibrary),
                 })
        {
            if (File.Exists(path)) return path;
        }
        return null;
    }

    /// <summary>dlopen's error text, or null when the library loaded (it then stays loaded, as TorchSharp loads it next).</summary>
    private static string? TryDlopen(string path)
    {
        try
        {
            const int RtldLazy = 1; // what NativeLibrary.Load uses; version requirements are checked either way
            // Binding a P/Invoke on its first call goes through dlopen/dlsym and clears the error state: bind dlerror
            // now, so that the call after dlopen returns dlopen's own message.
            _ = dlerror();
            if (dlopen(path, RtldLazy) != 0) return null;
            return Marshal.PtrToStringUTF8(dlerror()) ?? "dlopen failed without a message";
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            return null; // no glibc dlopen here (musl, or glibc < 2.34): leave the diagnosis to TorchSharp's exception
        }
    }

    [DllImport("libc.so.6", CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
    private static extern nint dlopen([MarshalAs(UnmanagedType.LPUTF8Str)] string fileName, int flags);

    [DllImport("libc.so.6")]
    private static extern nint dlerror();

    /// <summary>The highest GLIBCXX_3.4.N version string in a libstdc++ file, or null if it cannot be read.</summary>
    internal static string? HighestGlibcxx(string libstdcxxPath)
    {
        try
        {
            var text = Encoding.Latin1.GetString(File.ReadAllBytes(libstdcxxPath));
            return Regex.Matches(text, @"GLIBCXX_3\.4\.([0-9]+)\0")
                .Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture))
                .DefaultIfEmpty(-1).Max() is var n and >= 0 ? $"GLIBCXX_3.4.{n}" : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Every message of the chain, innermost (the cause) first.</summary>
    private static string AllMessages(Exception ex)
    {
        var chain = new List<Exception>();
        for (Exception? e = ex; e is not null; e = e.InnerException) chain.Add(e);
        var sb = new StringBuilder();
        for (int i = chain.Count - 1; i >= 0; i--)
            sb.Append(chain[i].GetType().Name).Append(": ").AppendLine(chain[i].Message);
        return sb.ToString();
    }

    private static string FirstLine(string text) => text.Split('\n', 2)[0].Trim();

    private static string FirstLineWith(string text, string needle) =>
        text.Split('\n').FirstOrDefault(l => l.Contains(needle, StringComparison.Ordinal))?.Trim() ?? FirstLine(text);
}
