using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// 6.1 A hand-written Sequential: chains the modules it is given, registered as children "0", "1", ….
/// </summary>
public sealed class MySequential : nn.Module<Tensor, Tensor>
{
    private readonly List<nn.Module<Tensor, Tensor>> _modules = [];

    /// <summary>Chains <paramref name="modules"/> in order.</summary>
    public MySequential(params nn.Module<Tensor, Tensor>[] modules) : base(TorchSharpRuntime.Checked(nameof(MySequential)))
    {
        ArgumentNullException.ThrowIfNull(modules);
        for (int i = 0; i < modules.Length; i++)
        {
            var m = modules[i] ?? throw new ArgumentNullException(nameof(modules), $"module {i} is null");
            register_module(i.ToString(System.Globalization.CultureInfo.InvariantCulture), m);
            _modules.Add(m);
        }
    }

    /// <summary>The module at position <paramref name="index"/>.</summary>
    public nn.Module<Tensor, Tensor> this[int index] => _modules[index];

    /// <summary>Number of chained modules.</summary>
    public int Count => _modules.Count;

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        // Intermediate activations are disposed as soon as the next one exists; the caller owns the result.
        Tensor current = x;
        foreach (var m in _modules)
        {
            var next = m.call(current);
            if (!ReferenceEquals(current, x)) current.Dispose();
            current = next;
        }
        return ReferenceEquals(current, x) ? x.alias() : current;
    }
}
