using System.Reflection;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using Microsoft.ML.Calibrators;
using Microsoft.ML.Trainers;

namespace MlNetGuide.Estimators;

/// <summary>
/// The only place MlNetGuide touches ML.NET internals (pinned by MlNetInternalsTests against Microsoft.ML 5.0.1).
/// ML.NET keeps three things a third-party estimator needs internal:
/// <list type="bullet">
/// <item>the environment behind <c>mlContext.&lt;Task&gt;.Trainers</c> (<c>TrainCatalogBase.Environment</c>), needed for
/// <c>mlContext.MulticlassClassification.Trainers.NeuralNetwork(...)</c>;</item>
/// <item><c>GpuDeviceId</c>/<c>FallbackToCpu</c> on that environment (<c>IHostEnvironmentInternal</c>);</item>
/// <item><c>SchemaShape.Create(DataViewSchema)</c>, the only way to describe new output columns in <c>GetOutputSchema</c>;</item>
/// <item>the constructors of the prediction transformers and linear models behind <c>Score</c>/<c>PredictedLabel</c>:
/// a plain <c>mlContext.Model.Save</c> writes a network as ONNX followed by an identity linear model in a stock
/// prediction transformer, because ML.NET's <c>OnnxTransformer</c> cannot output a scalar column (only vectors). Only
/// saving uses them: a plain <c>mlContext.Model.Load</c> reads these stock types with no reflection.</item>
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

    /// <summary>A RegressionPredictionTransformer whose Score is slot 0 of <paramref name="featureColumn"/> (a linear model with weight 1, bias 0).</summary>
    public static ITransformer RegressionScorer(IHostEnvironment env, DataViewSchema schema, string featureColumn)
    {
        var model = Construct(typeof(LinearRegressionModelParameters), env, Identity(1, 0), 0f);
        return (ITransformer)Construct(typeof(RegressionPredictionTransformer<LinearRegressionModelParameters>), env, model, schema, featureColumn);
    }

    /// <summary>
    /// A BinaryPredictionTransformer over a Platt-calibrated identity model, what ML.NET's logistic-regression trainers
    /// return: Score = slot 0 of <paramref name="featureColumn"/>, Probability = sigmoid(Score) (Platt slope -1, offset 0:
    /// p = 1 / (1 + exp(-Score))), PredictedLabel = Score &gt; 0, annotated as ML.NET's own trainers annotate them.
    /// </summary>
    public static ITransformer BinaryScorer(IHostEnvironment env, DataViewSchema schema, string featureColumn)
    {
        var linear = Construct(typeof(LinearBinaryModelParameters), env, Identity(1, 0), 0f, null);
        var platt = Construct(typeof(PlattCalibrator), env, -1.0, 0.0);
        var mixing = typeof(CalibratedModelParametersBase).Assembly.GetType("Microsoft.ML.Calibrators.ParameterMixingCalibratedModelParameters`2")
            ?? throw Unsupported("ParameterMixingCalibratedModelParameters", "NeuralModel.Save (mlContext.Model.Save of a network needs it)");
        var calibratedType = mixing.MakeGenericType(typeof(LinearBinaryModelParameters), typeof(PlattCalibrator));
        var model = Construct(calibratedType, env, linear, platt);
        return (ITransformer)Construct(typeof(BinaryPredictionTransformer<>).MakeGenericType(calibratedType), env, model, schema, featureColumn, 0f, "Score");
    }

    /// <summary>
    /// A MulticlassPredictionTransformer with an identity linear model (no softmax): Score = <paramref name="featureColumn"/>,
    /// PredictedLabel = the key of its largest slot, with <paramref name="labelColumn"/>'s key values when given.
    /// </summary>
    public static ITransformer MulticlassScorer(IHostEnvironment env, DataViewSchema schema, string featureColumn, int classes,
        string? labelColumn, string scoreColumn, string predictedLabelColumn)
    {
        var weights = Enumerable.Range(0, classes).Select(i => Identity(classes, i)).ToArray();
        var model = Construct(typeof(LinearMulticlassModelParameters), env, weights, new float[classes], classes, classes, null, null);
        return (ITransformer)Construct(typeof(MulticlassPredictionTransformer<LinearMulticlassModelParameters>), env, model, schema,
            featureColumn, labelColumn, scoreColumn, predictedLabelColumn);
    }

    /// <summary>A vector of <paramref name="length"/> with a single 1 at <paramref name="index"/> (sparse: 0 × x stays exactly 0).</summary>
    private static VBuffer<float> Identity(int length, int index) => new(length, 1, [1f], [index]);

    private static object Construct(Type type, params object?[] args)
    {
        var ctor = type.GetConstructors(Any).FirstOrDefault(c => Fits(c.GetParameters(), args))
            ?? throw Unsupported($"the constructor {type.Name}({args.Length} arguments)", "NeuralModel.Save (mlContext.Model.Save of a network needs it)");
        return ctor.Invoke(args);
    }

    private static bool Fits(ParameterInfo[] parameters, object?[] args)
    {
        if (parameters.Length != args.Length) return false;
        for (int i = 0; i < args.Length; i++)
        {
            var type = parameters[i].ParameterType.IsByRef ? parameters[i].ParameterType.GetElementType()! : parameters[i].ParameterType;
            if (args[i] is null ? type.IsValueType : !type.IsInstanceOfType(args[i])) return false;
        }
        return true;
    }

    /// <summary>
    /// ML.NET's host check (its internal <c>Contracts.CheckAlive</c>): throws what ML.NET's trainers throw once
    /// <c>MLContext.CancelExecution()</c> has been called on the context behind <paramref name="env"/>.
    /// </summary>
    public static Action CheckAlive(IHostEnvironment env)
    {
        ArgumentNullException.ThrowIfNull(env);
        var canceled = FindProperty(env.GetType(), "IsCanceled")
            ?? env.GetType().GetInterfaces().Select(i => i.GetProperty("IsCanceled", Any)).FirstOrDefault(p => p is not null)
            ?? throw Unsupported("IsCanceled on an ML.NET environment (MLContext.CancelExecution)", "NeuralNetworkOptions.CancellationToken");
        return () =>
        {
            if (canceled.GetValue(env) is true) throw new OperationCanceledException("Operation was canceled."); // ML.NET's own words and type
        };
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
