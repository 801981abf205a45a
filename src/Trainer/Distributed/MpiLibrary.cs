using System.Runtime.InteropServices;

namespace MlNetGuide.Training;

/// <summary>
/// Finds the MPI library of the launcher that started this process: <c>MLNETGUIDE_MPI_LIBRARY</c> if set; else Open
/// MPI's <c>libmpi.so.40</c> under Open MPI's <c>mpirun</c>, MPICH's (and Intel MPI's) <c>libmpi.so.12</c> under a PMI
/// launcher (<c>mpiexec.hydra</c>, <c>srun</c>), MS-MPI's <c>msmpi.dll</c> on Windows; else whichever of those loads.
/// </summary>
internal static class MpiLibrary
{
    /// <summary>The environment variable that names the MPI library to load instead.</summary>
    public const string OverrideVariable = "MLNETGUIDE_MPI_LIBRARY";

    /// <summary>
    /// The number of ranks the launcher says it started (Open MPI's <c>OMPI_COMM_WORLD_SIZE</c>, a PMI launcher's
    /// <c>PMI_SIZE</c>, or Slurm's task count under PMIx), or null when no MPI launcher started this process.
    /// </summary>
    public static int? LaunchedRanks()
    {
        foreach (var name in new[] { "OMPI_COMM_WORLD_SIZE", "PMI_SIZE" })
            if (int.TryParse(Environment.GetEnvironmentVariable(name), out int n)) return n;
        if (Environment.GetEnvironmentVariable("PMIX_RANK") is not null)
            // PMIx states no size: Slurm's task count, else "more than one" (2), which only picks MPI; MPI_Comm_size then tells.
            return int.TryParse(Environment.GetEnvironmentVariable("SLURM_STEP_NUM_TASKS") ?? Environment.GetEnvironmentVariable("SLURM_NTASKS"), out int n) ? n : 2;
        return null;
    }

    /// <summary>The ranks the launcher's own variable states (Open MPI's or PMI's), or null where it states none.</summary>
    public static int? StatedRanks()
    {
        foreach (var name in new[] { "OMPI_COMM_WORLD_SIZE", "PMI_SIZE" })
            if (int.TryParse(Environment.GetEnvironmentVariable(name), out int n)) return n;
        return null;
    }

    /// <summary>The launcher's variable that told <see cref="LaunchedRanks"/>, for messages.</summary>
    public static string LauncherEvidence() =>
        new[] { "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK" }.Select(n => (n, v: Environment.GetEnvironmentVariable(n))).FirstOrDefault(p => p.v is not null) is { v: not null } hit
            ? $"{hit.n}={hit.v}" : "no MPI launcher variable";

    /// <summary>Loads the library, process-wide (MPI's own plug-ins resolve its symbols from it).</summary>
    /// <exception cref="DllNotFoundException">None loads; the message names the packages that provide one.</exception>
    public static (nint Handle, string Path) Load()
    {
        var tried = new List<string>();
        foreach (var candidate in Candidates())
        {
            if (TryLoadGlobal(candidate, out var handle, out var error)) return (handle, candidate);
            tried.Add($"{candidate} ({error})");
        }
        throw new DllNotFoundException(
            $"Distributed training needs an MPI library and none loaded ({LauncherEvidence()}); tried {string.Join("; ", tried)}. " +
            "Install one: on Debian or Ubuntu `apt-get install openmpi-bin` (Open MPI) or `apt-get install mpich`; on RHEL `dnf install openmpi`; " +
            $"on Windows MS-MPI. Or set {OverrideVariable} to the library's path.");
    }

    private static IEnumerable<string> Candidates()
    {
        if (Environment.GetEnvironmentVariable(OverrideVariable) is { Length: > 0 } chosen)
        {
            yield return chosen;
            yield break;
        }
        if (OperatingSystem.IsWindows()) { yield return "msmpi.dll"; yield break; }
        if (OperatingSystem.IsMacOS()) { yield return "libmpi.dylib"; yield return "libmpi.40.dylib"; yield return "libmpi.12.dylib"; yield break; }
        // Open MPI's mpirun needs Open MPI's library; a PMI launcher (MPICH's hydra, Intel MPI, srun) an MPICH-ABI one.
        // Debian names MPICH's libmpich.so.12, others libmpi.so.12.
        string[] order = Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is not null ? ["libmpi.so.40"]
            : Environment.GetEnvironmentVariable("PMI_SIZE") is not null ? ["libmpi.so.12", "libmpich.so.12"]
            : ["libmpi.so.40", "libmpi.so.12", "libmpich.so.12"];
        foreach (var name in order) yield return name;
        yield return "libmpi.so";
    }

    // Open MPI loads its transports as plug-ins that expect libmpi's symbols to be global, as they are for a program
    // linked against it; .NET's NativeLibrary.Load opens libraries RTLD_LOCAL, so on Linux dlopen is called directly.
    private static bool TryLoadGlobal(string name, out nint handle, out string error)
    {
        error = "";
        if (OperatingSystem.IsLinux())
        {
            const int RtldNow = 2, RtldGlobal = 0x100;
            handle = dlopen(name, RtldNow | RtldGlobal);
            if (handle != 0) return true;
            error = Marshal.PtrToStringUTF8(dlerror()) ?? "not found";
            return false;
        }
        if (NativeLibrary.TryLoad(name, out handle)) return true;
        error = "not found";
        return false;
    }

    [DllImport("libdl.so.2", EntryPoint = "dlopen")] // glibc keeps libdl.so.2 for this (dlopen moved into libc.so.6 in 2.34)
    private static extern nint dlopen([MarshalAs(UnmanagedType.LPUTF8Str)] string file, int mode);

    [DllImport("libdl.so.2", EntryPoint = "dlerror")]
    private static extern nint dlerror();
}
