using TorchSharp.Modules;

namespace MlNetGuide.Training;

/// <summary>
/// AdamW (Loshchilov and Hutter, 2019): Adam with decoupled weight decay, <c>p ← p·(1 − lr·λ)</c> before the Adam update
/// — PyTorch's <c>torch.optim.AdamW</c> (default λ = 0.01), safe under GC pressure.
/// </summary>
public sealed class AdamW : Adam
{
    /// <summary>Creates the optimizer with PyTorch's defaults β₁ = 0.9, β₂ = 0.999, ε = 1e-8, λ = 0.01.</summary>
    public AdamW(IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0.01)
        : base(parameters, lr, beta1, beta2, eps, weightDecay, decoupled: true)
    {
    }
}
