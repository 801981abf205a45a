using System.Reflection;
using Microsoft.ML;
using Microsoft.ML.Runtime;

namespace MlNetGuide.Estimators;

/// <summary>
/// The only place MlNetGuide touches ML.NET internals (pinned by MlNetInternalsTests against Microsoft.ML 5.0.1).
/// ML.NET keeps three things a third-party estimator needs internal:
/// <list type="bullet">
/// <item>the environment behind <c>mlContext.&lt;Task&gt;.Trainers</c> (<c>TrainCatalogBase.Environment</c>), needed for
/// <c>mlContext.MulticlassClassification.Trainers.NeuralNetwork(...)</c>;</item>
/// <item><c>GpuDeviceId</c>/<c>FallbackToCpu</c> on that environment (<c>IHostEnvironmentInternal</c>);</item>
/// <item><c>SchemaShape.Create(DataViewSchema)</c>, the only way to describe new output columns in <c>GetOutputSchema</c>.</item>
/// </list>
/// Every lookup fails with <see cref="NotSupportedException"/> naming the public alternative if ML.NET changes.
/// </summary>
internal static class MlNetInternals
{
    private const BindingFlags Any = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static;

    private static readonly Lazy<MethodInfo?> CreateShape = new(() =>
        typeof(SchemaShape).GetMethod("Create", Any, [typeof(DataViewSchema)]));

    /// <summary>The environment (an MLContext's LocalEnvironment) behind a trainers catalog.</summary>
    public static IHostEnvironment EnvironmentOf(object trainersCatalog)
    {
        ArgumentNullException.ThrowIfNull(trainersCatalog);
        var owner = FindProperty(trainersCatalog.GetType(), "Owner")?.GetValue(trainersCatalog);
        var env = owner is null ? null : FindProperty(owner.GetType(), "Environment")?.GetValue(owner) as IHostEnvironment;
        return env ?? throw Unsupported("the environment of an ML.NET trainers catalog", "mlContext.NeuralNetworks()");
    }

    /// <summary>GpuDeviceId and FallbackToCpu of an environment (MLContext exposes them publicly; its catalogs do not).</summary>
    public static (int? gpuDeviceId, bool fallbackToCpu) DeviceSettings(IHostEnvironment env)
    {
        if (env is MLContext ml) return (ml.GpuDeviceId, ml.FallbackToCpu);
        var iface = env.GetType().GetInterfaces().FirstOrDefault(i => i.Name == "IHostEnvironmentInternal")
            ?? throw Unsupported("IHostEnvironmentInternal", "mlContext.NeuralNetworks()");
        var gpu = iface.GetProperty("GpuDeviceId")?.GetValue(env);
        var fallback = iface.GetProperty("FallbackToCpu")?.GetValue(env);
        if (fallback is not bool f) throw Unsupported("IHostEnvironmentInternal.FallbackToCpu", "mlContext.NeuralNetworks()");
        return ((int?)gpu, f);
    }

    /// <summary>The <see cref="SchemaShape"/> of a schema (ML.NET's internal <c>SchemaShape.Create</c>).</summary>
    public static SchemaShape ShapeOf(DataViewSchema schema)
    {
        var method = CreateShape.Value ?? throw Unsupported("SchemaShape.Create", "Fit and Transform directly (GetOutputSchema on SchemaShape is unavailable)");
        return (SchemaShape)method.Invoke(null, [schema])!;
    }

    private static PropertyInfo? FindProperty(Type type, string name)
    {
        for (var t = type; t is not null; t = t.BaseType)
            if (t.GetProperty(name, Any | BindingFlags.DeclaredOnly) is { } p) return p;
        return null;
    }

    private static NotSupportedException Unsupported(string what, string alternative) =>
        new($"This version of Microsoft.ML no longer has {what}, which MlNetGuide reads by reflection. Use {alternative} instead, and please report it.");
}
