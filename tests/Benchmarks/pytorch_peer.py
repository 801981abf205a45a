# The PyTorch side of the benchmark's "PyTorch as the peer" section (tests/Benchmarks/PyTorchPeer.cs starts it).
# One long-lived process, driven line by line over stdin/stdout, so that interleaving with the C# variants costs no
# interpreter start. Usage: python3 pytorch_peer.py DATA_DIR ROWS FEATURES THREADS
#   DATA_DIR/x.f32: ROWS x FEATURES float32, row-major; DATA_DIR/y.i64: ROWS int64 labels (written by the C# side).
# Commands (one per line), each answered by one line:
#   run hand|loader BATCH EPOCHS [HIDDEN] -> "ok SECONDS" (a fresh 784-HIDDEN-10 MLP, default 256; SGD lr 0.1; timed)
#   sgemm REPS                   -> "ok SECONDS" (REPS 1024^3 float32 matmuls, timed)
#   quit
# Errors answer "error MESSAGE" and the process goes on.
import gc
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset
except Exception as e:  # noqa: BLE001 - any import failure means "no usable PyTorch here"
    print(f"error cannot import torch: {e}", flush=True)
    sys.exit(3)


def mlp(features, hidden=256):
    # nn.Linear's default init, as TorchSharp's nn.Linear (kaiming_uniform a=sqrt(5), uniform bias).
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 10))


def hand_loop(x, y, batch, epochs, g, hidden=256):
    # What a PyTorch user writes by hand: a new permutation each epoch, one index_select per batch.
    net = mlp(x.shape[1], hidden)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    n = x.shape[0]
    for _ in range(epochs):
        order = torch.randperm(n, generator=g)
        for s in range(0, n, batch):
            idx = order[s:s + batch]
            loss = F.cross_entropy(net(x.index_select(0, idx)), y.index_select(0, idx))
            opt.zero_grad()
            loss.backward()
            opt.step()


def loader_loop(x, y, batch, epochs, g, hidden=256):
    # The tutorial way: DataLoader(TensorDataset, shuffle=True), num_workers=0 (per-row __getitem__, then collate).
    net = mlp(x.shape[1], hidden)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True, generator=g)
    for _ in range(epochs):
        for xb, yb in loader:
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()


def loaded_blas():
    # Which BLAS the matmul above loaded (Debian's torch links the system libblas, chosen by update-alternatives).
    try:
        with open("/proc/self/maps") as f:
            names = {line.rsplit("/", 1)[-1].strip() for line in f if "blas" in line.lower() or "libmkl" in line}
        return "+".join(sorted(names)) or "built-in"
    except OSError:
        return "?"


def timed(fn):
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    data_dir, rows, features, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    with open(f"{data_dir}/x.f32", "rb") as f:
        x = torch.frombuffer(bytearray(f.read()), dtype=torch.float32).reshape(rows, features)
    with open(f"{data_dir}/y.i64", "rb") as f:
        y = torch.frombuffer(bytearray(f.read()), dtype=torch.int64)
    if y.shape[0] != rows:
        print(f"error expected {rows} labels, found {y.shape[0]}", flush=True)
        sys.exit(4)
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    blas = loaded_blas()
    print(f"ready torch={torch.__version__} threads={torch.get_num_threads()} blas={blas}", flush=True)
    loops = {"hand": hand_loop, "loader": loader_loop}
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        try:
            if parts[0] == "quit":
                break
            if parts[0] == "run":
                kind, batch, epochs = parts[1], int(parts[2]), int(parts[3])
                hidden = int(parts[4]) if len(parts) > 4 else 256
                loop = loops[kind]
                seconds = timed(lambda: loop(x, y, batch, epochs, g, hidden))
            elif parts[0] == "sgemm":
                reps = int(parts[1])

                def sgemm():
                    for _ in range(reps):
                        a @ b
                seconds = timed(sgemm)
            else:
                raise ValueError(f"unknown command {parts[0]!r}")
            print(f"ok {seconds!r}", flush=True)
        except Exception as e:  # noqa: BLE001 - report and keep serving
            print(f"error {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    main()
