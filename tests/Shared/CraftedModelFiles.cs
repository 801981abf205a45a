using System.IO.Compression;
using System.Text;
using System.Text.Json.Nodes;

namespace MlNetGuide.Tests.Shared;

/// <summary>
/// Model zips an attacker could craft from a legitimate one (saved by <c>NeuralModel.Save</c>): bombs, absurd
/// configs, repeated parts. Each drops the seal (an attacker can as easily recompute it), so a loader must refuse them
/// for what they are, not because a seal broke. Big entries are written streamed, so building them needs little memory.
/// </summary>
internal static class CraftedModelFiles
{
    public const string Prefix = "MlNetGuide/";

    /// <summary>Every attack by name: (name, build(baseModel, target), what the refusal must mention).</summary>
    public static readonly (string Name, Action<string, string> Build, string Mentions)[] All =
    [
        ("weights-bomb", (b, t) => Rewrite(b, t, replace: new() { [Prefix + "part1.weights"] = z => WriteZeros(z, 3L << 30) }), "load budget"),
        ("nested-zip-bomb", (b, t) => Rewrite(b, t, replace: new() { [Prefix + "part0.zip"] = z => WriteZeros(z, 3L << 30) }), "load budget"),
        ("nested-zip-inner-bomb", (b, t) => Rewrite(b, t, replace: new() { [Prefix + "part0.zip"] = z => WriteNestedBomb(z, 3L << 30) }), "load budget"),
        ("manifest-string", (b, t) => Rewrite(b, t, replace: new() { [Prefix + "manifest.json"] = z => WriteHugeJsonString(z, 3L << 30) }), "load budget"),
        ("manifest-string-small", (b, t) => Rewrite(b, t, replace: new() { [Prefix + "manifest.json"] = z => WriteHugeJsonString(z, 48L << 20) }), "at most"),
        ("huge-hidden-width", (b, t) => Rewrite(b, t, edit: new() { [Prefix + "part1.json"] = c => c["HiddenWidths"] = new JsonArray(67108864) }), "needs at least"),
        ("repeated-parts", (b, t) => Rewrite(b, t, edit: new() { [Prefix + "manifest.json"] = m => RepeatNeuralPart(m, 3) }), "more than once"),
        ("thousand-parts", (b, t) => Rewrite(b, t, edit: new() { [Prefix + "manifest.json"] = m => RepeatNeuralPart(m, 1000) }), "at most 256"),
        ("key-count-mismatch", (b, t) => Rewrite(b, t, edit: new() { [Prefix + "part1.json"] = c => ((JsonArray)c["KeyValues"]!).Add("extra") }), "label key values"),
        ("absurd-scoring-batch", (b, t) => Rewrite(b, t, edit: new() { [Prefix + "part1.json"] = c => c["ScoringBatchSize"] = 1 << 30 }), "scoring batch size"),
    ];

    /// <summary>Copies <paramref name="baseModel"/> to <paramref name="target"/> without its seal, replacing or editing entries.</summary>
    public static void Rewrite(string baseModel, string target,
        Dictionary<string, Action<Stream>>? replace = null, Dictionary<string, Action<JsonObject>>? edit = null)
    {
        using var source = ZipFile.OpenRead(baseModel);
        using var output = new ZipArchive(File.Create(target), ZipArchiveMode.Create);
        foreach (var entry in source.Entries)
        {
            if (entry.Name == "mlnetguide.sha256") continue;
            bool replaced = replace?.ContainsKey(entry.FullName) == true;
            // Bombs deflate best (about 1000:1) at SmallestSize; the rest keep the saver's level.
            using var to = output.CreateEntry(entry.FullName, replaced ? CompressionLevel.SmallestSize : CompressionLevel.Fastest).Open();
            if (replace?.GetValueOrDefault(entry.FullName) is { } write)
                write(to);
            else if (edit?.GetValueOrDefault(entry.FullName) is { } change)
            {
                JsonObject json;
                using (var from = entry.Open()) json = (JsonObject)JsonNode.Parse(from)!;
                change(json);
                to.Write(Encoding.UTF8.GetBytes(json.ToJsonString()));
            }
            else
            {
                using var from = entry.Open();
                from.CopyTo(to);
            }
        }
    }

    private static void RepeatNeuralPart(JsonObject manifest, int times)
    {
        var parts = (JsonArray)manifest["Parts"]!;
        var neural = parts.First(p => (string?)p!["Kind"] == "neural")!;
        for (int i = 0; i < times; i++) parts.Add(neural.DeepClone());
    }

    /// <summary>Writes <paramref name="bytes"/> zero bytes (they deflate about 1000:1).</summary>
    public static void WriteZeros(Stream to, long bytes)
    {
        var block = new byte[1 << 20];
        for (long left = bytes; left > 0; left -= block.Length) to.Write(block, 0, (int)Math.Min(block.Length, left));
    }

    private static void WriteNestedBomb(Stream to, long bytes)
    {
        using var nested = new ZipArchive(to, ZipArchiveMode.Create, leaveOpen: true);
        using var inner = nested.CreateEntry("Model/Model.key", CompressionLevel.SmallestSize).Open();
        WriteZeros(inner, bytes);
    }

    private static void WriteHugeJsonString(Stream to, long bytes)
    {
        to.Write("{\"Version\":1,\"Parts\":[{\"Kind\":\""u8);
        var block = new byte[1 << 20];
        Array.Fill(block, (byte)'a');
        for (long left = bytes; left > 0; left -= block.Length) to.Write(block, 0, (int)Math.Min(block.Length, left));
        to.Write("\",\"Entry\":\"x\"}]}"u8);
    }
}
