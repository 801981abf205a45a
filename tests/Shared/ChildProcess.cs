using System.Diagnostics;

namespace MlNetGuide.Tests.Shared;

/// <summary>Runs the probe (tests/Probe), an app built beside the tests, or another program as a second process.</summary>
internal static class ChildProcess
{
    // Children are bounded by their work (steps, rows), not by time: this only stops a hung child from hanging the
    // test run, far beyond what a busy 2-core machine needs (a 2-minute limit once failed CI under load).
    private const int HangGuardMinutes = 20;

    public static string ProbePath => Path.Combine(AppContext.BaseDirectory, "MlNetGuide.Probe.dll");

    public static string DotnetHost =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet";

    public static Process StartProbe(params string[] args) => StartProbeWith(null, args);

    /// <summary>Starts the probe with extra environment variables (e.g. TMPDIR: the folder .NET's temp path names).</summary>
    public static Process StartProbeWith(IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        // Standard input is a pipe the test holds: a probe that waits for a line waits until the test writes or kills it.
        var psi = new ProcessStartInfo(DotnetHost) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(ProbePath);
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) psi.Environment[name] = value;
        return Process.Start(psi) ?? throw new InvalidOperationException("could not start the probe");
    }

    public static string RunProbe(params string[] args) => Run(StartProbe(args), args);

    public static string RunProbeWith(IReadOnlyDictionary<string, string> environment, params string[] args) => Run(StartProbeWith(environment, args), args);

    /// <summary>Runs the probe with extra environment variables; returns (exit code, stdout, stderr) whatever the exit code.</summary>
    public static (int ExitCode, string Stdout, string Stderr) RunProbeWithExitCode(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        using var p = StartProbeWith(environment, args);
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(HangGuardMinutes)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"probe {string.Join(" ", args)} did not finish in {HangGuardMinutes} minutes (a hang guard, not a time limit)");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Runs an app built beside the tests (e.g. "Digits.dll") with dotnet; returns (exit code, stdout, stderr).</summary>
    public static (int exitCode, string stdout, string stderr) RunApp(string dll, params string[] args) => RunAppIn(Path.GetTempPath(), dll, args);

    /// <summary>Like <see cref="RunApp"/>, in <paramref name="workingDirectory"/> (where the app writes relative paths).</summary>
    public static (int exitCode, string stdout, string stderr) RunAppIn(string workingDirectory, string dll, params string[] args)
    {
        var psi = new ProcessStartInfo(DotnetHost) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = workingDirectory };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, dll));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["NO_COLOR"] = "1";
        return Collect(psi, $"{dll} {string.Join(' ', args)}");
    }

    /// <summary>Runs any program (e.g. /usr/bin/python3) with the same hang guard; returns (exit code, stdout, stderr).</summary>
    public static (int exitCode, string stdout, string stderr) RunProgram(string fileName, params string[] args)
    {
        var psi = new ProcessStartInfo(fileName) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Collect(psi, $"{fileName} {string.Join(' ', args)}");
    }

    /// <summary>Starts <paramref name="psi"/>, reads both streams to the end and waits, under the hang guard.</summary>
    private static (int exitCode, string stdout, string stderr) Collect(ProcessStartInfo psi, string what)
    {
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {what}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(HangGuardMinutes)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{what} did not finish in {HangGuardMinutes} minutes (a hang guard, not a time limit)");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    private static string Run(Process started, string[] args)
    {
        using var p = started;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(HangGuardMinutes)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"probe {string.Join(" ", args)} did not finish in {HangGuardMinutes} minutes (a hang guard, not a time limit)");
        }
        Assert.True(p.ExitCode == 0, $"probe exited {p.ExitCode}: {stderr.Result}");
        return stdout.Result.Trim();
    }

    /// <summary>
    /// Waits until <paramref name="condition"/> holds while <paramref name="child"/> runs: fails if the child exits first,
    /// and kills it past the hang guard (not a time limit: a child that neither progresses nor exits).
    /// </summary>
    public static void WaitWhileRunning(Process child, Func<bool> condition, string what)
    {
        var guard = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            Assert.False(child.HasExited, $"the child exited (code {(child.HasExited ? child.ExitCode : 0)}) before {what}");
            if (guard.Elapsed > TimeSpan.FromMinutes(HangGuardMinutes))
            {
                child.Kill(entireProcessTree: true);
                throw new TimeoutException($"the child did not reach '{what}' in {HangGuardMinutes} minutes (a hang guard, not a time limit)");
            }
            Thread.Sleep(10);
        }
    }
}
