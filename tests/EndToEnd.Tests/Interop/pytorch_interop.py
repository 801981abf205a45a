"""Real PyTorch on the other side of MlNetGuide's 6.6 file I/O (run by PyTorchInteropTests.cs).

  pytorch_interop.py save DIR   torch.save the chapter's objects into DIR; print {name: forward outputs} as JSON
  pytorch_interop.py load DIR   torch.load what C# wrote into DIR, check it, load state dicts with strict=True;
                                print {name: {"ok": bool, "error": str, "out": [...]}} as JSON

Outputs are float32 values printed exactly (json writes a float's repr), so C# can compare them within float32 assert_close bounds (atol 1e-5, rtol 1.3e-6).
Every module here mirrors one in PyTorchInteropTests.cs, parameter name for parameter name; the sequence modules
(SEQUENCE_NETS) mirror src/Modules/Sequences and run on sequence_ids(), token ids with 0 as padding.
"""
import json
import math
import sys
import traceback

import torch
from torch import nn


class MLP(nn.Module):
    """The chapter's MLP (6.1) with MlNetGuide's field names: hidden -> ReLU -> output."""

    def __init__(self, inputs, hidden=256, outputs=10):
        super().__init__()
        self.hidden = nn.Linear(inputs, hidden)
        self.output = nn.Linear(hidden, outputs)

    def forward(self, x):
        return self.output(torch.relu(self.hidden(x)))


def tied_net():
    """6.2's tied net: one nn.Linear used at positions 2 and 4 (state_dict lists it under both names)."""
    shared = nn.Linear(8, 8)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU(), nn.Linear(8, 1))


class Ordered(nn.Module):
    """Submodules registered in another order than the forward uses them, with BatchNorm buffers in between:
    state_dict order is head.*, norm.weight, norm.bias, norm.running_mean, norm.running_var,
    norm.num_batches_tracked (int64), body.*."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(8, 3)
        self.norm = nn.BatchNorm1d(8)
        self.body = nn.Linear(5, 8)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.body(x))))


# The sequence modules (issue #26): token ids [batch, time], int64, 0 is padding; each mirrors its C# module in
# src/Modules/Sequences, child for child, and computes the same thing with PyTorch's own nn.Embedding, nn.Conv1d,
# nn.LSTM, nn.GRU and nn.TransformerEncoderLayer.

def masked_mean(x, mask):
    """MaskedMeanPooling: the mean over the tokens; a row of padding alone gives zeros."""
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1)


class FastText(nn.Module):
    def __init__(self, vocabulary, outputs, embedding):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, embedding, padding_idx=0)
        self.decoder = nn.Linear(embedding, outputs)

    def forward(self, ids):
        return self.decoder(masked_mean(self.embedding(ids), ids != 0))


def bag_of_ids(ids, width):
    """SequenceNets.Input's features for the feature bag: 0.5 per occurrence of each id, id 0 (padding) dropped."""
    x = torch.zeros(ids.shape[0], width).scatter_add_(1, ids, torch.full(ids.shape, 0.5))
    x[:, 0] = 0
    return x


class FeatureBag(nn.Module):
    """MlNetGuide's FeatureBag: nn.EmbeddingBag(sum) over a row's non-zeros, weighted by them, then a linear decoder."""
    def __init__(self, inputs, outputs, size):
        super().__init__()
        self.bag = nn.EmbeddingBag(inputs, size, mode="sum")
        self.decoder = nn.Linear(size, outputs)

    def forward(self, ids):
        x = bag_of_ids(ids, self.bag.num_embeddings)
        rows, columns = x.nonzero(as_tuple=True)
        counts = torch.bincount(rows, minlength=x.shape[0])
        offsets = counts.cumsum(0) - counts
        return self.decoder(self.bag(columns, offsets, per_sample_weights=x[rows, columns]))


class TextCnn(nn.Module):
    """d2l 16.3's TextCNN with one embedding; windows start on tokens, the row is right-padded by k_max - 1 zeros."""

    def __init__(self, vocabulary, outputs, embedding, kernel_sizes, channels, dropout):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, embedding, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(embedding, c, k) for k, c in zip(kernel_sizes, channels))
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.Linear(sum(channels), outputs)
        self.widest = max(kernel_sizes)

    def forward(self, ids):
        time = ids.shape[1]
        x = self.embedding(ids).transpose(1, 2)
        mask = (ids != 0).unsqueeze(1).to(x.dtype)
        x = nn.functional.pad(x * mask, (0, self.widest - 1))
        encodings = [(torch.relu(conv(x)[:, :, :time]) * mask).amax(2) for conv in self.convs]
        return self.decoder(self.dropout(torch.cat(encodings, 1)))


class BiRnn(nn.Module):
    """d2l 16.2's BiRNN, each row packed to its last token + 1 (at least 1), pooled by the masked mean."""

    def __init__(self, vocabulary, outputs, cell, embedding, hidden, layers):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, embedding, padding_idx=0)
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.encoder = rnn(embedding, hidden, layers, batch_first=True, bidirectional=True)
        self.decoder = nn.Linear(2 * hidden, outputs)

    def forward(self, ids):
        mask = ids != 0
        positions = torch.arange(1, ids.shape[1] + 1)
        lengths = (mask.long() * positions).amax(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(ids), lengths, batch_first=True, enforce_sorted=False)
        states, _ = self.encoder(packed)
        padded, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=ids.shape[1])
        return self.decoder(masked_mean(padded, mask))


def positional_encoding(time, size):
    """d2l 11.6.3: P[t, 2j] = sin(t / 10000^(2j/d)), P[t, 2j+1] = cos(...)."""
    angles = torch.arange(time, dtype=torch.float32).reshape(-1, 1) / torch.tensor(10000.0).pow(
        torch.arange(0, size, 2, dtype=torch.float32) / size)
    return torch.stack([angles.sin(), angles.cos()], 2).reshape(time, size)


class TransformerText(nn.Module):
    """d2l 11.7's encoder on nn.TransformerEncoderLayer(batch_first=True) with a key-padding mask; an all-padding
    row masks nothing (it would be a softmax over nothing) and pools to zeros."""

    def __init__(self, vocabulary, outputs, model, heads, feed_forward, layers, dropout):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, model, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(model, heads, feed_forward, dropout, batch_first=True) for _ in range(layers))
        self.decoder = nn.Linear(model, outputs)
        self.model = model

    def forward(self, ids):
        mask = ids != 0
        x = self.embedding(ids) * math.sqrt(self.model) + positional_encoding(ids.shape[1], self.model)
        x = self.dropout(x)
        key_padding = ~mask & mask.any(1, keepdim=True)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=key_padding)
        return self.decoder(masked_mean(x, mask))


# One small net of each kind; PyTorchInteropTests.cs builds the same ones (SequenceNets).
VOCABULARY = 50
SEQUENCE_NETS = {
    "fasttext": lambda: FastText(VOCABULARY, 3, 16),
    "feature-bag": lambda: FeatureBag(VOCABULARY, 3, 16),
    "textcnn": lambda: TextCnn(VOCABULARY, 3, 16, [2, 3, 5], [8, 6, 4], 0.5),
    "lstm": lambda: BiRnn(VOCABULARY, 3, "lstm", 16, 12, 2),
    "gru": lambda: BiRnn(VOCABULARY, 3, "gru", 16, 12, 2),
    "transformer": lambda: TransformerText(VOCABULARY, 3, 16, 4, 32, 2, 0.1),
}


def sequence_ids():
    """Rows of 7, 1 (shorter than the widest kernel), 4 (a padding id inside), 0 tokens, then padding."""
    return torch.tensor([[5, 3, 7, 1, 49, 2, 11, 0, 0],
                         [4, 0, 0, 0, 0, 0, 0, 0, 0],
                         [8, 8, 0, 9, 0, 0, 0, 0, 0],
                         [0, 0, 0, 0, 0, 0, 0, 0, 0]])


def values(t):
    return t.detach().reshape(-1).tolist()


def save(folder):
    torch.manual_seed(0)
    x = torch.arange(4)
    y = torch.zeros(4)
    torch.save(x, f"{folder}/x-file")
    torch.save([x, y], f"{folder}/x-files")
    torch.save({"x": x, "y": y}, f"{folder}/mydict")

    inputs = {"mlp": torch.randn(2, 20), "tied": torch.randn(3, 4), "ordered": torch.randn(4, 5)}
    torch.save(inputs, f"{folder}/inputs.pth")
    out = {}

    mlp = MLP(20)
    torch.save(mlp.state_dict(), f"{folder}/mlp.params")
    out["mlp"] = values(mlp(inputs["mlp"]))

    tied = tied_net()
    assert tied[2].weight is tied[4].weight
    torch.save(tied.state_dict(), f"{folder}/tied.params")
    out["tied"] = values(tied(inputs["tied"]))

    ordered = Ordered()
    ordered.train()
    with torch.no_grad():
        for _ in range(3):  # running_mean/var move away from 0/1 and num_batches_tracked becomes 3
            ordered(torch.randn(16, 5) * 2 + 1)
    ordered.eval()
    torch.save(ordered.state_dict(), f"{folder}/ordered.params")
    out["ordered"] = values(ordered(inputs["ordered"]))
    out["ordered_keys"] = list(ordered.state_dict().keys())

    torch.save(sequence_ids(), f"{folder}/sequence-ids.pth")
    for name, build in SEQUENCE_NETS.items():
        net = build().eval()
        torch.save(net.state_dict(), f"{folder}/{name}.params")
        with torch.no_grad():
            out[name] = values(net(sequence_ids()))
    print(json.dumps(out))


def check(name, results, body):
    try:
        results[name] = {"ok": True, "error": "", "out": body()}
    except Exception:  # one object's failure must not hide the others'
        results[name] = {"ok": False, "error": traceback.format_exc(), "out": []}


def expect_equal(actual, expected, what):
    if not (actual.dtype == expected.dtype and actual.shape == expected.shape and torch.equal(actual, expected)):
        raise AssertionError(f"{what}: expected {expected!r}, found {actual!r}")


def load_strict(module, path):
    state = torch.load(path)
    module.load_state_dict(state, strict=True)  # raises on any missing or unexpected key
    return state


def load(folder):
    results = {}
    x = torch.arange(4)
    y = torch.zeros(4)
    inputs = torch.load(f"{folder}/inputs.pth")

    # TensorIO writes a tensor as {"0": x} and a list as {"0": x, "1": y} (see TensorIO's remarks).
    def tensor():
        d = torch.load(f"{folder}/x-file")
        if list(d.keys()) != ["0"]:
            raise AssertionError(f"keys {list(d.keys())}")
        expect_equal(d["0"], x, "x-file")
        return []

    def tensor_list():
        d = torch.load(f"{folder}/x-files")
        if list(d.keys()) != ["0", "1"]:
            raise AssertionError(f"keys {list(d.keys())}")
        expect_equal(d["0"], x, "x-files[0]")
        expect_equal(d["1"], y, "x-files[1]")
        return []

    def tensor_dict():
        d = torch.load(f"{folder}/mydict")
        if list(d.keys()) != ["x", "y"]:
            raise AssertionError(f"keys {list(d.keys())}")
        expect_equal(d["x"], x, "mydict['x']")
        expect_equal(d["y"], y, "mydict['y']")
        return []

    def mlp(name, inputs_width):
        net = MLP(inputs_width)
        load_strict(net, f"{folder}/{name}.params")
        net.eval()
        with torch.no_grad():
            return values(net(inputs[name]))

    def tied():
        net = tied_net()
        state = load_strict(net, f"{folder}/tied.params")
        if net[2].weight is not net[4].weight or net[2].bias is not net[4].bias:
            raise AssertionError("the tie did not survive load_state_dict")
        expect_equal(net[4].weight.detach(), state["4.weight"], "4.weight")
        expect_equal(state["2.weight"], state["4.weight"], "2.weight vs 4.weight in the file")
        with torch.no_grad():
            return values(net(inputs["tied"]))

    check("tensor", results, tensor)
    check("list", results, tensor_list)
    check("dict", results, tensor_dict)
    check("mlp", results, lambda: mlp("mlp", 20))
    check("digits", results, lambda: mlp("digits", 784))
    check("tied", results, tied)

    def sequence(name):
        net = SEQUENCE_NETS[name]()
        load_strict(net, f"{folder}/{name}.params")
        net.eval()
        ids = torch.load(f"{folder}/sequence-ids.pth")["0"]
        expect_equal(ids, sequence_ids(), "sequence-ids")
        with torch.no_grad():
            return values(net(ids))

    for name in SEQUENCE_NETS:
        check(name, results, lambda name=name: sequence(name))
    print(json.dumps(results))


if __name__ == "__main__":
    torch.set_num_threads(1)
    {"save": save, "load": load}[sys.argv[1]](sys.argv[2])
