using System.Globalization;
using System.Text;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// A readable description of a module: the layer tree (like PyTorch's <c>print(net)</c>), then every parameter with its
/// dotted name, shape and count, then the totals — counting a tied parameter once in the unique total.
/// </summary>
public static class ModuleSummary
{
    /// <summary>The summary as text.</summary>
    public static string Describe(nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        var sb = new StringBuilder();
        var firstName = new Dictionary<nn.Module, string>(ReferenceEqualityComparer.Instance);
        WriteTree(sb, module, "", 0, firstName);

        var rows = ParameterRows(module);
        sb.AppendLine();
        if (rows.Count == 0)
        {
            sb.AppendLine("No parameters" + (module.IsFullyInitialized() ? "." : " yet: lazy layers are uninitialized (run a forward pass)."));
            return sb.ToString();
        }
        int nameWidth = Math.Max(9, rows.Max(r => r.Name.Length));
        int shapeWidth = Math.Max(5, rows.Max(r => r.Shape.Length));
        sb.AppendLine($"{"Parameter".PadRight(nameWidth)}  {"Shape".PadRight(shapeWidth)}  {"Count",10}");
        foreach (var r in rows)
            sb.AppendLine($"{r.Name.PadRight(nameWidth)}  {r.Shape.PadRight(shapeWidth)}  {r.Count,10:N0}{(r.TiedTo is null ? "" : $"  (tied to {r.TiedTo})")}");
        long total = rows.Sum(r => r.Count), unique = rows.Where(r => r.TiedTo is null).Sum(r => r.Count);
        sb.Append(CultureInfo.InvariantCulture, $"Total parameters: {total:N0}");
        sb.AppendLine(total == unique ? "" : $" ({unique:N0} unique; tied parameters counted once)");
        if (!module.IsFullyInitialized())
            sb.AppendLine("Some lazy layers are uninitialized: their parameters are not counted yet.");
        return sb.ToString();
    }

    /// <summary>
    /// d2l's <c>layer_summary</c>: feeds <paramref name="input"/> through the layers of <paramref name="layers"/> one by
    /// one and returns each layer's name (e.g. <c>Conv2d</c>) with its output shape. Lazy layers are materialized on the
    /// way. The caller owns <paramref name="input"/>; nothing else is kept.
    /// </summary>
    public static IReadOnlyList<(string Layer, long[] OutputShape)> LayerShapes(Sequential layers, Tensor input)
    {
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(input);
        var rows = new List<(string, long[])>();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var x = input;
        foreach (var (_, child) in layers.named_children())
        {
            x = ((nn.Module<Tensor, Tensor>)child).call(x);
            rows.Add((child.GetType().Name, x.shape));
        }
        return rows;
    }

    /// <summary><see cref="LayerShapes"/> as text, one line per layer: <c>Conv2d output shape:	[1, 6, 28, 28]</c>.</summary>
    public static string DescribeShapes(IEnumerable<(string Layer, long[] OutputShape)> rows) =>
        string.Concat(rows.Select(r => $"{r.Layer + " output shape:",-24}[{string.Join(", ", r.OutputShape)}]{Environment.NewLine}"));

    /// <summary>Number of distinct parameter elements (a tied parameter counts once).</summary>
    public static long CountParameters(nn.Module module) =>
        module.parameters().Sum(p => p.numel());

    private sealed record Row(string Name, string Shape, long Count, string? TiedTo);

    private static List<Row> ParameterRows(nn.Module module)
    {
        var firstKey = new Dictionary<IntPtr, string>();
        var rows = new List<Row>();
        foreach (var (prefix, m) in module.NamedModulesWithAliases())
        {
            if (m is LazyLinear { IsInitialized: false }) continue;
            foreach (var (name, p) in m.named_parameters(recurse: false))
            {
                var key = prefix.Length == 0 ? name : $"{prefix}.{name}";
                string? tied = firstKey.TryGetValue(p.Handle, out var first) ? first : null;
                firstKey.TryAdd(p.Handle, key);
                rows.Add(new Row(key, $"[{string.Join(", ", p.shape)}]", p.numel(), tied));
            }
        }
        return rows;
    }

    private static void WriteTree(StringBuilder sb, nn.Module m, string name, int depth, Dictionary<nn.Module, string> firstName)
    {
        var indent = new string(' ', depth * 2);
        var label = depth == 0 ? "" : $"({name}): ";
        var children = m.named_children().ToList();
        if (depth > 0 && firstName.TryGetValue(m, out var earlier))
        {
            sb.AppendLine($"{indent}{label}{Headline(m)}  [same module as ({earlier})]");
            return;
        }
        if (depth > 0) firstName[m] = name;
        if (children.Count == 0)
        {
            sb.AppendLine($"{indent}{label}{Headline(m)}");
            return;
        }
        sb.AppendLine($"{indent}{label}{m.GetType().Name}(");
        foreach (var (childName, child) in children)
            WriteTree(sb, child, childName, depth + 1, firstName);
        sb.AppendLine($"{indent})");
    }

    private static string Headline(nn.Module m) => m switch
    {
        Linear lin => $"Linear(in_features={lin.in_features}, out_features={lin.out_features}, bias={lin.bias is not null})",
        Conv2d conv => $"Conv2d({conv.in_channels}, {conv.out_channels}, kernel_size={conv.kernel_size[0]}x{conv.kernel_size[1]})",
        LazyLinear lazy => lazy.ToString(),
        MyLinear my => $"MyLinear(in_units={my.weight.shape[0]}, units={my.weight.shape[1]})",
        _ => $"{m.GetType().Name}()",
    };
}
