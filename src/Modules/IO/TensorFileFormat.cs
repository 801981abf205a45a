namespace MlNetGuide.Modules;

/// <summary>6.6 File formats for tensors and state dicts.</summary>
public enum TensorFileFormat
{
    /// <summary>When loading: detect from the file's first bytes. When saving: <see cref="TorchSharp"/>.</summary>
    Auto,

    /// <summary>TorchSharp's native format, the one <c>module.save/load</c> use (LEB128 count, then name + tensor).</summary>
    TorchSharp,

    /// <summary>PyTorch's <c>torch.save(state_dict)</c> zip + pickle format (via TorchSharp.PyBridge).</summary>
    PyTorch,

    /// <summary>Hugging Face safetensors (via TorchSharp.PyBridge).</summary>
    Safetensors,
}
