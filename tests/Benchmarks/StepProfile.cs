using System.Diagnostics;
using MlNetGuide.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetGuide.Benchmarks;

/// <summary>
/// Where a small-batch training step goes (<c>--step-profile</c>): whole steps of the hand-written loop and of
/// <c>Trainer.Fit</c> (with the 784-256-10 MLP, and with a 784-1-10 one whose FLOPs are ~0, so what is left is per-step
/// overhead), PyTorch's the same way, and the pieces of a Trainer step timed alone: microseconds and TorchSharp tensor
/// wrappers created (each one a native call that returns a tensor) per call.
/// </summary>
internal static class StepProfile
{
    public static void Run(Tensor x, Tensor y, Action<string> log, bool wholeStepsOnly = false, int batch = 32)
    {
        long n = x.shape[0];
        int steps = (int)((n + batch - 1) / batch);
        log($"Step profile at batch {batch} ({steps} steps per epoch): median of 5 timed repetitions; tensors = TorchSharp tensor wrappers created per step");
        log("| what | µs per step | tensors per step |");
        log("| --- | ---: | ---: |");
        void Row(string what, (double us, double tensors) r) => log($"| {what} | {r.us:F1} | {r.tensors:F1} |");
        // A proposed cut: the code as it is and as proposed, alternating in 7 rounds; the saving is the median per-round difference.
        void Saving(string what, Action now, Action proposed)
        {
            for (int w = 0; w < 500; w++) { now(); proposed(); }
            var a = new List<double>();
            var b = new List<double>();
            for (int r = 0; r < 7; r++)
            {
                a.Add(PerOpOnce(now));
                b.Add(PerOpOnce(proposed));
            }
            log($"| {what}: as now {Harness.Median(a):F2}, proposed {Harness.Median(b):F2}; saving | {Harness.Median(a.Zip(b, (p, q) => p - q)):F2} | {Tensors(() => now()) - Tensors(() => proposed()):F0} fewer |");
        }

        // ------------------------------------------------------------------ whole steps (3 epochs per run, the two interleaved)
        const int epochs = 3;
        foreach (int hidden in new[] { 256, 1 })
        {
            void Hand() => HandEpochs(x, y, hidden, batch, epochs);
            void Fit()
            {
                using var model = new Classifier(Mlp(hidden), lr: 0.1);
                using var data = new TensorDataModule([x, y], batch, seed: 1);
                using var trainer = new Trainer(epochs);
                trainer.Fit(model, data);
            }
            var t = Harness.Interleaved(1, 7, ("hand", Hand), ("Fit", Fit));
            double perStep = 1e6 / (epochs * steps);
            Row($"hand-written loop, 784-{hidden}-10 (randperm per epoch, narrow + 2 index_select, forward, loss, zero_grad, backward, Sgd.step, scope)",
                (Harness.Median(t["hand"]) * perStep, Tensors(Hand) / (epochs * steps)));
            Row($"Trainer.Fit, 784-{hidden}-10 ({epochs} epochs, Fit's setup included; per-round ratio to the hand loop {Harness.PairedRatio(t, "Fit", "hand"):F3}, " +
                $"difference {Harness.Median(t["Fit"].Zip(t["hand"], (f, h) => (f - h) * perStep)):F1} µs)",
                (Harness.Median(t["Fit"]) * perStep, Tensors(Fit) / (epochs * steps)));
        }
        if (wholeStepsOnly) return;
        using (var peer = PyTorchPeer.TryStart(x, y, get_num_threads(), out var whyNot))
        {
            if (peer is null) log($"| PyTorch: skipped ({whyNot}) | | |");
            else
                foreach (int hidden in new[] { 256, 1 })
                    foreach (var kind in new[] { "hand", "loader" })
                    {
                        peer.Run(kind, batch, 1, hidden);
                        var t = Enumerable.Range(0, 5).Select(_ => peer.Run(kind, batch, 1, hidden) / steps * 1e6).ToList();
                        log($"| PyTorch {peer.TorchVersion} {(kind == "hand" ? "hand loop" : "DataLoader loop")}, 784-{hidden}-10 | {Harness.Median(t):F1} | |");
                    }
        }

        // ------------------------------------------------------------------ the pieces, 784-256-10
        using var net = Mlp(256);
        using var classifier = new Classifier(net, lr: 0.1);
        using var dm = new TensorDataModule([x, y], batch, seed: 1);
        using var tr = new Trainer(1);
        tr.PrepareData(dm);
        tr.PrepareModel(classifier); // Plot needs the trainer's batch counts
        using var opt = new Sgd(classifier.parameters(), 0.1);
        using var order = randperm(n);
        using var xb = x.narrow(0, 0, batch).contiguous();
        using var yb = y.narrow(0, 0, batch).contiguous();
        using var lossValue = tensor(2.3f);
        int i = 0;
        int Next() => i = (i + 1) % steps;
        Row("forward + cross_entropy + backward (a fixed batch, in a dispose scope)", PerOp(() =>
        {
            using var scope = NewDisposeScope();
            nn.functional.cross_entropy(classifier.call(xb), yb).backward();
        }));
        Row("hand gather: order.narrow + 2 index_select (in a scope)", PerOp(() =>
        {
            using var scope = NewDisposeScope();
            var idx = order.narrow(0, Next() * batch % (n - batch), batch);
            _ = x.index_select(0, idx);
            _ = y.index_select(0, idx);
        }));
        var loader = dm.TrainDataLoader();
        Row("TensorDataModule loader: order[Slice] + 2 index_select + Batch + PrepareBatch + Dispose (randperm amortized)", PerStep(steps, () =>
        {
            foreach (var raw in loader)
            {
                var b = tr.PrepareBatch(raw);
                if (!ReferenceEquals(b, raw)) b.Dispose();
                raw.Dispose();
            }
        }));
        Saving("cut 1, loader: order[TensorIndex.Slice(s, e)] -> order.narrow(0, s, len)",
            () => { int s = Next() * batch % (int)(n - batch); using var idx = order[TensorIndex.Slice(s, s + batch)]; },
            () => { using var idx = order.narrow(0, Next() * batch % (n - batch), batch); });
        Tensor[] pair = [xb, yb];
        var cpu = Devices.Cpu();
        Saving("cut 2, Batch checks (2 shape calls + dim per tensor -> 1 shape call) and PrepareBatch on the CPU (Devices.Of+Same -> device_type)",
            () => { OldBatchChecks(pair); _ = pair.All(t => Devices.Same(Devices.Of(t), cpu)); },
            () => { NewBatchChecks(pair); _ = pair.All(t => t.device_type == DeviceType.CPU); });
        Row("  new Batch(x, y) + Trainer.PrepareBatch as built here", PerOp(() => tr.PrepareBatch(new Batch(xb, yb))));
        Row("Plot(\"loss\", train) = Board.Draw + epoch sum (2 add_ on the device; item() once per plotted point)", PerOp(() => classifier.Plot("loss", lossValue, train: true)));
        using (var stepLosses = zeros(new long[] { steps }, dtype: ScalarType.Float64))
        {
            var slots = Enumerable.Range(0, steps).Select(k => stepLosses.select(0, k)).ToArray();
            Saving("cut 3, TrackFinite: shape[0] + indexer + copy_ -> a slot view made once per Fit + copy_ (both under no_grad)", () =>
            {
                int k = Next();
                if (k >= stepLosses.shape[0]) return;
                using var noGrad = no_grad();
                using var slot = stepLosses[k];
                slot.copy_(lossValue);
            }, () =>
            {
                int k = Next();
                if (k >= slots.Length) return;
                using var noGrad = no_grad();
                slots[k].copy_(lossValue);
            });
            foreach (var s in slots) s.Dispose();
        }
        Row("no_grad() enter + exit", PerOp(() => { using var g = no_grad(); }));
        Row("NewDisposeScope() + Dispose, empty", PerOp(() => { using var s = NewDisposeScope(); }));
        Row("NewDisposeScope() + Dispose of 20 tensors made in it (a step makes ~20)", PerOp(() =>
        {
            using var s = NewDisposeScope();
            for (int k = 0; k < 20; k++) _ = lossValue.alias();
        }));
        Row("20 × (alias + Dispose), no scope (to subtract)", PerOp(() => { for (int k = 0; k < 20; k++) lossValue.alias().Dispose(); }));
        using (var sc = NewDisposeScope()) nn.functional.cross_entropy(classifier.call(xb), yb).backward(); // gradients exist
        var parameters = classifier.parameters().ToList();
        Row("Sgd.step (ours: 4 Scalars made and freed per group, p.grad wrapper per parameter)", PerOp(() => opt.step()));
        using (var negLr = (-1e-9).ToScalar())
            Row("  for comparison: a bare SGD step (scope, no_grad, p.grad, add_ with one held Scalar)", PerOp(() =>
            {
                using var scope = NewDisposeScope();
                using var noGrad = no_grad();
                foreach (var p in parameters)
                    if (p.grad is { } g) p.add_(g, negLr);
            }));
        Row("  ToScalar + Dispose (one Scalar)", PerOp(() => { using var s = 0.1.ToScalar(); }));
        Row("zero_grad (ours: p.grad wrapper + zero_ per parameter)", PerOp(() => opt.zero_grad()));
        Row("  p.grad wrapper + Dispose, 4 parameters (no zero_)", PerOp(() => { foreach (var p in parameters) p.grad?.Dispose(); }));

        // ------------------------------------------------------------------ the same, 784-1-10 (FLOPs ~0: what is left is overhead)
        using var tinyNet = Mlp(1);
        using var tiny = new Classifier(tinyNet, lr: 0.1);
        using var tinyOpt = new Sgd(tiny.parameters(), 1e-9);
        using (var sc = NewDisposeScope()) nn.functional.cross_entropy(tiny.call(xb), yb).backward();
        Row("784-1-10: Sgd.step", PerOp(() => tinyOpt.step()));
        Row("784-1-10: zero_grad", PerOp(() => tinyOpt.zero_grad()));
        Row("784-1-10: forward through Classifier.call (TrainableModule.forward -> net.call), in a scope", PerOp(() => { using var sc = NewDisposeScope(); _ = tiny.call(xb); }));
        Row("784-1-10: forward through net.call, in a scope", PerOp(() => { using var sc = NewDisposeScope(); _ = tinyNet.call(xb); }));
        Row("784-1-10: forward + cross_entropy + backward (a fixed batch, in a scope)", PerOp(() =>
        {
            using var sc = NewDisposeScope();
            nn.functional.cross_entropy(tinyNet.call(xb), yb).backward();
        }));
        using var oneX = x.narrow(0, 0, batch);
        using var oneY = y.narrow(0, 0, batch);
        Row("Trainer.Fit's per-Fit cost: Fit of one batch, 784-1-10 (new Classifier, TensorDataModule, Trainer; one step; History)", PerOp(() =>
        {
            using var model = new Classifier(Mlp(1), lr: 0.1);
            using var data = new TensorDataModule([oneX, oneY], batch, seed: 1);
            using var trainer = new Trainer(1);
            trainer.Fit(model, data);
        }, calls: 200));
    }

    // Batch's constructor checks as they are (OldBatchChecks) and as cut 2 proposes (NewBatchChecks).
    private static void OldBatchChecks(Tensor[] tensors)
    {
        long n = tensors[0].shape.Length > 0 ? tensors[0].shape[0] : throw new ArgumentException("no rows");
        foreach (var t in tensors)
            if (t.dim() == 0 || t.shape[0] != n) throw new ArgumentException("rows");
    }

    private static void NewBatchChecks(Tensor[] tensors)
    {
        var first = tensors[0].shape;
        long n = first.Length > 0 ? first[0] : throw new ArgumentException("no rows");
        for (int i = 1; i < tensors.Length; i++)
        {
            var shape = tensors[i].shape;
            if (shape.Length == 0 || shape[0] != n) throw new ArgumentException("rows");
        }
    }

    private static nn.Module<Tensor, Tensor> Mlp(long hidden) => nn.Sequential(nn.Linear(784, hidden), nn.ReLU(inplace: true), nn.Linear(hidden, 10));

    /// <summary>The hand-written loop the benchmark compares everything with: randperm, then per batch index_select, forward, loss, zero_grad, backward, step.</summary>
    internal static void HandEpochs(Tensor x, Tensor y, int hidden, int batch, int epochs)
    {
        long n = x.shape[0];
        using var net = Mlp(hidden);
        using var opt = new Sgd(net.parameters(), 0.1);
        using var g = new Generator(1);
        for (int e = 0; e < epochs; e++)
        {
            using var order = randperm(n, generator: g);
            for (long s = 0; s < n; s += batch)
            {
                using var scope = NewDisposeScope();
                var idx = order.narrow(0, s, Math.Min(batch, n - s));
                var loss = nn.functional.cross_entropy(net.call(x.index_select(0, idx)), y.index_select(0, idx));
                opt.zero_grad();
                loss.backward();
                opt.step();
            }
        }
    }

    private static double Tensors(Action run)
    {
        long c0 = Created();
        run();
        return Created() - c0;
    }

    private static double PerOpOnce(Action op, int calls = 2000)
    {
        var sw = Stopwatch.StartNew();
        for (int k = 0; k < calls; k++) op();
        return sw.Elapsed.TotalSeconds / calls * 1e6;
    }

    private static long Created()
    {
        var s = DisposeScopeManager.Statistics.TensorStatistics;
        return s.CreatedInScopeCount + s.CreatedOutsideScopeCount;
    }

    /// <summary>µs and tensors per step of <paramref name="epoch"/>, which runs <paramref name="steps"/> steps.</summary>
    private static (double us, double tensors) PerStep(int steps, Action epoch)
    {
        epoch();
        epoch();
        var times = new List<double>();
        double tensors = 0;
        for (int r = 0; r < 5; r++)
        {
            long c0 = Created();
            times.Add(Harness.Time(epoch) / steps * 1e6);
            tensors = (double)(Created() - c0) / steps;
        }
        return (Harness.Median(times), tensors);
    }

    /// <summary>µs and tensors per call of <paramref name="op"/> (2,000 calls per repetition).</summary>
    private static (double us, double tensors) PerOp(Action op, int calls = 2000)
    {
        for (int w = 0; w < 500; w++) op();
        var times = new List<double>();
        double tensors = 0;
        for (int r = 0; r < 5; r++)
        {
            long c0 = Created();
            var sw = Stopwatch.StartNew();
            for (int k = 0; k < calls; k++) op();
            times.Add(sw.Elapsed.TotalSeconds / calls * 1e6);
            tensors = (double)(Created() - c0) / calls;
        }
        return (Harness.Median(times), tensors);
    }
}
