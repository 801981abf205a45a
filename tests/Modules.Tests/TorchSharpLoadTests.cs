using static TorchSharp.torch;

namespace MlNetGuide.Modules.Tests;

/// <summary>
/// Proves the native library loads in the test process (see build/TorchSharpNativeFix.targets), and that a load
/// failure is explained (TorchSharpRuntime). The real failure — a consumer built with the step turned off on Debian 12 —
/// is run by tests/EndToEnd.Tests/PackageConsumerTests.cs.
/// </summary>
public class TorchSharpLoadTests
{
    [Fact]
    public void LoadFromAnOutputFolderChecksTheFolderAndKeepsTheLoadedLibrary()
    {
        TorchSharpRuntime.LoadFrom(AppContext.BaseDirectory);   // this test's output holds runtimes/<rid>/native
        using var x = ones(2, 3);
        Assert.Equal(6f, x.sum().item<float>());

        var missing = Path.Combine(Path.GetTempPath(), "no-such-build-" + Guid.NewGuid().ToString("N"));
        var e = Assert.Throws<TorchSharpLoadException>(() => TorchSharpRuntime.LoadFrom(missing));
        Assert.Contains(missing, e.Message);
        Assert.Contains("dotnet build notebooks -c Release", e.Message);
    }

    [Fact]
    public void MatmulComputesOnCpu()
    {
        using var a = tensor(new float[] { 1, 2, 3, 4 }, 2, 2);
        using var b = tensor(new float[] { 5, 6, 7, 8 }, 2, 2);
        using var c = a.matmul(b);
        Assert.Equal(new float[] { 19, 22, 43, 50 }, c.data<float>().ToArray());
    }

    [Fact]
    public void EnsureLoadedPassesWhereTorchSharpLoads()
    {
        TorchSharpRuntime.EnsureLoaded();
        TorchSharpRuntime.EnsureLoaded(); // the second call is one field read
    }

    [Fact]
    public void AMissingGlibcxxVersionIsNamedWithTheFix()
    {
        const string lib = "/app/runtimes/linux-x64/native/libLibTorchSharp.so";
        string dlerror = $"/no/such/dir/libstdc++.so.6: version `GLIBCXX_3.4.32' not found (required by {lib})";
        var f = TorchSharpRuntime.Explain(dlerror, lib, inner: null);
        Assert.Equal("GLIBCXX_3.4.32", f.MissingGlibcxx);
        Assert.Contains("needs GLIBCXX_3.4.32", f.Message);
        Assert.Contains("this system's libstdc++ does not have it", f.Message); // the named libstdc++ is unreadable
        Assert.Contains("-p:MlNetGuideSkipTorchSharpPatch=true", f.Message);
        Assert.Contains("GCC 13 or newer", f.Message);
        Assert.Contains($"Library: {lib}", f.Message);
        Assert.Contains("Loader: " + dlerror, f.Message);
    }

    [Fact]
    public void TheVersionIsAlsoFoundInsideTorchSharpsLongMessage()
    {
        // TorchSharp's DllNotFoundException lists every path it tried; one line holds the loader's reason.
        string text = "DllNotFoundException: Unable to load shared library 'LibTorchSharp' or one of its dependencies.\n" +
                      "/a/LibTorchSharp.so: cannot open shared object file: No such file or directory\n" +
                      "/lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.31' not found (required by /b/libLibTorchSharp.so)\n";
        var f = TorchSharpRuntime.Explain(text, libraryPath: null, inner: null);
        Assert.Equal("GLIBCXX_3.4.31", f.MissingGlibcxx);
        Assert.Contains("Loader: /lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.31' not found", f.Message);
    }

    [Fact]
    public void AMissingLibtorchPackageIsNamed()
    {
        string text = "NotSupportedException: This application or script uses TorchSharp but doesn't contain a reference to " +
                      "libtorch-cpu-linux-x64, Version=2.10.0.0.\nTypeInitializationException: The type initializer for 'TorchSharp.torch' threw an exception.";
        var f = TorchSharpRuntime.Explain(text, null, null);
        Assert.Null(f.MissingGlibcxx);
        Assert.Contains("libtorch is not in this app's output", f.Message);
        Assert.Contains("TorchSharp-cpu", f.Message);
        Assert.Contains("TorchSharp said: NotSupportedException: This application", f.Message); // the cause, not the wrapper
    }

    [Fact]
    public void TheHighestGlibcxxOfALibstdcxxFileIsRead()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(path, "xGLIBCXX_3.4.9\0GLIBCXX_3.4.30\0GLIBCXX_3.4.29\0GLIBCXX_3.4\0"u8.ToArray());
            Assert.Equal("GLIBCXX_3.4.30", TorchSharpRuntime.HighestGlibcxx(path));
            Assert.Null(TorchSharpRuntime.HighestGlibcxx(path + ".missing"));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
