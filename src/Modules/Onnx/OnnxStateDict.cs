using System.Text.Json;
using Onnx;
using static TorchSharp.torch;

namespace MlNetGuide.Modules.Onnx;

/// <summary>
/// Reads back the state dict an exported graph carries (the initializers <see cref="OnnxGraphBuilder"/> named by
/// state-dict keys), bit for bit, so a module rebuilt from its architecture can load it with
/// <see cref="StateDict.Load(TorchSharp.torch.nn.Module, IReadOnlyDictionary{string, Tensor}, bool)"/>.
/// </summary>
public static class OnnxStateDict
{
    /// <summary>The metadata value stored under <paramref name="key"/>, or null.</summary>
    public static string? Metadata(ModelProto model, string key)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.MetadataProps.FirstOrDefault(p => p.Key == key)?.Value;
    }

    /// <summary>
    /// The state-dict tensors of <paramref name="model"/> (new CPU tensors the caller disposes). Every size is checked
    /// against the bytes the initializer holds and against <paramref name="maxBytes"/> before a tensor is allocated.
    /// </summary>
    /// <exception cref="ModelFormatException">No state-dict list, a listed initializer is missing, or one is malformed.</exception>
    public static Dictionary<string, Tensor> Read(ModelProto model, long maxBytes, string source)
    {
        ArgumentNullException.ThrowIfNull(model);
        var listed = Metadata(model, OnnxGraphBuilder.StateDictKeysMetadata)
            ?? throw new ModelFormatException($"{source}: the ONNX model has no '{OnnxGraphBuilder.StateDictKeysMetadata}' metadata (it was not exported by MlNetGuide).");
        string[] keys;
        try
        {
            keys = JsonSerializer.Deserialize<string[]>(listed) ?? [];
        }
        catch (JsonException ex)
        {
            throw new ModelFormatException($"{source}: the ONNX model's state-dict list is not valid JSON ({ex.Message}).", ex);
        }
        var byName = new Dictionary<string, TensorProto>(StringComparer.Ordinal);
        foreach (var init in model.Graph?.Initializer ?? [])
            if (!byName.TryAdd(init.Name, init))
                throw new ModelFormatException($"{source}: the ONNX graph has two initializers named '{init.Name}'.");
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        long total = 0;
        try
        {
            foreach (var key in keys)
            {
                if (!byName.TryGetValue(key, out var t))
                    throw new ModelFormatException($"{source}: the ONNX graph lacks the initializer '{key}' its state-dict list names.");
                var (dtype, size) = (TensorProto.Types.DataType)t.DataType switch
                {
                    TensorProto.Types.DataType.Float => (ScalarType.Float32, 4),
                    TensorProto.Types.DataType.Double => (ScalarType.Float64, 8),
                    TensorProto.Types.DataType.Int64 => (ScalarType.Int64, 8),
                    var other => throw new ModelFormatException($"{source}: initializer '{key}' has ONNX data type {other}; float, double and int64 are read."),
                };
                long elements = 1;
                foreach (var d in t.Dims)
                {
                    if (d < 0) throw new ModelFormatException($"{source}: initializer '{key}' has a negative dimension {d}.");
                    elements = d == 0 ? 0 : elements > long.MaxValue / d ? long.MaxValue : elements * d;
                }
                long bytes = elements > long.MaxValue / size ? long.MaxValue : elements * size;
                if (bytes != t.RawData.Length)
                    throw new ModelFormatException(
                        $"{source}: initializer '{key}' of shape [{string.Join(", ", t.Dims)}] needs {bytes:N0} bytes of raw data; it holds {t.RawData.Length:N0}.");
                total += bytes;
                if (total > maxBytes)
                    throw new ModelFormatException($"{source}: the state dict needs more than the load budget of {maxBytes:N0} bytes (LoadLimits.MaxLoadBytes).");
                var tensor = empty(t.Dims.ToArray(), dtype);
                t.RawData.Span.CopyTo(tensor.bytes);
                result.Add(key, tensor);
            }
            return result;
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
    }
}
