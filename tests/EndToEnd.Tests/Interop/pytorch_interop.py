"""Real PyTorch on the other side of MlNetGuide's 6.6 file I/O (run by PyTorchInteropTests.cs).

  pytorch_interop.py save DIR   torch.save the chapter's objects into DIR; print {name: forward outputs} as JSON
  pytorch_interop.py load DIR   torch.load what C# wrote into DIR, check it, load state dicts with strict=True;
                                print {name: {"ok": bool, "error": str, "out": [...]}} as JSON

Outputs are float32 values printed exactly (json writes a float's repr), so C# can compare them within float32 assert_close bounds (atol 1e-5, rtol 1.3e-6).
Every module here mirrors one in PyTorchInteropTests.cs, parameter name for parameter name.
"""
import json
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
    print(json.dumps(results))


if __name__ == "__main__":
    torch.set_num_threads(1)
    {"save": save, "load": load}[sys.argv[1]](sys.argv[2])
