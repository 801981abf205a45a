# The PyTorch side of the benchmark's text figures (tests/Benchmarks/TextPeer.cs starts it once per round).
# Usage: python3 text_peer.py INTEROP_DIR DATA_DIR ARCH VOCABULARY THREADS
#   INTEROP_DIR: tests/EndToEnd.Tests/Interop, whose pytorch_interop.py holds the mirrors of our sequence modules
#   DATA_DIR/ids.i64: the batches' token ids, int64, one batch after another; DATA_DIR/shapes.txt: "ROWS TIME" per batch;
#   DATA_DIR/labels.i64: every row's label, in batch order.
# Trains one epoch over the batches (Adam, lr 1e-3, cross-entropy) and prints "ok SECONDS" (the epoch alone, timed).
import importlib.util
import sys
import time

import torch
import torch.nn.functional as F

interop_dir, data_dir, arch, vocabulary, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
spec = importlib.util.spec_from_file_location("pytorch_interop", f"{interop_dir}/pytorch_interop.py")
mirrors = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mirrors)

shapes = [tuple(int(v) for v in line.split()) for line in open(f"{data_dir}/shapes.txt")]
ids = torch.from_file(f"{data_dir}/ids.i64", dtype=torch.int64, size=sum(r * t for r, t in shapes))
labels = torch.from_file(f"{data_dir}/labels.i64", dtype=torch.int64, size=sum(r for r, _ in shapes))
batches, at, row = [], 0, 0
for r, t in shapes:
    batches.append((ids[at:at + r * t].reshape(r, t), labels[row:row + r]))
    at, row = at + r * t, row + r

torch.manual_seed(1)
net = {
    "bilstm": lambda: mirrors.BiRnn(vocabulary, 2, "lstm", 64, 64, 1),
    "transformer": lambda: mirrors.TransformerText(vocabulary, 2, 64, 4, 128, 1, 0.1),
}[arch]()
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
net.train()
start = time.perf_counter()
for x, y in batches:
    loss = F.cross_entropy(net(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
print(f"ok {time.perf_counter() - start:.6f}", flush=True)
