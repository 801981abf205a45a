namespace MlNetGuide.Modules.Onnx;

/// <summary>A module cannot be written as ONNX: the message names the module type and the way out.</summary>
public sealed class OnnxExportException(string message) : InvalidOperationException(message)
{
}
