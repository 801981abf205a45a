using Onnx;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetGuide.Modules.Onnx;

/// <summary>
/// Export rules for the sequence modules (src/Modules/Sequences): the input is int64 token ids [batch, time] with 0
/// as padding, exported with <see cref="OnnxExporter.ExportTokenSequences"/>. Each rule computes what the module's
/// forward computes: embeddings are <c>Gather</c>, the padding mask is <c>Not(Equal(ids, 0))</c>, recurrent layers are
/// ONNX's own <c>LSTM</c>/<c>GRU</c> with each row's length as <c>sequence_lens</c> (what packing does in PyTorch),
/// and attention is <c>MatMul</c>/<c>Softmax</c> with the key-padding mask applied by <c>Where</c>.
/// </summary>
/// <remarks>
/// Weights stay the module's state-dict tensors, named by their keys: where ONNX wants another layout (the recurrent
/// gates' order, both directions stacked) the graph rearranges them with <c>Gather</c>/<c>Concat</c> nodes, which ONNX
/// Runtime folds once at load. So a graph's initializers are still the module's state dict.
/// </remarks>
internal static class OnnxSequenceExportRules
{
    private const long FloatType = (long)TensorProto.Types.DataType.Float;
    private const long Int64Type = (long)TensorProto.Types.DataType.Int64;
    private const long Int32Type = (long)TensorProto.Types.DataType.Int32;

    public static void RegisterBuiltIns()
    {
        OnnxExporter.Register<FastTextClassifier>((g, m, ids) =>
        {
            var mask = Mask(g, ids);
            return Decoder(g, m, MaskedMean(g, Embed(g, m, ids), mask));
        });
        OnnxExporter.Register<TextCnn>(TextCnn);
        OnnxExporter.Register<BiRnnEncoder>(BiRnn);
        OnnxExporter.Register<TransformerTextEncoder>(Transformer);
        OnnxExporter.Register<PositionalEncoding>((g, m, x) => g.Node("Add", [x, PositionalTable(g, x, m.Size)]));
    }

    /// <summary>d2l 16.3: right-pad by k_max − 1, Conv per width, first T outputs, ReLU, × mask, max over time.</summary>
    private static string TextCnn(OnnxGraphBuilder g, TextCnn m, string ids)
    {
        var mask = Mask(g, ids);                                                                  // [B, T] float
        var x = g.Node("Mul", [Embed(g, m, ids), Unsqueeze(g, mask, 2)]);                          // pads zeroed
        x = g.Node("Transpose", [x], ("perm", new long[] { 0, 2, 1 }));                            // [B, d, T]
        x = g.Node("Pad", [x, g.Int64s("pads", 0, 0, 0, 0, 0, m.KernelSizes.Max() - 1)], ("mode", "constant"));
        var time = g.Node("Shape", [ids], ("start", 1L), ("end", 2L));                             // [T]
        var windowMask = Unsqueeze(g, mask, 1);                                                   // [B, 1, T]
        var encodings = new List<string>();
        int i = 0;
        foreach (var conv in (ModuleList<Conv1d>)OnnxExporter.Child(m, "convs"))
        {
            var inputs = new List<string> { x, g.Weight(conv.weight) };
            if (conv.bias is not null) inputs.Add(g.Weight(conv.bias));
            var c = g.Node("Conv", inputs, ("kernel_shape", new[] { m.KernelSizes[i++] }), ("strides", new long[] { 1 }),
                ("pads", new long[] { 0, 0 }), ("dilations", new long[] { 1 }), ("group", 1L));
            c = g.Node("Slice", [c, g.Int64s("starts", 0), time, g.Int64s("axes", 2)]);
            c = g.Node("Mul", [g.Node("Relu", [c]), windowMask]);
            encodings.Add(g.Node("ReduceMax", [c], ("axes", new long[] { 2 }), ("keepdims", 0L)));
        }
        return Decoder(g, m, g.Node("Concat", encodings, ("axis", 1L)));                          // dropout: identity
    }

    /// <summary>
    /// d2l 16.2: ONNX LSTM/GRU layers, bidirectional, each row run to its length (its last token + 1, at least 1) as
    /// <c>sequence_lens</c>, so the backward direction starts at the row's last token as with PyTorch's packing.
    /// </summary>
    private static string BiRnn(OnnxGraphBuilder g, BiRnnEncoder m, string ids)
    {
        var mask = Mask(g, ids);
        var lengths = g.Node("Cast", [Lengths(g, ids)], ("to", Int32Type));                       // [B] int32
        var x = g.Node("Transpose", [Embed(g, m, ids)], ("perm", new long[] { 1, 0, 2 }));         // [T, B, E]
        var encoder = OnnxExporter.Child(m, "encoder");
        var p = encoder.named_parameters().ToDictionary(q => q.name, q => (Tensor)q.parameter);
        long h = m.HiddenSize;
        // PyTorch stacks the gates' rows as LSTM (i, f, g, o) and GRU (r, z, n); ONNX wants (i, o, f, c) and (z, r, h).
        long[] blocks = m.Cell == RecurrentCell.Lstm ? [0, 3, 1, 2] : [1, 0, 2];
        var rows = g.Int64s("gate_rows", [.. blocks.SelectMany(b => Enumerable.Range(0, (int)h).Select(r => b * h + r))]);
        string Gates(string key) => g.Node("Gather", [g.Weight(Parameter(p, key, encoder)), rows], ("axis", 0L));
        // Forward then backward direction, stacked on a new first axis: ONNX's [num_directions, ...] layout.
        string Stacked(Func<string, string> of) => g.Node("Concat", [Unsqueeze(g, of(""), 0), Unsqueeze(g, of("_reverse"), 0)], ("axis", 0L));
        for (long layer = 0; layer < m.Layers; layer++)
        {
            var w = Stacked(s => Gates($"weight_ih_l{layer}{s}"));                                  // [2, G·H, in]
            var r = Stacked(s => Gates($"weight_hh_l{layer}{s}"));                                  // [2, G·H, H]
            var b = Stacked(s => g.Node("Concat", [Gates($"bias_ih_l{layer}{s}"), Gates($"bias_hh_l{layer}{s}")], ("axis", 0L))); // [2, 2·G·H]: Wb, Rb
            var attributes = new List<(string, object)> { ("hidden_size", h), ("direction", "bidirectional") };
            if (m.Cell == RecurrentCell.Gru) attributes.Add(("linear_before_reset", 1L));         // PyTorch's n = tanh(W x + b + r ⊙ (U h + b'))
            var y = g.Node(m.Cell == RecurrentCell.Lstm ? "LSTM" : "GRU", [x, w, r, b, lengths], [.. attributes]); // [T, 2, B, H]
            y = g.Node("Transpose", [y], ("perm", new long[] { 0, 2, 1, 3 }));                     // [T, B, 2, H]
            x = g.Node("Reshape", [y, g.Int64s("shape", 0, 0, -1)]);                               // [T, B, 2H]: forward then backward
        }
        var states = g.Node("Transpose", [x], ("perm", new long[] { 1, 0, 2 }));                   // [B, T, 2H]
        return Decoder(g, m, MaskedMean(g, states, mask));
    }

    /// <summary>d2l 11.7: √d-scaled embeddings + sinusoids, post-norm encoder layers with a key-padding mask, masked mean.</summary>
    private static string Transformer(OnnxGraphBuilder g, TransformerTextEncoder m, string ids)
    {
        var mask = Mask(g, ids);                                                                  // [B, T] float, 1 = token
        long d = m.ModelSize, heads = m.Heads, dh = d / heads;
        var x = g.Node("Mul", [Embed(g, m, ids), g.Constant("sqrt_d", [MathF.Sqrt(d)])]);
        x = g.Node("Add", [x, PositionalTable(g, ids, d)]);
        // Keys masked where padding, except in a row of padding alone (which masks nothing; see the module).
        var anyToken = g.Node("ReduceMax", [mask], ("axes", new long[] { 1 }), ("keepdims", 1L));   // [B, 1]
        var masked = g.Node("Less", [mask, anyToken]);                                             // pad and the row has a token
        masked = g.Node("Unsqueeze", [masked, g.Int64s("axes", 1, 2)]);                           // [B, 1, 1, T]
        var minusInfinity = g.Constant("minus_infinity", [float.NegativeInfinity]);
        var scale = g.Constant("attention_scale", [1f / MathF.Sqrt(dh)]);
        foreach (var layer in (ModuleList<TransformerEncoderLayer>)OnnxExporter.Child(m, "layers"))
        {
            var p = layer.named_parameters().ToDictionary(q => q.name, q => (Tensor)q.parameter);
            Tensor P(string key) => Parameter(p, key, layer);
            var qkv = OnnxExportRules.Linear(g, x, P("self_attn.in_proj_weight"), P("self_attn.in_proj_bias")); // [B, T, 3d]: q, k, v
            string Head(long part, long[] perm) => g.Node("Transpose",
                [g.Node("Reshape", [g.Node("Slice", [qkv, g.Int64s("starts", part * d), g.Int64s("ends", (part + 1) * d), g.Int64s("axes", 2)]),
                    g.Int64s("heads", 0, 0, heads, dh)])], ("perm", perm));
            var q = Head(0, [0, 2, 1, 3]);                                                         // [B, h, T, dh]
            var k = Head(1, [0, 2, 3, 1]);                                                         // [B, h, dh, T]
            var v = Head(2, [0, 2, 1, 3]);
            var scores = g.Node("MatMul", [g.Node("Mul", [q, scale]), k]);                           // [B, h, T, T]
            scores = g.Node("Where", [masked, minusInfinity, scores]);
            var context = g.Node("MatMul", [g.Node("Softmax", [scores], ("axis", -1L)), v]);        // [B, h, T, dh]
            context = g.Node("Reshape", [g.Node("Transpose", [context], ("perm", new long[] { 0, 2, 1, 3 })), g.Int64s("model", 0, 0, d)]);
            var attended = OnnxExportRules.Linear(g, context, P("self_attn.out_proj.weight"), P("self_attn.out_proj.bias"));
            x = LayerNorm(g, g.Node("Add", [x, attended]), P("norm1.weight"), P("norm1.bias"));
            var hidden = g.Node("Relu", [OnnxExportRules.Linear(g, x, P("linear1.weight"), P("linear1.bias"))]);
            x = LayerNorm(g, g.Node("Add", [x, OnnxExportRules.Linear(g, hidden, P("linear2.weight"), P("linear2.bias"))]), P("norm2.weight"), P("norm2.bias"));
        }
        return Decoder(g, m, MaskedMean(g, x, mask));
    }

    // libtorch's TransformerEncoderLayer normalizes with LayerNorm's default epsilon.
    private static string LayerNorm(OnnxGraphBuilder g, string x, Tensor weight, Tensor bias) =>
        g.Node("LayerNormalization", [x, g.Weight(weight), g.Weight(bias)], ("axis", -1L), ("epsilon", 1e-5f));

    /// <summary>P[:T] [T, d] for the T of <paramref name="like"/> ([B, T] or [B, T, d]), as <see cref="PositionalEncoding.Table"/>.</summary>
    private static string PositionalTable(OnnxGraphBuilder g, string like, long size)
    {
        float[] frequencies;
        using (var f = PositionalEncoding.Frequencies(size)) frequencies = f.data<float>().ToArray();
        var time = g.Node("Squeeze", [g.Node("Shape", [like], ("start", 1L), ("end", 2L))]);          // T, a scalar
        var zero = g.Node("Squeeze", [g.Int64s("zero", 0)]);
        var one = g.Node("Squeeze", [g.Int64s("one", 1)]);
        var positions = g.Node("Cast", [g.Node("Range", [zero, time, one])], ("to", FloatType));       // [T]
        var angles = g.Node("Div", [Unsqueeze(g, positions, 1), g.Constant("frequencies", frequencies, size / 2)]); // [T, d/2]
        var pairs = g.Node("Concat", [Unsqueeze(g, g.Node("Sin", [angles]), 2), Unsqueeze(g, g.Node("Cos", [angles]), 2)], ("axis", 2L));
        return g.Node("Reshape", [pairs, g.Int64s("table", 0, -1)]);                                    // sin at 2j, cos at 2j+1
    }

    /// <summary>1 where a position holds a token, 0 where padding: Cast(Not(Equal(ids, 0))), float [B, T].</summary>
    private static string Mask(OnnxGraphBuilder g, string ids) =>
        g.Node("Cast", [g.Node("Not", [g.Node("Equal", [ids, g.Int64s("padding", TokenIds.Padding)])])], ("to", FloatType));

    /// <summary>Each row's last token + 1, and 1 for a row of padding: max(1, max_t (t + 1)·[ids_t ≠ 0]), int64 [B].</summary>
    private static string Lengths(OnnxGraphBuilder g, string ids)
    {
        var isToken = g.Node("Cast", [g.Node("Not", [g.Node("Equal", [ids, g.Int64s("padding", TokenIds.Padding)])])], ("to", Int64Type));
        var one = g.Node("Squeeze", [g.Int64s("one", 1)]);
        var limit = g.Node("Add", [g.Node("Squeeze", [g.Node("Shape", [ids], ("start", 1L), ("end", 2L))]), one]);
        var positions = g.Node("Range", [one, limit, one]);                                              // 1 … T
        var last = g.Node("ReduceMax", [g.Node("Mul", [isToken, positions])], ("axes", new long[] { 1 }), ("keepdims", 0L));
        return g.Node("Max", [last, g.Int64s("at_least", 1)]);
    }

    private static string Embed(OnnxGraphBuilder g, nn.Module m, string ids)
    {
        var embedding = OnnxExporter.Child(m, "embedding");
        var p = embedding.named_parameters().ToDictionary(q => q.name, q => (Tensor)q.parameter);
        return g.Node("Gather", [g.Weight(Parameter(p, "weight", embedding)), ids], ("axis", 0L));      // [B, T, d]
    }

    /// <summary><see cref="MaskedMeanPooling"/>: Σ mask·x / max(1, Σ mask) over time.</summary>
    private static string MaskedMean(OnnxGraphBuilder g, string x, string mask)
    {
        var axis = g.Int64s("time_axis", 1);
        var sum = g.Node("ReduceSum", [g.Node("Mul", [x, Unsqueeze(g, mask, 2)]), axis], ("keepdims", 0L));
        var count = g.Node("Max", [g.Node("ReduceSum", [mask, axis], ("keepdims", 1L)), g.Constant("one", [1f], 1)]);
        return g.Node("Div", [sum, count]);
    }

    private static string Decoder(OnnxGraphBuilder g, nn.Module m, string x)
    {
        var decoder = (Linear)OnnxExporter.Child(m, "decoder");
        return OnnxExportRules.Linear(g, x, decoder.weight, decoder.bias);
    }

    private static string Unsqueeze(OnnxGraphBuilder g, string x, long axis) => g.Node("Unsqueeze", [x, g.Int64s("axes", axis)]);

    // A native module's registered parameter: its own property getters (Embedding.weight) wrap a new handle each call,
    // which the graph builder would not find in the state dict.
    private static Tensor Parameter(Dictionary<string, Tensor> parameters, string name, nn.Module owner) =>
        parameters.TryGetValue(name, out var p) ? p
        : throw new OnnxExportException($"{owner.GetType().Name} has no parameter '{name}' (it has {string.Join(", ", parameters.Keys)}).");
}
