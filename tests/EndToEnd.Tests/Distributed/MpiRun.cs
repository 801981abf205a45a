using System.Diagnostics;
using MlNetGuide.Tests.Shared;

namespace MlNetGuide.EndToEnd.Tests.Distributed;

/// <summary>
/// Launches the probe as a real MPI job with Open MPI's <c>mpirun</c>, on loopback, bounded by <c>mpirun --timeout</c>
/// (generous: it only ends a job that hangs, such as ranks waiting for a collective that never comes).
/// </summary>
internal static class MpiRun
{
    public const int TimeoutSeconds = 600;

    /// <summary>The two transports the tests cover: shared memory (one machine) and TCP (what runs between machines).</summary>
    public static readonly string[][] Transports = [[], ["--mca", "btl", "self,tcp"]];

    private static readonly Lazy<string?> OpenMpiRun = new(() =>
    {
        try
        {
            var (code, stdout, _) = ChildProcess.RunProgram("mpirun", "--version");
            return code == 0 && stdout.Contains("Open MPI", StringComparison.Ordinal) ? "mpirun" : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null; // not installed
        }
    });

    /// <summary>Open MPI's mpirun, or null when it is missing (or another MPI's).</summary>
    public static string? Mpirun => OpenMpiRun.Value;

    /// <summary>MPICH's launcher as Debian's mpich package installs it beside Open MPI's, or null.</summary>
    public static string? MpichRun => File.Exists("/usr/bin/mpirun.mpich") ? "/usr/bin/mpirun.mpich" : null;

    /// <summary>Runs <c>mpirun.mpich -np <paramref name="ranks"/> dotnet probe args…</c> (MPICH's hydra, bounded by MPIEXEC_TIMEOUT).</summary>
    public static (int ExitCode, string Output) MpichProbe(int ranks, params string[] args)
    {
        var psi = new ProcessStartInfo(MpichRun ?? throw new InvalidOperationException("MPICH is missing: apt-get install mpich"))
            { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-np", ranks.ToString(System.Globalization.CultureInfo.InvariantCulture), ChildProcess.DotnetHost, ChildProcess.ProbePath }.Concat(args))
            psi.ArgumentList.Add(a);
        psi.Environment["MPIEXEC_TIMEOUT"] = TimeoutSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start mpirun.mpich");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit(); // MPIEXEC_TIMEOUT bounds it
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>Runs <c>mpirun -np <paramref name="ranks"/> [transport] dotnet probe args…</c>; returns the exit code and everything printed.</summary>
    public static (int ExitCode, string Output) Probe(int ranks, string[] transport, params string[] args) => App(ranks, transport, ChildProcess.ProbePath, args);

    /// <summary>Runs <c>mpirun -np <paramref name="ranks"/> [transport] dotnet <paramref name="dll"/> args…</c> (an app built beside the tests).</summary>
    public static (int ExitCode, string Output) App(int ranks, string[] transport, string dll, params string[] args)
    {
        var mpirun = Mpirun ?? throw new InvalidOperationException("Open MPI's mpirun is missing: apt-get install openmpi-bin");
        var psi = new ProcessStartInfo(mpirun) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "--allow-run-as-root", "--oversubscribe", "--timeout", TimeoutSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture), "-np", ranks.ToString(System.Globalization.CultureInfo.InvariantCulture) })
            psi.ArgumentList.Add(a);
        foreach (var a in transport) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add(ChildProcess.DotnetHost);
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, dll));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["NO_COLOR"] = "1";
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start mpirun");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit(); // mpirun --timeout bounds it
        string output = stdout.Result + stderr.Result;
        Assert.False(output.Contains("time limit for job execution has been reached", StringComparison.Ordinal),
            $"the MPI job hung until mpirun's {TimeoutSeconds} s timeout ended it:\n{output}");
        return (p.ExitCode, output);
    }
}

/// <summary>
/// A test that launches MPI jobs: skipped with a message when Open MPI's mpirun is missing, except under CI=true (or
/// MLNETGUIDE_REQUIRE_MPI=1), where it runs and fails, so that a CI machine without MPI cannot pass silently.
/// </summary>
public sealed class MpiTheoryAttribute : TheoryAttribute
{
    public MpiTheoryAttribute()
    {
        if (!SystemPython.Required("MLNETGUIDE_REQUIRE_MPI") && MpiRun.Mpirun is null)
            Skip = "Open MPI's mpirun is missing (apt-get install openmpi-bin). Under CI=true or MLNETGUIDE_REQUIRE_MPI=1 this test fails instead.";
    }
}

/// <summary>A test that launches MPICH jobs: skipped when Debian's mpich is missing, except under CI=true (or MLNETGUIDE_REQUIRE_MPI=1).</summary>
public sealed class MpichFactAttribute : FactAttribute
{
    public MpichFactAttribute()
    {
        if (!SystemPython.Required("MLNETGUIDE_REQUIRE_MPI") && MpiRun.MpichRun is null)
            Skip = "MPICH is missing (apt-get install mpich). Under CI=true or MLNETGUIDE_REQUIRE_MPI=1 this test fails instead.";
    }
}

/// <inheritdoc cref="MpiTheoryAttribute"/>
public sealed class MpiFactAttribute : FactAttribute
{
    public MpiFactAttribute()
    {
        if (!SystemPython.Required("MLNETGUIDE_REQUIRE_MPI") && MpiRun.Mpirun is null)
            Skip = "Open MPI's mpirun is missing (apt-get install openmpi-bin). Under CI=true or MLNETGUIDE_REQUIRE_MPI=1 this test fails instead.";
    }
}
