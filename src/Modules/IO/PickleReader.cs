using System.Buffers.Binary;
using System.Text;

namespace MlNetGuide.Modules;

/// <summary>
/// A bounded interpreter for the subset of Python's pickle that <c>torch.save</c> writes (protocol 2, plus the framing,
/// memo and string opcodes of protocols 4 and 5). Nothing is executed: <c>GLOBAL</c> yields an inert
/// <see cref="PyGlobal"/> and <c>REDUCE</c> a symbolic <see cref="PyCall"/>; only <c>collections.OrderedDict()</c> is
/// recognised, as an empty <see cref="PyDict"/>. Work is capped (opcodes, stack, memo, container items) so that a
/// small crafted pickle cannot make it run long or allocate much. Any other opcode or any broken cap throws
/// <see cref="InvalidDataException"/> naming the opcode and its offset.
/// </summary>
internal sealed class PickleReader
{
    /// <summary>Most opcodes evaluated; a torch.save pickle needs about 30 per tensor.</summary>
    public const int MaxOpcodes = 16 << 20;

    /// <summary>Most values on the stack at once (a dict's items wait there until SETITEMS).</summary>
    public const int MaxStackDepth = 1 << 20;

    /// <summary>Most memo slots.</summary>
    public const int MaxMemo = 1 << 20;

    /// <summary>Most items in all containers together (tuples, lists, dicts).</summary>
    public const int MaxContainerItems = 4 << 20;

    /// <summary>Longest GLOBAL module or name line, in bytes.</summary>
    private const int MaxGlobalLine = 256;

    private readonly byte[] _data;
    private int _pos;
    private readonly List<object?> _stack = [];
    private readonly List<int> _marks = [];
    private readonly Dictionary<long, object?> _memo = [];
    private long _containerItems;

    private PickleReader(byte[] data) => _data = data;

    /// <summary>Evaluates <paramref name="pickle"/> and returns the value STOP leaves.</summary>
    public static object? Evaluate(byte[] pickle) => new PickleReader(pickle).Run();

    /// <summary>A short, non-recursive description of a value for error messages.</summary>
    public static string Describe(object? value) => value switch
    {
        null => "None",
        string s => s.Length <= 40 ? $"'{s}'" : $"'{s[..40]}…'",
        bool b => b ? "True" : "False",
        long l => l.ToString(System.Globalization.CultureInfo.InvariantCulture),
        double => "a float",
        PyGlobal g => $"{g.Module}.{g.Name}",
        PyCall c => $"a call to {Describe(c.Callable)}",
        PyTuple t => $"a tuple of {t.Items.Length}",
        PyList l => $"a list of {l.Items.Count}",
        PyDict d => $"a dict of {d.Items.Count}",
        PyPersistent => "a persistent id",
        _ => value.GetType().Name,
    };

    private object? Run()
    {
        for (int count = 0; ; count++)
        {
            if (count >= MaxOpcodes) throw Fail($"more than {MaxOpcodes} opcodes");
            if (_pos >= _data.Length) throw new InvalidDataException($"pickle ends at byte {_pos} without STOP");
            int at = _pos;
            byte op = _data[_pos++];
            switch (op)
            {
                case 0x80: // PROTO
                    if (ReadByte() > 5) throw Fail($"pickle protocol {_data[_pos - 1]} (expected 2 to 5)", at);
                    break;
                case 0x95: // FRAME: a length hint only; the opcodes inside are read as usual
                    if (ReadUInt64() > (ulong)(_data.Length - _pos)) throw Fail("FRAME longer than the bytes left", at);
                    break;
                case (byte)'.': // STOP
                    if (_stack.Count != 1 || _marks.Count != 0) throw Fail($"STOP with {_stack.Count} values on the stack (expected 1)", at);
                    return _stack[0];

                case (byte)'c': // GLOBAL
                {
                    string module = ReadLine(at), name = ReadLine(at);
                    Push(new PyGlobal(module, name));
                    break;
                }
                case 0x93: // STACK_GLOBAL
                {
                    object? name = Pop(at), module = Pop(at);
                    if (module is not string m || name is not string n) throw Fail("STACK_GLOBAL needs two strings", at);
                    Push(new PyGlobal(m, n));
                    break;
                }

                case (byte)'q': Memoize(ReadByte(), at); break;       // BINPUT
                case (byte)'r': Memoize(ReadUInt32(), at); break;     // LONG_BINPUT
                case 0x94: Memoize(_memo.Count, at); break;           // MEMOIZE
                case (byte)'h': Recall(ReadByte(), at); break;        // BINGET
                case (byte)'j': Recall(ReadUInt32(), at); break;      // LONG_BINGET

                case (byte)'}': Push(new PyDict()); break;            // EMPTY_DICT
                case (byte)']': Push(new PyList()); break;            // EMPTY_LIST
                case (byte)')': Push(new PyTuple([])); break;         // EMPTY_TUPLE
                case (byte)'(': // MARK
                    _marks.Add(_stack.Count);
                    break;
                case (byte)'d': // DICT
                {
                    var dict = new PyDict();
                    AddPairs(dict, PopToMark(at), at);
                    Push(dict);
                    break;
                }
                case (byte)'l': // LIST
                {
                    var items = PopToMark(at);
                    Count(items.Length, at);
                    Push(new PyList().With(items));
                    break;
                }
                case (byte)'t': // TUPLE
                {
                    var items = PopToMark(at);
                    Count(items.Length, at);
                    Push(new PyTuple(items));
                    break;
                }
                case 0x85: case 0x86: case 0x87: // TUPLE1, TUPLE2, TUPLE3
                {
                    int n = op - 0x84;
                    if (_stack.Count - StackFloor() < n) throw Fail($"TUPLE{n} needs {n} values on the stack", at);
                    var items = _stack.GetRange(_stack.Count - n, n).ToArray();
                    _stack.RemoveRange(_stack.Count - n, n);
                    Count(n, at);
                    Push(new PyTuple(items));
                    break;
                }

                case (byte)'X': Push(ReadUtf8(ReadUInt32(), at)); break;   // BINUNICODE
                case 0x8c: Push(ReadUtf8(ReadByte(), at)); break;          // SHORT_BINUNICODE
                case 0x8d: Push(ReadUtf8(ReadUInt64(), at)); break;        // BINUNICODE8
                case (byte)'T': // BINSTRING: a signed length; Python 3 reads it as ASCII/Latin-1 text
                {
                    int length = BinaryPrimitives.ReadInt32LittleEndian(Take(4, at));
                    if (length < 0) throw Fail($"BINSTRING of negative length {length}", at);
                    Push(Encoding.Latin1.GetString(Take((ulong)length, at)));
                    break;
                }
                case (byte)'U': Push(Encoding.Latin1.GetString(Take(ReadByte(), at))); break; // SHORT_BINSTRING

                case (byte)'J': Push((long)BinaryPrimitives.ReadInt32LittleEndian(Take(4, at))); break; // BININT
                case (byte)'K': Push((long)ReadByte()); break;                                          // BININT1
                case (byte)'M': Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Take(2, at))); break; // BININT2
                case 0x8a: // LONG1: little-endian two's complement of n bytes
                {
                    int n = ReadByte();
                    if (n > 8) throw Fail($"LONG1 of {n} bytes (at most 64-bit integers are supported)", at);
                    var bytes = Take((ulong)n, at);
                    long value = 0;
                    for (int i = n - 1; i >= 0; i--) value = (value << 8) | bytes[i];
                    if (n is > 0 and < 8 && (bytes[n - 1] & 0x80) != 0) value -= 1L << (8 * n); // sign-extend
                    Push(value);
                    break;
                }
                case (byte)'G': Push(BinaryPrimitives.ReadDoubleBigEndian(Take(8, at))); break; // BINFLOAT
                case 0x88: Push(true); break;  // NEWTRUE
                case 0x89: Push(false); break; // NEWFALSE
                case (byte)'N': Push(null); break; // NONE

                case (byte)'Q': Push(new PyPersistent(Pop(at))); break; // BINPERSID
                case (byte)'R': // REDUCE
                {
                    object? args = Pop(at), callable = Pop(at);
                    if (args is not PyTuple tuple) throw Fail($"REDUCE with {Describe(args)} as arguments (expected a tuple)", at);
                    // The one constructor worth knowing: it makes the dict that SETITEMS then fills.
                    Push(callable is PyGlobal { Module: "collections", Name: "OrderedDict" } && tuple.Items.Length == 0
                        ? new PyDict { IsOrdered = true }
                        : new PyCall(callable, tuple));
                    break;
                }
                case (byte)'b': // BUILD: the state is recorded, never applied
                {
                    object? state = Pop(at), target = Peek(at);
                    switch (target)
                    {
                        case PyDict d: d.State = state; break;
                        case PyCall c: c.State = state; break;
                        default: throw Fail($"BUILD on {Describe(target)}", at);
                    }
                    break;
                }
                case (byte)'s': // SETITEM
                {
                    object? value = Pop(at), key = Pop(at);
                    AddPairs(Peek(at) as PyDict ?? throw Fail($"SETITEM on {Describe(Peek(at))}", at), [key, value], at);
                    break;
                }
                case (byte)'u': // SETITEMS
                {
                    var items = PopToMark(at);
                    AddPairs(Peek(at) as PyDict ?? throw Fail($"SETITEMS on {Describe(Peek(at))}", at), items, at);
                    break;
                }
                case (byte)'a': // APPEND
                {
                    object? value = Pop(at);
                    var list = Peek(at) as PyList ?? throw Fail($"APPEND on {Describe(Peek(at))}", at);
                    Count(1, at);
                    list.Items.Add(value);
                    break;
                }
                case (byte)'e': // APPENDS
                {
                    var items = PopToMark(at);
                    var list = Peek(at) as PyList ?? throw Fail($"APPENDS on {Describe(Peek(at))}", at);
                    Count(items.Length, at);
                    list.Items.AddRange(items);
                    break;
                }
                case (byte)'2': Push(Peek(at)); break; // DUP
                case (byte)'0': // POP: the top value, or the topmost mark when it sits above every value
                    if (_marks.Count > 0 && _marks[^1] == _stack.Count) _marks.RemoveAt(_marks.Count - 1);
                    else Pop(at);
                    break;
                case (byte)'1': PopToMark(at); break; // POP_MARK

                default:
                    throw Fail($"unsupported pickle opcode 0x{op:x2} ('{(op is >= 0x20 and < 0x7f ? (char)op : '?')}')", at);
            }
        }
    }

    private InvalidDataException Fail(string what, int at = -1) =>
        new($"{what} at byte {(at < 0 ? _pos : at)} of the pickle");

    private void Push(object? value)
    {
        if (_stack.Count >= MaxStackDepth) throw Fail($"more than {MaxStackDepth} values on the pickle stack");
        _stack.Add(value);
    }

    private int StackFloor() => _marks.Count == 0 ? 0 : _marks[^1];

    private object? Pop(int at)
    {
        if (_stack.Count <= StackFloor()) throw Fail("pop from an empty stack (or across a MARK)", at);
        var value = _stack[^1];
        _stack.RemoveAt(_stack.Count - 1);
        return value;
    }

    private object? Peek(int at)
    {
        if (_stack.Count <= StackFloor()) throw Fail("read from an empty stack (or across a MARK)", at);
        return _stack[^1];
    }

    private object?[] PopToMark(int at)
    {
        if (_marks.Count == 0) throw Fail("no MARK to pop to", at);
        int mark = _marks[^1];
        _marks.RemoveAt(_marks.Count - 1);
        var items = _stack.GetRange(mark, _stack.Count - mark).ToArray();
        _stack.RemoveRange(mark, _stack.Count - mark);
        return items;
    }

    private void Memoize(long index, int at)
    {
        if (!_memo.ContainsKey(index) && _memo.Count >= MaxMemo) throw Fail($"more than {MaxMemo} memo entries", at);
        _memo[index] = Peek(at);
    }

    private void Recall(long index, int at)
    {
        if (!_memo.TryGetValue(index, out var value)) throw Fail($"memo slot {index} was never set", at);
        Push(value);
    }

    private void Count(long items, int at)
    {
        _containerItems += items;
        if (_containerItems > MaxContainerItems) throw Fail($"more than {MaxContainerItems} container items", at);
    }

    private void AddPairs(PyDict dict, object?[] items, int at)
    {
        if (items.Length % 2 != 0) throw Fail($"an odd number ({items.Length}) of dict keys and values", at);
        Count(items.Length / 2, at);
        for (int i = 0; i < items.Length; i += 2) dict.Items.Add(new(items[i], items[i + 1]));
    }

    private byte ReadByte() => Take(1, _pos - 1)[0];

    private uint ReadUInt32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, _pos - 1));

    private ulong ReadUInt64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8, _pos - 1));

    // Every length is checked against the bytes left before anything is read or allocated.
    private ReadOnlySpan<byte> Take(ulong length, int at)
    {
        if (length > (ulong)(_data.Length - _pos))
            throw Fail($"a {length}-byte argument, but only {_data.Length - _pos} bytes are left", at);
        var span = _data.AsSpan(_pos, (int)length);
        _pos += (int)length;
        return span;
    }

    private string ReadUtf8(ulong length, int at)
    {
        var bytes = Take(length, at);
        try
        {
            return new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw Fail("a string that is not valid UTF-8", at);
        }
    }

    private string ReadLine(int at)
    {
        int end = Array.IndexOf(_data, (byte)'\n', _pos, Math.Min(MaxGlobalLine + 1, _data.Length - _pos));
        if (end < 0) throw Fail($"GLOBAL without a newline within {MaxGlobalLine} bytes", at);
        var line = Encoding.ASCII.GetString(_data, _pos, end - _pos);
        _pos = end + 1;
        return line;
    }
}

/// <summary>A reference to a Python global (<c>module.name</c>); never resolved.</summary>
internal sealed record PyGlobal(string Module, string Name);

/// <summary>A call that a real unpickler would make (<c>callable(*args)</c>); only recorded.</summary>
internal sealed class PyCall(object? callable, PyTuple args)
{
    public object? Callable { get; } = callable;
    public PyTuple Args { get; } = args;
    public object? State { get; set; }
}

/// <summary>A tuple.</summary>
internal sealed class PyTuple(object?[] items)
{
    public object?[] Items { get; } = items;
}

/// <summary>A list.</summary>
internal sealed class PyList
{
    public List<object?> Items { get; } = [];

    public PyList With(object?[] items)
    {
        Items.AddRange(items);
        return this;
    }
}

/// <summary>A dict (or an OrderedDict) in insertion order; keys may repeat here, the reader decides.</summary>
internal sealed class PyDict
{
    public List<KeyValuePair<object?, object?>> Items { get; } = [];
    public bool IsOrdered { get; init; }
    public object? State { get; set; }
}

/// <summary>The value BINPERSID wraps: torch.save's reference to a storage record.</summary>
internal sealed record PyPersistent(object? Id);
