using Microsoft.ML;
using Microsoft.ML.Runtime;
using MlNetGuide.Modules;

namespace MlNetGuide.Estimators;

/// <summary>
/// Entry points in ML.NET's style: <c>mlContext.MulticlassClassification.Trainers.NeuralNetwork(...)</c> and its binary
/// and regression twins. (ML.NET keeps a catalog's environment internal; these read it by reflection in
/// <c>MlNetInternals</c>. <c>mlContext.NeuralNetworks()</c> offers the same estimators through public API only.)
/// </summary>
public static class NeuralNetworkCatalog
{
    /// <summary>A multiclass neural network with the given options.</summary>
    public static NeuralNetworkEstimator NeuralNetwork(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        MulticlassNeuralNetworkOptions options) => new(MlNetInternals.EnvironmentOf(catalog), options);

    /// <summary>A multiclass neural network: the common settings as arguments, the rest at their defaults.</summary>
    public static NeuralNetworkEstimator NeuralNetwork(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string labelColumnName = "Label", string featureColumnName = "Features", NetworkArchitecture? architecture = null,
        InitScheme? init = null, int epochs = 10, int batchSize = 128, double learningRate = 0.1, int numGpus = 0) =>
        catalog.NeuralNetwork(Fill(new MulticlassNeuralNetworkOptions(), labelColumnName, featureColumnName, architecture, init, epochs, batchSize, learningRate, numGpus));

    /// <summary>A binary neural network with the given options.</summary>
    public static NeuralNetworkEstimator NeuralNetwork(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        BinaryNeuralNetworkOptions options) => new(MlNetInternals.EnvironmentOf(catalog), options);

    /// <summary>A binary neural network: the common settings as arguments.</summary>
    public static NeuralNetworkEstimator NeuralNetwork(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        string labelColumnName = "Label", string featureColumnName = "Features", NetworkArchitecture? architecture = null,
        InitScheme? init = null, int epochs = 10, int batchSize = 128, double learningRate = 0.1, int numGpus = 0) =>
        catalog.NeuralNetwork(Fill(new BinaryNeuralNetworkOptions(), labelColumnName, featureColumnName, architecture, init, epochs, batchSize, learningRate, numGpus));

    /// <summary>A regression neural network with the given options.</summary>
    public static NeuralNetworkEstimator NeuralNetwork(this RegressionCatalog.RegressionTrainers catalog,
        RegressionNeuralNetworkOptions options) => new(MlNetInternals.EnvironmentOf(catalog), options);

    /// <summary>A regression neural network: the common settings as arguments.</summary>
    public static NeuralNetworkEstimator NeuralNetwork(this RegressionCatalog.RegressionTrainers catalog,
        string labelColumnName = "Label", string featureColumnName = "Features", NetworkArchitecture? architecture = null,
        InitScheme? init = null, int epochs = 10, int batchSize = 128, double learningRate = 0.01, int numGpus = 0) =>
        catalog.NeuralNetwork(Fill(new RegressionNeuralNetworkOptions(), labelColumnName, featureColumnName, architecture, init, epochs, batchSize, learningRate, numGpus));

    /// <summary>The same estimators reached through public ML.NET API only.</summary>
    public static NeuralNetworks NeuralNetworks(this MLContext mlContext)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        return new NeuralNetworks(mlContext);
    }

    private static T Fill<T>(T o, string label, string features, NetworkArchitecture? architecture, InitScheme? init,
        int epochs, int batchSize, double learningRate, int numGpus) where T : NeuralNetworkOptions
    {
        o.LabelColumnName = label;
        o.FeatureColumnName = features;
        if (architecture is not null) o.Architecture = architecture;
        if (init is not null) o.Init = init;
        o.Epochs = epochs;
        o.BatchSize = batchSize;
        o.LearningRate = learningRate;
        o.NumGpus = numGpus;
        return o;
    }
}

/// <summary>Neural-network estimators bound to one MLContext (public-API entry point).</summary>
public sealed class NeuralNetworks
{
    private readonly IHostEnvironment _env;

    internal NeuralNetworks(MLContext mlContext) => _env = mlContext;

    /// <summary>A multiclass neural network.</summary>
    public NeuralNetworkEstimator Multiclass(MulticlassNeuralNetworkOptions options) => new(_env, options);

    /// <summary>A binary neural network.</summary>
    public NeuralNetworkEstimator Binary(BinaryNeuralNetworkOptions options) => new(_env, options);

    /// <summary>A regression neural network.</summary>
    public NeuralNetworkEstimator Regression(RegressionNeuralNetworkOptions options) => new(_env, options);
}
