using System.Text;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace MlNetGuide.Modules.Tests;

/// <summary>The safetensors seal covers the header too, and overlapping byte ranges are refused, sealed or not.</summary>
public sealed class SealTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-seal-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string SaveTwo()
    {
        var path = Path.Combine(_dir, "two.safetensors");
        using var a = tensor(new float[] { 1, 2, 3, 4 });
        using var b = tensor(new float[] { 5, 6, 7, 8 });
        TensorIO.SaveDict(new Dictionary<string, Tensor> { ["a"] = a, ["b"] = b }, path, TensorFileFormat.Safetensors);
        return path;
    }

    /// <summary>Rewrites the JSON header of a safetensors file; the data section stays byte for byte.</summary>
    private static void EditHeader(string path, Action<JsonObject> edit)
    {
        var file = File.ReadAllBytes(path);
        int length = (int)BitConverter.ToUInt64(file, 0);
        var header = (JsonObject)JsonNode.Parse(file.AsSpan(8, length))!;
        edit(header);
        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        using var output = File.Create(path);
        output.Write(BitConverter.GetBytes((ulong)json.Length));
        output.Write(json);
        output.Write(file.AsSpan(8 + length));
    }

    private static void Swap(JsonObject header)
    {
        var aOffsets = header["a"]!["data_offsets"]!.DeepClone();
        header["a"]!["data_offsets"] = header["b"]!["data_offsets"]!.DeepClone();
        header["b"]!["data_offsets"] = aOffsets;
    }

    [Fact]
    public void SwappingTwoTensorsOffsetsBreaksTheSeal()
    {
        var path = SaveTwo();
        EditHeader(path, Swap);
        var ex = Assert.Throws<ModelFormatException>(() => TensorIO.LoadDict(path));
        Assert.Contains("seal does not match its header and data", ex.Message);
    }

    [Fact]
    public void WithoutTheSealASwapLoadsSwappedWhichIsWhatTheSealIsFor()
    {
        var path = SaveTwo();
        EditHeader(path, h => { ((JsonObject)h["__metadata__"]!).Remove("mlnetguide.seal"); Swap(h); });
        var dict = TensorIO.LoadDict(path);
        Assert.Equal(new float[] { 5, 6, 7, 8 }, dict["a"].data<float>().ToArray());
        foreach (var t in dict.Values) t.Dispose();
    }

    [Fact]
    public void OverlappingRangesAreRefusedEvenWithoutASeal()
    {
        var path = SaveTwo();
        EditHeader(path, h =>
        {
            ((JsonObject)h["__metadata__"]!).Remove("mlnetguide.seal");
            h["b"]!["data_offsets"] = h["a"]!["data_offsets"]!.DeepClone();
        });
        var ex = Assert.Throws<ModelFormatException>(() => TensorIO.LoadDict(path));
        Assert.Contains("overlap", ex.Message);
    }

    [Fact]
    public void ASealedFileRoundTripsAndItsSealCoversTheHeader()
    {
        var path = SaveTwo();
        var dict = TensorIO.LoadDict(path);
        Assert.Equal(new float[] { 1, 2, 3, 4 }, dict["a"].data<float>().ToArray());
        foreach (var t in dict.Values) t.Dispose();
        // Changing only a shape (4 -> [2, 2]: same bytes) is caught too.
        EditHeader(path, h => h["a"]!["shape"] = new JsonArray(2, 2));
        Assert.Throws<ModelFormatException>(() => TensorIO.LoadDict(path));
    }

    [Theory]
    [InlineData(TensorFileFormat.TorchSharp)]
    [InlineData(TensorFileFormat.PyTorch)]
    [InlineData(TensorFileFormat.Safetensors)]
    public void ALegitimateHundredMegabyteModelLoadsWithTheDefaultLimits(TensorFileFormat format)
    {
        // Linear(5000, 5000): 25,005,000 floats, 100 MB — over the 64 MiB floor, under 8 × its own file length.
        var path = Path.Combine(_dir, "big." + format);
        using var net = nn.Linear(5000, 5000);
        StateDict.Save(net, path, format);
        Assert.True(new FileInfo(path).Length > 90_000_000); // PyBridge deflates its zip entries: random weights shrink a little
        using var clone = nn.Linear(5000, 5000);
        StateDict.Load(clone, path);
        Assert.True(clone.weight.equal(net.weight).all().item<bool>());
        // And a budget below its size refuses it, naming the budget.
        var ex = Assert.Throws<ModelFormatException>(() => StateDict.Load(clone, path, limits: new LoadLimits { MaxLoadBytes = 50_000_000 }));
        Assert.Contains("budget", ex.Message);
    }
}
