using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// 6.6 A module's parameters and persistent buffers by dotted name, and loading them back — all or nothing.
/// </summary>
/// <remarks>
/// <para>TorchSharp's <c>state_dict()</c> lists a tied tensor once (under its first name, e.g. <c>2.weight</c>);
/// PyTorch lists it under every name (<c>2.weight</c> and <c>4.weight</c>). <see cref="Get"/> can produce either, and
/// <see cref="Load(nn.Module, IReadOnlyDictionary{string, Tensor}, bool)"/> accepts both: any one alias of a tied
/// tensor is enough, and aliases given twice must agree.</para>
/// <para>Loading into a lazy net that has not seen data yet materializes its lazy layers with the saved shapes.</para>
/// <para>Every key, shape and dtype is checked before anything is copied: on any mismatch a
/// <see cref="StateDictMismatchException"/> lists all problems and the module keeps its previous values.</para>
/// </remarks>
public static class StateDict
{
    /// <summary>
    /// Name → tensor (the module's own tensors, not copies). With <paramref name="includeAliases"/> a tied tensor
    /// appears under each of its names, as in PyTorch; without, once, as in TorchSharp.
    /// </summary>
    public static Dictionary<string, Tensor> Get(nn.Module module, bool includeAliases = false)
    {
        ArgumentNullException.ThrowIfNull(module);
        module.EnsureInitialized();
        var result = new Dictionary<string, Tensor>();
        var seen = new HashSet<IntPtr>();
        foreach (var slot in Slots(module))
            if (slot.Tensor is { } t && (includeAliases || seen.Add(t.Handle)))
                result.Add(slot.Key, t);
        return result;
    }

    /// <summary>Loads <paramref name="source"/> into <paramref name="module"/>, all or nothing.</summary>
    /// <param name="module">The module to fill.</param>
    /// <param name="source">Name → tensor, PyTorch-style (with aliases) or TorchSharp-style.</param>
    /// <param name="strict">When true, missing and unexpected keys are errors; shape and dtype mismatches always are.</param>
    public static void Load(nn.Module module, IReadOnlyDictionary<string, Tensor> source, bool strict = true)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(source);
        var slots = Slots(module);
        var byKey = slots.ToDictionary(s => s.Key);
        var unexpected = source.Keys.Where(k => !byKey.ContainsKey(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        var missing = new List<string>();
        var mismatches = new List<string>();
        var plan = new List<(Slot slot, Tensor value)>();
        var lazyWidths = new Dictionary<LazyLinear, (long width, ScalarType dtype)>(ReferenceEqualityComparer.Instance);

        // Group the module's slots by the tensor (or lazy parameter) they name: tied tensors form one group.
        foreach (var group in slots.GroupBy(s => s.Identity))
        {
            var given = group.Where(s => source.ContainsKey(s.Key)).ToList();
            if (given.Count == 0)
            {
                missing.Add(group.First().Key);
                continue;
            }
            var first = given[0];
            var value = source[first.Key];
            foreach (var alias in given.Skip(1))
                if (!SameValues(value, source[alias.Key]))
                    mismatches.Add($"'{first.Key}' and '{alias.Key}' name one tied tensor but hold different values");
            if (CheckShape(first, value, lazyWidths) is { } problem)
                mismatches.Add(problem);
            else
                plan.Add((first, value));
        }

        if (mismatches.Count > 0 || (strict && (missing.Count > 0 || unexpected.Count > 0)))
        {
            var parts = new List<string>();
            // The message names a few of each (a crafted file can bring a million keys); the exception's lists hold all.
            if (missing.Count > 0) parts.Add($"missing keys: {Few(missing)}");
            if (unexpected.Count > 0) parts.Add($"unexpected keys: {Few(unexpected)}");
            parts.AddRange(mismatches.Take(FewCount));
            if (mismatches.Count > FewCount) parts.Add($"and {mismatches.Count - FewCount:N0} more mismatches");
            throw new StateDictMismatchException(
                $"The state dict does not fit this {module.GetType().Name}; nothing was loaded. {string.Join("; ", parts)}.",
                missing, unexpected, mismatches);
        }

        // Validation passed: from here on nothing can fail half way.
        foreach (var (lazy, (width, dtype)) in lazyWidths)
            lazy.Materialize(width, dtype: dtype);
        using var noGrad = no_grad();
        foreach (var (slot, value) in plan)
            slot.Resolve().copy_(value);
    }

    /// <summary>Saves the state dict to <paramref name="path"/> atomically. PyTorch format writes tied tensors under every name.</summary>
    public static void Save(nn.Module module, string path, TensorFileFormat format = TensorFileFormat.TorchSharp)
    {
        var entries = Entries(module, format);
        AtomicFile.Write(path, s => TensorDictCodec.Write(s, entries, format));
    }

    /// <summary>Saves the state dict to a stream.</summary>
    public static void Save(nn.Module module, Stream stream, TensorFileFormat format = TensorFileFormat.TorchSharp)
    {
        ArgumentNullException.ThrowIfNull(stream);
        TensorDictCodec.Write(stream, Entries(module, format), format);
    }

    /// <summary>Loads a state dict file into <paramref name="module"/>, all or nothing (format detected by default).</summary>
    /// <param name="module">The module to fill.</param>
    /// <param name="path">The file.</param>
    /// <param name="format">The file's format; detected by default.</param>
    /// <param name="strict">When true, missing and unexpected keys are errors; shape and dtype mismatches always are.</param>
    /// <param name="limits">How much the file may make us allocate; null is <see cref="LoadLimits.Default"/>.</param>
    public static void Load(nn.Module module, string path, TensorFileFormat format = TensorFileFormat.Auto, bool strict = true, LoadLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        LoadAndDispose(module, TensorIO.LoadEntries(path, format, limits), strict);
    }

    /// <summary>Loads a state dict from a stream into <paramref name="module"/>, all or nothing.</summary>
    public static void Load(nn.Module module, Stream stream, TensorFileFormat format = TensorFileFormat.Auto, bool strict = true, LoadLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(stream);
        LoadAndDispose(module, TensorIO.LoadEntries(stream, format, limits), strict);
    }

    private static void LoadAndDispose(nn.Module module, List<KeyValuePair<string, Tensor>> entries, bool strict)
    {
        try
        {
            var dict = new Dictionary<string, Tensor>();
            foreach (var (k, v) in entries) dict[k] = v;
            Load(module, dict, strict);
        }
        finally
        {
            foreach (var (_, t) in entries) t.Dispose();
        }
    }

    private static List<KeyValuePair<string, Tensor>> Entries(nn.Module module, TensorFileFormat format) =>
        Get(module, includeAliases: format == TensorFileFormat.PyTorch).ToList();

    private static bool SameValues(Tensor a, Tensor b) =>
        a.dtype == b.dtype && a.shape.SequenceEqual(b.shape) && a.device_type == b.device_type && a.equal(b).all().item<bool>();

    private static string? CheckShape(Slot slot, Tensor value, Dictionary<LazyLinear, (long, ScalarType)> lazyWidths)
    {
        static string Shape(IEnumerable<long> s) => $"[{string.Join(", ", s)}]";
        if (slot.Tensor is { } target)
        {
            if (!target.shape.SequenceEqual(value.shape))
                return $"'{slot.Key}': expected shape {Shape(target.shape)}, found {Shape(value.shape)}";
            if (target.dtype != value.dtype)
                return $"'{slot.Key}': expected dtype {target.dtype}, found {value.dtype}";
            return null;
        }
        // A lazy layer's parameter: the saved shape decides its input width.
        var lazy = slot.Lazy!;
        if (value.dtype is not (ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Float32 or ScalarType.Float64))
            return $"'{slot.Key}': expected a floating-point tensor, found {value.dtype}";
        if (slot.Name == "weight")
        {
            if (value.dim() != 2 || value.shape[0] != lazy.OutFeatures || value.shape[1] <= 0)
                return $"'{slot.Key}': expected shape [{lazy.OutFeatures}, in_features], found {Shape(value.shape)}";
            lazyWidths[lazy] = (value.shape[1], value.dtype);
            return null;
        }
        return value.dim() == 1 && value.shape[0] == lazy.OutFeatures
            ? null
            : $"'{slot.Key}': expected shape [{lazy.OutFeatures}], found {Shape(value.shape)}";
    }

    /// <summary>One named place a tensor lives in: a module, a local name, and the tensor (null for an unmaterialized lazy layer).</summary>
    private sealed record Slot(string Key, nn.Module Owner, string Name, Tensor? Tensor, LazyLinear? Lazy)
    {
        public object Identity => Tensor is { } t ? t.Handle : (Owner, Name);

        public Tensor Resolve() =>
            Tensor ?? (Name == "weight" ? Lazy!.weight : Lazy!.bias!);
    }

    private static List<Slot> Slots(nn.Module module)
    {
        var slots = new List<Slot>();
        foreach (var (prefix, m) in module.NamedModulesWithAliases())
        {
            string Key(string name) => prefix.Length == 0 ? name : $"{prefix}.{name}";
            if (m is LazyLinear { IsInitialized: false } lazy)
            {
                slots.Add(new Slot(Key("weight"), m, "weight", null, lazy));
                if (lazy.HasBias) slots.Add(new Slot(Key("bias"), m, "bias", null, lazy));
                continue;
            }
            foreach (var (name, p) in m.named_parameters(recurse: false))
                slots.Add(new Slot(Key(name), m, name, p, null));
            foreach (var (name, b) in m.named_buffers(recurse: false, include_nonpersistent: false))
                slots.Add(new Slot(Key(name), m, name, b, null));
        }
        return slots;
    }

    private const int FewCount = 5;

    private static string Few(IReadOnlyList<string> keys) =>
        keys.Count <= FewCount ? string.Join(", ", keys) : $"{string.Join(", ", keys.Take(FewCount))} and {keys.Count - FewCount:N0} more";
}
