namespace MlNetGuide.Modules.Tests;

/// <summary>The ELF edit behind build/TorchSharpNativeFix.targets: exact, idempotent, and refusing anything unexpected.</summary>
public class NativeLibraryPatchTests
{
    private static string PackagedLibrary()
    {
        var root = Environment.GetEnvironmentVariable("NUGET_PACKAGES") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        return Path.Combine(root, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
    }

    [Fact]
    public void MarksTheOneVersionNeedWeakChangingOneByteAndIsIdempotent()
    {
        var path = PackagedLibrary();
        Assert.True(File.Exists(path), $"the TorchSharp package is restored: {path}");
        var original = File.ReadAllBytes(path);
        var patched = (byte[])original.Clone();
        var edit = PatchLibTorchSharpGlibcxx.Patch(patched);
        Assert.NotNull(edit);
        Assert.Contains("vna_flags 0x0 -> 0x2", edit);
        var changed = Enumerable.Range(0, original.Length).Where(i => original[i] != patched[i]).ToList();
        Assert.Single(changed);
        Assert.Equal(2, patched[changed[0]]);
        Assert.Null(PatchLibTorchSharpGlibcxx.Patch(patched)); // already weak: nothing to do
    }

    [Fact]
    public void TheCopyTheTestsLoadedIsPatchedAndTheCacheIsNot()
    {
        var output = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.Null(PatchLibTorchSharpGlibcxx.Patch(File.ReadAllBytes(output)));
        Assert.NotNull(PatchLibTorchSharpGlibcxx.Patch(File.ReadAllBytes(PackagedLibrary())));
    }

    [Fact]
    public void RefusesFilesThatAreNotTheExpectedElf()
    {
        Assert.Contains("not an ELF file", Assert.Throws<InvalidDataException>(() => PatchLibTorchSharpGlibcxx.Patch("hello, world, this is not a library at all: 64+ bytes of text..."u8.ToArray())).Message);
        var lib = File.ReadAllBytes(PackagedLibrary());
        var truncated = lib[..4096];
        Assert.Throws<InvalidDataException>(() => PatchLibTorchSharpGlibcxx.Patch(truncated));
        var elf32 = (byte[])lib.Clone();
        elf32[4] = 1;
        Assert.Contains("64-bit", Assert.Throws<InvalidDataException>(() => PatchLibTorchSharpGlibcxx.Patch(elf32)).Message);
        // Another shared object that never asked for GLIBCXX_3.4.32 (the C library itself).
        var libc = new[] { "/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6" }.FirstOrDefault(File.Exists);
        if (libc is not null)
            Assert.Contains("GLIBCXX_3.4.32", Assert.Throws<InvalidDataException>(() => PatchLibTorchSharpGlibcxx.Patch(File.ReadAllBytes(libc))).Message);
    }
}
