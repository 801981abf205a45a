using System.Runtime.InteropServices;
using System.Text;

namespace MlNetGuide.Training;

/// <summary>
/// <see cref="ICollectives"/> on MPI through a thin binding of our own: the thirteen MPI functions training needs, taken
/// from whichever <c>libmpi</c> the launcher provides. Hand-written because the one .NET binding on NuGet (MPI.NET 1.4)
/// P/Invokes MS-MPI's <c>msmpi.dll</c> with MS-MPI's integer handles and crashes on Open MPI, whose handles are pointers.
/// </summary>
/// <remarks>
/// <para>Handles: Open MPI's are the addresses of its exported globals (<c>ompi_mpi_comm_world</c>, …) and its
/// <c>MPI_IN_PLACE</c> is 1; MPICH's (and Intel MPI's and MS-MPI's, which share MPICH's ABI) are documented integer
/// constants and <c>MPI_IN_PLACE</c> is −1. Which one a library is follows from whether it exports
/// <c>ompi_mpi_comm_world</c>. Both kinds travel as a pointer-sized integer, which both x64 calling conventions pass as
/// a C <c>int</c> where MPICH expects one.</para>
/// <para>One per process (MPI is initialized once): <see cref="Instance"/>. It initializes MPI with
/// <c>MPI_THREAD_SERIALIZED</c> (calls may come from any thread, one at a time) unless something else in the process
/// already did, and finalizes it when the process exits if it initialized it.</para>
/// </remarks>
internal sealed unsafe class Mpi : ICollectives
{
    private const int ThreadSerialized = 2; // MPI_THREAD_SERIALIZED in Open MPI and MPICH
    private const int MaxCount = 1 << 30;   // MPI counts are C ints: larger buffers go in pieces

    private static readonly Lock Gate = new();
    private static Mpi? _instance;

    private readonly nint _comm, _float, _double, _byte, _sum, _inPlace, _statusIgnore, _errorsReturn;
    private readonly bool _initializedHere;
    private readonly delegate* unmanaged<nint, nint, int, nint, nint, nint, int> _allreduce;
    private readonly delegate* unmanaged<nint, int, nint, int, nint, int> _bcast;
    private readonly delegate* unmanaged<nint, nint*, int> _ibarrier;
    private readonly delegate* unmanaged<nint*, int*, nint, int> _test;
    private readonly delegate* unmanaged<nint, int, int> _abort;
    private readonly delegate* unmanaged<int, byte*, int*, int> _errorString;
    private readonly delegate* unmanaged<int*, int> _finalized;
    private readonly delegate* unmanaged<int> _finalize;

    private Mpi(nint lib, string path)
    {
        Library = path;
        nint Fn(string name) => NativeLibrary.TryGetExport(lib, name, out var address)
            ? address : throw new DllNotFoundException($"{path} has no {name}: it is not an MPI library.");
        bool openMpi = NativeLibrary.TryGetExport(lib, "ompi_mpi_comm_world", out _comm);
        if (openMpi)
        {
            Flavor = "Open MPI";
            _float = NativeLibrary.GetExport(lib, "ompi_mpi_float");
            _double = NativeLibrary.GetExport(lib, "ompi_mpi_double");
            _byte = NativeLibrary.GetExport(lib, "ompi_mpi_byte");
            _sum = NativeLibrary.GetExport(lib, "ompi_mpi_op_sum");
            _errorsReturn = NativeLibrary.GetExport(lib, "ompi_mpi_errors_return");
            (_inPlace, _statusIgnore) = (1, 0);
        }
        else
        {
            Flavor = "MPICH ABI"; // MPICH, Intel MPI, MS-MPI: mpi.h's constants
            (_comm, _float, _double, _byte, _sum, _inPlace, _statusIgnore, _errorsReturn) = (0x44000000, 0x4c00040a, 0x4c00080b, 0x4c00010d, 0x58000003, -1, 1, 0x54000001);
        }
        _allreduce = (delegate* unmanaged<nint, nint, int, nint, nint, nint, int>)Fn("MPI_Allreduce");
        _bcast = (delegate* unmanaged<nint, int, nint, int, nint, int>)Fn("MPI_Bcast");
        _ibarrier = (delegate* unmanaged<nint, nint*, int>)Fn("MPI_Ibarrier");
        _test = (delegate* unmanaged<nint*, int*, nint, int>)Fn("MPI_Test");
        _abort = (delegate* unmanaged<nint, int, int>)Fn("MPI_Abort");
        _errorString = (delegate* unmanaged<int, byte*, int*, int>)Fn("MPI_Error_string");
        _finalized = (delegate* unmanaged<int*, int>)Fn("MPI_Finalized");
        _finalize = (delegate* unmanaged<int>)Fn("MPI_Finalize");
        var initialized = (delegate* unmanaged<int*, int>)Fn("MPI_Initialized");
        var initThread = (delegate* unmanaged<int*, nint, int, int*, int>)Fn("MPI_Init_thread");
        var commRank = (delegate* unmanaged<nint, int*, int>)Fn("MPI_Comm_rank");
        var commSize = (delegate* unmanaged<nint, int*, int>)Fn("MPI_Comm_size");
        var setErrhandler = (delegate* unmanaged<nint, nint, int>)Fn("MPI_Comm_set_errhandler");

        int flag = 0, provided = 0, rank = 0, size = 0;
        Check(initialized(&flag), "MPI_Initialized");
        if (flag == 0)
        {
            Check(initThread(null, 0, ThreadSerialized, &provided), "MPI_Init_thread");
            _initializedHere = true;
            if (provided < ThreadSerialized)
                Console.Error.WriteLine($"MlNetGuide: {Flavor} gave thread level {provided} where {ThreadSerialized} (serialized) was asked; collectives must then stay on the thread that started MPI.");
        }
        // Errors come back as codes (Check names the call and the library's text) instead of aborting inside MPI.
        Check(setErrhandler(_comm, _errorsReturn), "MPI_Comm_set_errhandler");
        Check(commRank(_comm, &rank), "MPI_Comm_rank");
        Check(commSize(_comm, &size), "MPI_Comm_size");
        (Rank, Size) = (rank, size);
        if (MpiLibrary.StatedRanks() is int stated && stated != size)
            throw new DllNotFoundException(
                $"The launcher started {stated} ranks ({MpiLibrary.LauncherEvidence()}) but {path} ({Flavor}) sees {size}: it is not the launcher's MPI " +
                $"(Open MPI's mpirun needs Open MPI's libmpi.so.40, MPICH's mpiexec an MPICH library). Set {MpiLibrary.OverrideVariable} to the launcher's library.");
        if (_initializedHere) AppDomain.CurrentDomain.ProcessExit += (_, _) => FinalizeAtExit();
    }

    /// <summary>The process's MPI, loaded and initialized on first use.</summary>
    /// <exception cref="DllNotFoundException">No MPI library could be loaded; the message names what to install.</exception>
    public static Mpi Instance
    {
        get
        {
            lock (Gate)
            {
                if (_instance is not null) return _instance;
                var (lib, path) = MpiLibrary.Load();
                return _instance = new Mpi(lib, path);
            }
        }
    }

    public int Rank { get; }
    public int Size { get; }

    /// <summary>"Open MPI" or "MPICH ABI".</summary>
    public string Flavor { get; }

    /// <summary>The library's file.</summary>
    public string Library { get; }

    public void AllReduceSum(Span<float> values)
    {
        fixed (float* p = values)
            for (int start = 0; start < values.Length; start += MaxCount)
                Check(_allreduce(_inPlace, (nint)(p + start), Math.Min(MaxCount, values.Length - start), _float, _sum, _comm), "MPI_Allreduce");
    }

    public void AllReduceSum(Span<double> values)
    {
        fixed (double* p = values)
            for (int start = 0; start < values.Length; start += MaxCount)
                Check(_allreduce(_inPlace, (nint)(p + start), Math.Min(MaxCount, values.Length - start), _double, _sum, _comm), "MPI_Allreduce");
    }

    public void Broadcast(Span<byte> bytes, int root)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(root);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(root, Size);
        fixed (byte* p = bytes)
            for (int start = 0; start < bytes.Length; start += MaxCount)
                Check(_bcast((nint)(p + start), Math.Min(MaxCount, bytes.Length - start), _byte, root, _comm), "MPI_Bcast");
    }

    /// <summary>
    /// <c>MPI_Ibarrier</c>, then <c>MPI_Test</c> every millisecond: a rank waiting here (for rank 0's zip, say) sleeps
    /// instead of spinning as MPI's blocking calls do, leaving the core to the rank doing the work.
    /// </summary>
    public void Barrier()
    {
        nint request = 0; // MPI_Request: a pointer in Open MPI, an int in MPICH; either fits
        Check(_ibarrier(_comm, &request), "MPI_Ibarrier");
        int done = 0;
        while (true)
        {
            Check(_test(&request, &done, _statusIgnore), "MPI_Test");
            if (done != 0) return;
            Thread.Sleep(1);
        }
    }

    public void Abort(string message, int exitCode)
    {
        Console.Error.WriteLine(message);
        Console.Error.Flush();
        _abort(_comm, exitCode);
        Environment.Exit(exitCode); // MPI_Abort does not return; if a library's did, end this rank anyway
    }

    private void FinalizeAtExit()
    {
        int done = 0;
        if (_finalized(&done) == 0 && done == 0) _finalize();
    }

    private void Check(int code, string function)
    {
        if (code == 0) return;
        var text = new byte[1024]; // MPI_MAX_ERROR_STRING is 256 in Open MPI, 1024 in MPICH
        int length = 0;
        string detail;
        fixed (byte* p = text)
            detail = _errorString(code, p, &length) == 0 ? Encoding.ASCII.GetString(text, 0, Math.Clamp(length, 0, text.Length)) : $"error {code}";
        throw new InvalidOperationException($"{function} failed on rank {Rank} of {Size} ({Flavor}): {detail}.");
    }

    public override string ToString() => $"{Flavor} rank {Rank} of {Size} ({Library})";
}
