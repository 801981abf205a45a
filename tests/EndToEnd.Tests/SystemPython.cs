using MlNetGuide.Tests.Shared;

namespace MlNetGuide.EndToEnd.Tests;

/// <summary>
/// The system python3 and the Debian packages our reference checks need (python3-onnx, python3-torch). A pyenv or
/// venv python3 earlier on PATH may not see them, so /usr/bin/python3 is tried first.
/// </summary>
internal static class SystemPython
{
    private static readonly Dictionary<string, Lazy<string?>> Found = new(StringComparer.Ordinal);

    /// <summary>A python3 that can import <paramref name="module"/>, or null.</summary>
    public static string? With(string module)
    {
        Lazy<string?> lazy;
        lock (Found)
            if (!Found.TryGetValue(module, out lazy!))
                Found[module] = lazy = new(() => new[] { "/usr/bin/python3", "python3" }.FirstOrDefault(p => CanImport(p, module)));
        return lazy.Value;
    }

    /// <summary>True under CI=true or <paramref name="variable"/>=1: a missing package is then a failure, not a skip.</summary>
    public static bool Required(string variable) =>
        string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase)
        || Environment.GetEnvironmentVariable(variable) == "1";

    private static bool CanImport(string python, string module)
    {
        try { return ChildProcess.RunProgram(python, "-c", $"import {module}").exitCode == 0; }
        catch (System.ComponentModel.Win32Exception) { return false; } // no such program
    }
}

/// <summary>
/// A test that needs a Python package: skipped with a message saying what to install when it is missing — except
/// under CI (CI=true, or the package's MLNETGUIDE_REQUIRE_* variable set to 1, as .ci/run does), where it runs and
/// fails, so that a CI machine without the package cannot pass silently.
/// </summary>
public abstract class SystemPythonFactAttribute : FactAttribute
{
    protected SystemPythonFactAttribute(string module, string requireVariable, string whatAndHowToInstall)
    {
        if (!SystemPython.Required(requireVariable) && SystemPython.With(module) is null)
            Skip = $"{whatAndHowToInstall}. Under CI=true or {requireVariable}=1 this test fails instead.";
    }
}
