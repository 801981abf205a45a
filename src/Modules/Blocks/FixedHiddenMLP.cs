using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Modules;

/// <summary>
/// 6.1 A module with a constant, a reused layer and Python-style control flow in its forward pass.
/// </summary>
/// <remarks>
/// The constant (20, 20) random matrix behaves as in PyTorch (<c>requires_grad=False</c> attribute): it is not a
/// parameter, not in <c>state_dict()</c>, never trained — and yet it moves with <c>.to(device/dtype)</c>.
/// TorchSharp would register a Tensor field as a persistent buffer (it would enter state_dict), so the constant is
/// kept unregistered and moved by an <c>_toEpilog</c> override.
/// </remarks>
public sealed class FixedHiddenMLP : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> linear;
    private Tensor _randWeight;

    /// <summary>Creates the module; the constant is drawn from U(0,1) with the given generator (or the global one).</summary>
    public FixedHiddenMLP(Generator? generator = null) : base(TorchSharpRuntime.Checked(nameof(FixedHiddenMLP)))
    {
        _randWeight = rand(new long[] { 20, 20 }, generator: generator).DetachFromDisposeScope();
        linear = new LazyLinear(20);
        register_module(nameof(linear), linear);
    }

    /// <summary>The constant (20, 20) matrix (read-only view for inspection).</summary>
    public Tensor RandWeight => _randWeight;

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = linear.call(x);
        h = nn.functional.relu(h.matmul(_randWeight).add_(Scalars.One, Scalars.One)); // X W + 1 (kept-alive Scalars)
        h = linear.call(h); // the same layer again: its parameters are shared
        // Control flow in the forward pass; each test of the condition reads a number back from the device.
        while (h.abs().sum().item<float>() > 1)
            h = h.mul(Scalars.Half); // X /= 2
        return h.sum().MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        var type = dtype ?? _randWeight.dtype;
        var dev = device ?? _randWeight.device;
        if (_randWeight.dtype != type || _randWeight.device_type != dev.type || _randWeight.device_index != dev.index)
        {
            var moved = _randWeight.to(type, dev, non_blocking: non_blocking).DetachFromDisposeScope();
            _randWeight.Dispose();
            _randWeight = moved;
        }
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) _randWeight.Dispose();
        base.Dispose(disposing);
    }
}
