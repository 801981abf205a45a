using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>6.3/6.4 Initialization entry points on any module.</summary>
public static class ModuleInitExtensions
{
    /// <summary>Applies <paramref name="scheme"/> to every linear layer of <paramref name="module"/>; returns the module.</summary>
    public static T ApplyInit<T>(this T module, InitScheme scheme) where T : nn.Module
    {
        ArgumentNullException.ThrowIfNull(scheme);
        scheme.Apply(module);
        return module;
    }

    /// <summary>Applies <paramref name="scheme"/> to a layer taken from a container (e.g. <c>net[0]</c>).</summary>
    public static nn.IModule<Tensor, Tensor> ApplyInit(this nn.IModule<Tensor, Tensor> module, InitScheme scheme)
    {
        ArgumentNullException.ThrowIfNull(scheme);
        scheme.Apply(module as nn.Module ?? throw new ArgumentException($"{module.GetType().Name} is not a TorchSharp module.", nameof(module)));
        return module;
    }

    /// <summary>
    /// 6.4 <c>apply_init</c>: one dry run with <paramref name="inputs"/> materializes every lazy layer, then
    /// <paramref name="scheme"/> (if any) is applied. The dry run's output is discarded and gradients are not tracked.
    /// </summary>
    public static T ApplyInit<T>(this T module, Tensor inputs, InitScheme? scheme = null) where T : nn.Module<Tensor, Tensor>
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(inputs);
        using (var scope = NewDisposeScope())
        using (no_grad())
            module.call(inputs);
        scheme?.Apply(module);
        return module;
    }

    /// <summary>
    /// Every module in the tree, depth first, the root first — the same module object once for each position it holds
    /// (TorchSharp's <c>modules()</c> skips leaves of some containers; this walks <c>named_children</c> itself).
    /// </summary>
    public static IEnumerable<nn.Module> Modules(this nn.Module module) =>
        module.NamedModulesWithAliases().Select(pair => pair.module);

    /// <summary>True when every lazy layer in the tree has been materialized.</summary>
    public static bool IsFullyInitialized(this nn.Module module) =>
        module.Modules().OfType<LazyLinear>().All(l => l.IsInitialized);

    /// <summary>Throws <see cref="LazyModuleNotInitializedException"/> naming the first lazy layer not yet materialized.</summary>
    public static void EnsureInitialized(this nn.Module module)
    {
        foreach (var (name, m) in module.NamedModulesWithAliases())
            if (m is LazyLinear { IsInitialized: false } lazy)
                throw new LazyModuleNotInitializedException($"'{(name.Length == 0 ? "(root)" : name)}' {lazy}");
    }

    /// <summary>
    /// Every (dotted name, module) pair, the root as "", a shared module once for each name it is registered under.
    /// </summary>
    public static IEnumerable<(string name, nn.Module module)> NamedModulesWithAliases(this nn.Module module, string prefix = "")
    {
        ArgumentNullException.ThrowIfNull(module);
        yield return (prefix, module);
        foreach (var (name, child) in module.named_children())
            foreach (var pair in child.NamedModulesWithAliases(prefix.Length == 0 ? name : $"{prefix}.{name}"))
                yield return pair;
    }
}
