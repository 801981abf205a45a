using MlNetGuide.Modules;

namespace MlNetGuide.Estimators;

/// <summary>
/// The chapter's initialization schemes (6.3, <see cref="InitScheme"/> in MlNetGuide.Modules) for
/// <see cref="NeuralNetworkOptions.Init"/>, so that setting the estimator's options takes one namespace:
/// <c>Init = NetworkInit.Xavier</c>, <c>EarlyStopping = new("val_loss", Patience: 3)</c>. A scheme of your own
/// (<c>new InitScheme(Initializer.KaimingUniform(), Initializer.Zeros)</c>) comes from MlNetGuide.Modules.
/// </summary>
public static class NetworkInit
{
    /// <summary>Xavier-uniform weights, zero biases (the options' default).</summary>
    public static InitScheme Xavier => InitScheme.Xavier;

    /// <summary>Weights from N(0, 0.01²), zero biases (6.3.1).</summary>
    public static InitScheme NormalSmall => InitScheme.NormalSmall;

    /// <summary>Weights 1, zero biases (6.3.1; every hidden unit alike: for demonstration).</summary>
    public static InitScheme ConstantOne => InitScheme.ConstantOne;
}
