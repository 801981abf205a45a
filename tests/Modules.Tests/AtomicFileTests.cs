using System.Diagnostics;
using MlNetGuide.Tests.Shared;
using static TorchSharp.torch;

namespace MlNetGuide.Modules.Tests;

/// <summary>Temporary files of interrupted saves are recognisable, and the next save of the same target removes them.</summary>
public sealed class AtomicFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-atomic-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string[] Temporaries(string target) => Directory.GetFiles(_dir, $".{target}.*.mlnetguide.tmp");

    private static int DeadProcessId()
    {
        using var p = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        p.WaitForExit();
        return p.Id;
    }

    private string Stale(string target, int pid)
    {
        var path = Path.Combine(_dir, $".{target}.{pid}.{Guid.NewGuid():N}.mlnetguide.tmp");
        File.WriteAllBytes(path, new byte[4096]);
        return path;
    }

    [Fact]
    public void ASaveRemovesTheTemporariesOfDeadSaversOfTheSameTargetOnly()
    {
        int dead = DeadProcessId();
        var stale = Stale("model.bin", dead);
        var live = Stale("model.bin", Environment.ProcessId);       // a save in progress on another thread
        var parent = Stale("model.bin", Process.GetProcessById(1).Id); // a running process
        var otherTarget = Stale("other.bin", dead);
        var notOurs = Path.Combine(_dir, ".model.bin.notes.tmp");
        File.WriteAllText(notOurs, "a user's file");

        using var x = arange(4, dtype: ScalarType.Float32);
        TensorIO.Save(x, Path.Combine(_dir, "model.bin"));

        Assert.False(File.Exists(stale));
        Assert.True(File.Exists(live));
        Assert.True(File.Exists(parent));
        Assert.True(File.Exists(otherTarget));
        Assert.True(File.Exists(notOurs));
    }

    [Fact]
    public void KillNineMidSaveLeavesATemporaryThatTheNextSaveRemoves()
    {
        var path = Path.Combine(_dir, "big.bin");
        using var probe = ChildProcess.StartProbe("slow-save", path, "200");
        Assert.Equal("saving", probe.StandardOutput.ReadLine());
        // Bounded by the child's work, not by a clock: wait until its temporary file has data, or until it exits.
        ChildProcess.WaitWhileRunning(probe, () => Temporaries("big.bin").Any(f => new FileInfo(f).Length > 0), "its temporary file had data");
        probe.Kill(entireProcessTree: true); // SIGKILL: no finally block runs in the child
        probe.WaitForExit();
        Assert.Single(Temporaries("big.bin"));

        using var x = arange(4, dtype: ScalarType.Float32);
        TensorIO.Save(x, path);
        Assert.Empty(Temporaries("big.bin"));
        using var back = TensorIO.Load(path);
        TensorAssert.Equal(x, back);
    }
}
