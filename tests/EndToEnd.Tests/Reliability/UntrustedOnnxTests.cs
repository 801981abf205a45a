using System.Globalization;
using System.IO.Compression;
using System.Runtime.InteropServices;
using Google.Protobuf;
using Microsoft.ML;
using MlNetGuide.Tests.Shared;
using Onnx;
using Xunit.Abstractions;

namespace MlNetGuide.EndToEnd.Tests.Reliability;

/// <summary>A plain zip (mlContext.Model.Save of a multiclass network) the crafted ONNX zips start from, and a 1 GiB file an attacker's graph names.</summary>
public sealed class PlainZipFixture : IDisposable
{
    public PlainZipFixture()
    {
        Directory.CreateDirectory(TempFolder);
        var ml = new MLContext(seed: 1);
        var data = Fixtures.Keyed(ml, Fixtures.Rows(200));
        using var model = Fixtures.Train(ml, data, epochs: 1);
        ml.Model.Save(model, data.Schema, ZipPath);
        // Sparse: a gigabyte on paper, nothing on disk. ONNX Runtime resolves an external-data location against the folder
        // of the model file ML.NET writes, which is the temp folder: the child's TMPDIR is this folder.
        using var secret = File.Create(SecretPath);
        secret.SetLength(SecretBytes);
    }

    public const long SecretBytes = 1L << 30;

    public const string SecretName = "secret.bin";

    public string Folder { get; } = Path.Combine(Path.GetTempPath(), $"mlnetguide-onnx-{Guid.NewGuid():N}");

    /// <summary>The child's temp folder, holding the secret file.</summary>
    public string TempFolder => Path.Combine(Folder, "tmp");

    public string SecretPath => Path.Combine(TempFolder, SecretName);

    public string ZipPath => Path.Combine(Folder, "plain.zip");

    public void Dispose() => Directory.Delete(Folder, recursive: true);
}

/// <summary>
/// Crafted ONNX graphs inside plain zips, loaded by <c>NeuralModel.Load</c> in a child process: each is refused with
/// <see cref="Modules.ModelFormatException"/>, under 300 MB of peak resident memory, and the file an external-data
/// initializer names is never opened (inotify watches it while the child runs).
/// </summary>
public sealed class UntrustedOnnxTests(PlainZipFixture fixture, ITestOutputHelper output) : IClassFixture<PlainZipFixture>
{
    private const long PeakLimitKb = 300 * 1024;

    /// <summary>Each attack: (name, edit of the graph's bytes, what the refusal must mention).</summary>
    public static readonly (string Name, Func<byte[], byte[]> Craft, string Mentions)[] Attacks =
    [
        // Ours (the network's metadata kept) with a listed weight moved to an external file.
        ("external-data-listed", b => Edit(b, m => External(m.Graph.Initializer.First(i => i.Name == "0.weight"))), "external file"),
        // An unlisted initializer that names a gigabyte next to the temp copy (2.2 GB peak before).
        ("external-data-unlisted", b => Edit(b, m => m.Graph.Initializer.Add(External(new TensorProto { Name = "extra", Dims = { PlainZipFixture.SecretBytes / 4 } }))), "external file"),
        // A weight the graph reads, read from the file instead: ONNX Runtime opens it next to ML.NET's temp copy.
        ("external-data-read-by-the-graph", b => Edit(b, m =>
        {
            var weight = m.Graph.Initializer.First(i => i.Name == "0.weight");
            var evil = External(new TensorProto { Name = "evil", Dims = { weight.Dims } });
            m.Graph.Initializer.Add(evil);
            var node = m.Graph.Node.First(n => n.Input.Contains("0.weight"));
            node.Input[node.Input.IndexOf("0.weight")] = "evil";
        }), "external file"),
        // Someone else's graph (no MlNetGuide metadata) is checked too: no load may open another file.
        ("external-data-foreign", b => Edit(b, m =>
        {
            m.MetadataProps.Clear();
            m.Graph.Initializer.Add(External(new TensorProto { Name = "extra", Dims = { PlainZipFixture.SecretBytes / 4 } }));
        }), "external file"),
        // The graph reads a zeroed copy of a weight: NeuralModel.Load saw 150/150 correct, a plain load 0/150.
        ("graph-reads-extra-initializer", b => Edit(b, m =>
        {
            var weight = m.Graph.Initializer.First(i => i.Name == "0.weight");
            var evil = weight.Clone();
            evil.Name = "evil";
            evil.RawData = ByteString.CopyFrom(new byte[weight.RawData.Length]);
            m.Graph.Initializer.Add(evil);
            var node = m.Graph.Node.First(n => n.Input.Contains("0.weight"));
            node.Input[node.Input.IndexOf("0.weight")] = "evil";
        }), "not the one MlNetGuide writes"),
        ("graph-with-extra-node", b => Edit(b, m => m.Graph.Node.Add(new NodeProto { OpType = "Identity", Name = "extra", Input = { "0.weight" }, Output = { "unused" } })), "nodes: "),
        ("graph-with-extra-metadata", b => Edit(b, m => m.MetadataProps.Add(new StringStringEntryProto { Key = "k", Value = "v" })), "metadata entries"),
        // Millions of empty elements in a few hundred KB of zip (3.1 GB, 1.8 GB and 1.5 GB before).
        ("thirty-million-initializers", b => AppendToGraph(b, GraphProto.InitializerFieldNumber, 30_000_000), "tensors"),
        ("million-initializers", b => AppendToGraph(b, GraphProto.InitializerFieldNumber, 1_000_000), "tensors"),
        ("ten-million-metadata-entries", b => AppendToModel(b, ModelProto.MetadataPropsFieldNumber, 10_000_000), "metadata entries"),
        // Millions of entries inside one quantization annotation: one message on the graph's level, millions below it.
        ("four-million-annotation-entries", b => AppendNestedToGraph(b, GraphProto.QuantizationAnnotationFieldNumber, TensorAnnotation.QuantParameterTensorNamesFieldNumber, 4_000_000), "protobuf elements"),
        ("fifty-million-packed-dims", b => Edit(b, m => m.Graph.Initializer.First().Dims.AddRange(new long[50_000_000])), "packed numbers"),
        ("graphs-nested-forty-deep", b => Edit(b, m => m.Graph.Node.Add(new NodeProto { OpType = "If", Attribute = { Nested(40) } })), "nested"),
    ];

    public static TheoryData<string> Names => new(Attacks.Select(a => a.Name));

    [Theory]
    [MemberData(nameof(Names))]
    public void CraftedOnnxInsideAPlainZipIsRefusedOpeningNoOtherFile(string name)
    {
        var (_, craft, mentions) = Attacks.Single(a => a.Name == name);
        var path = Path.Combine(fixture.Folder, name + ".zip");
        ReplaceOnnx(fixture.ZipPath, path, craft);
        using var watch = new OpenWatch(fixture.SecretPath);
        var (outcome, peakKb) = LoadInChild(path);
        output.WriteLine($"{name}: {new FileInfo(path).Length:N0} bytes on disk; {outcome}; peak {peakKb / 1024} MB");
        Assert.False(watch.Opened(), $"{PlainZipFixture.SecretName} was opened while loading {name}");
        Assert.StartsWith("refused ModelFormatException", outcome);
        Assert.Contains(mentions, outcome);
        Assert.True(outcome.Length < 600, $"a {outcome.Length}-character message");
        Assert.True(peakKb < PeakLimitKb, $"peak resident memory {peakKb / 1024} MB while refusing {name}");
    }

    [Fact]
    public void TheLegitimatePlainZipLoadsAndTheWatchSeesOpens()
    {
        using var watch = new OpenWatch(fixture.SecretPath);
        var (outcome, _) = LoadInChild(fixture.ZipPath);
        Assert.Equal("loaded", outcome);
        Assert.False(watch.Opened());
        using (File.OpenRead(fixture.SecretPath)) { }
        Assert.True(watch.Opened(), "the watch must see an open, or the tests above prove nothing");
    }

    private (string outcome, long peakKb) LoadInChild(string path)
    {
        var lines = ChildProcess.RunProbeWith(new Dictionary<string, string> { ["TMPDIR"] = fixture.TempFolder }, "load-untrusted", "model", path)
            .Split('\n', StringSplitOptions.TrimEntries);
        var peak = lines.Single(l => l.StartsWith("vmhwm ", StringComparison.Ordinal));
        return (lines[0], long.Parse(peak["vmhwm ".Length..], CultureInfo.InvariantCulture));
    }

    private static TensorProto External(TensorProto t)
    {
        t.DataType = (int)TensorProto.Types.DataType.Float;
        t.RawData = ByteString.Empty;
        t.DataLocation = TensorProto.Types.DataLocation.External;
        t.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = PlainZipFixture.SecretName });
        return t;
    }

    private static AttributeProto Nested(int depth)
    {
        var graph = new GraphProto { Name = $"g{depth}" };
        if (depth > 0) graph.Node.Add(new NodeProto { OpType = "If", Attribute = { Nested(depth - 1) } });
        return new AttributeProto { Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph, G = graph };
    }

    private static byte[] Edit(byte[] model, Action<ModelProto> edit)
    {
        var proto = ModelProto.Parser.ParseFrom(model);
        edit(proto);
        return proto.ToByteArray();
    }

    /// <summary>The model with <paramref name="count"/> empty <paramref name="field"/> elements added to its graph, written on the wire.</summary>
    private static byte[] AppendToGraph(byte[] model, int field, int count)
    {
        var proto = ModelProto.Parser.ParseFrom(model);
        var graph = proto.Graph.ToByteArray();
        proto.Graph = null;
        using var output = new MemoryStream();
        output.Write(proto.ToByteArray());
        var coded = new CodedOutputStream(output);
        coded.WriteTag(ModelProto.GraphFieldNumber, WireFormat.WireType.LengthDelimited);
        coded.WriteLength(graph.Length + 2 * count);
        coded.Flush();
        output.Write(graph);
        for (int i = 0; i < count; i++) { coded.WriteTag(field, WireFormat.WireType.LengthDelimited); coded.WriteLength(0); }
        coded.Flush();
        return output.ToArray();
    }

    /// <summary>The model with one <paramref name="outer"/> message added to its graph, holding <paramref name="count"/> empty <paramref name="inner"/> elements.</summary>
    private static byte[] AppendNestedToGraph(byte[] model, int outer, int inner, int count)
    {
        using var payload = new MemoryStream();
        var p = new CodedOutputStream(payload);
        for (int i = 0; i < count; i++) { p.WriteTag(inner, WireFormat.WireType.LengthDelimited); p.WriteLength(0); }
        p.Flush();
        var proto = ModelProto.Parser.ParseFrom(model);
        using var graph = new MemoryStream();
        graph.Write(proto.Graph.ToByteArray());
        var g = new CodedOutputStream(graph);
        g.WriteTag(outer, WireFormat.WireType.LengthDelimited);
        g.WriteLength((int)payload.Length);
        g.Flush();
        payload.Position = 0;
        payload.CopyTo(graph);
        proto.Graph = null;
        using var output = new MemoryStream();
        output.Write(proto.ToByteArray());
        var o = new CodedOutputStream(output);
        o.WriteTag(ModelProto.GraphFieldNumber, WireFormat.WireType.LengthDelimited);
        o.WriteLength((int)graph.Length);
        o.Flush();
        graph.Position = 0;
        graph.CopyTo(output);
        return output.ToArray();
    }

    /// <summary>The model with <paramref name="count"/> empty <paramref name="field"/> elements added at its top level.</summary>
    private static byte[] AppendToModel(byte[] model, int field, int count)
    {
        using var output = new MemoryStream();
        output.Write(model);
        var coded = new CodedOutputStream(output);
        for (int i = 0; i < count; i++) { coded.WriteTag(field, WireFormat.WireType.LengthDelimited); coded.WriteLength(0); }
        coded.Flush();
        return output.ToArray();
    }

    /// <summary>Copies a plain zip, replacing its ONNX model entry (ML.NET's: an int32 length, then the bytes) by <paramref name="craft"/>'s.</summary>
    private static void ReplaceOnnx(string source, string target, Func<byte[], byte[]> craft)
    {
        using var from = ZipFile.OpenRead(source);
        using var to = new ZipArchive(File.Create(target), ZipArchiveMode.Create);
        foreach (var entry in from.Entries)
        {
            using var input = entry.Open();
            using var buffer = new MemoryStream();
            input.CopyTo(buffer);
            var bytes = buffer.ToArray();
            if (entry.Name == "OnnxModel")
            {
                var crafted = craft(bytes[4..]);
                bytes = [.. BitConverter.GetBytes(crafted.Length), .. crafted];
            }
            using var write = to.CreateEntry(entry.FullName, CompressionLevel.SmallestSize).Open();
            write.Write(bytes);
        }
    }

    /// <summary>Linux inotify on one file: whether anyone opened or read it since the watch began.</summary>
    private sealed class OpenWatch : IDisposable
    {
        private const int NonBlocking = 0x800; // IN_NONBLOCK
        private const uint Access = 0x1, Open = 0x20; // IN_ACCESS, IN_OPEN
        private readonly int _fd;

        public OpenWatch(string path)
        {
            _fd = inotify_init1(NonBlocking);
            Assert.True(_fd >= 0, $"inotify_init1 failed ({Marshal.GetLastPInvokeError()})");
            Assert.True(inotify_add_watch(_fd, path, Access | Open) >= 0, $"inotify_add_watch failed ({Marshal.GetLastPInvokeError()})");
        }

        /// <summary>True when events arrived (each read drains them).</summary>
        public bool Opened()
        {
            var buffer = new byte[4096];
            return read(_fd, buffer, buffer.Length) > 0;
        }

        public void Dispose() => close(_fd);

        [DllImport("libc", SetLastError = true)] private static extern int inotify_init1(int flags);
        [DllImport("libc", SetLastError = true)] private static extern int inotify_add_watch(int fd, string path, uint mask);
        [DllImport("libc", SetLastError = true)] private static extern nint read(int fd, byte[] buffer, nint count);
        [DllImport("libc")] private static extern int close(int fd);
    }
}
