"""Time one training epoch of the course's ``lab`` network: each twin against torch.

    python bench/train.py                   # 28x28x1 (the bundled data) and 64x64x3
    python bench/train.py --sizes 64 --repeats 5 --threads 1

Every candidate trains the same network from the same initial weights on the same batches
(batch 32, Adam 1e-3, the bundled silhouettes' training split, no augmentation), with the
same thread count: cnnlab on the "cython" and "numpy" twins (cnnlab's own layers and
backward), and the equal ``torch.nn.Sequential`` with autograd and ``torch.optim.Adam``.
Times are the median of interleaved epochs after a warm-up epoch. Peak memory is measured in
a fresh process per candidate: the peak resident set (VmHWM) during one epoch minus the
resident set just before it (model and data loaded, no batch run yet). Writes JSON
(default ``bench/results/train.json``) and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as H  # noqa: E402

H.setup_env()  # before any OpenMP runtime loads (see _harness)

import numpy as np  # noqa: E402

import cnnlab  # noqa: E402
from cnnlab import data, models, optim  # noqa: E402
from cnnlab.layers import CrossEntropyLoss  # noqa: E402

BATCH = 32


def dataset(size: int):
    channels = 1 if size == 28 else 3
    ds = data.load_dataset(None, size, channels, seed=0)
    return ds.x_train, ds.y_train.astype(np.int64), channels


def batches(n: int, seed: int = 0):
    perm = np.random.default_rng(seed).permutation(n)
    return [perm[i:i + BATCH] for i in range(0, n, BATCH)]


def torch_lab(model):
    """The torch twin of a cnnlab ``lab`` model, with its weights."""
    import torch
    nn = torch.nn
    mods = []
    for layer in model.layers:
        name = type(layer).__name__
        if name == "Conv2d":
            c_out, c_in, k, _ = layer.weight.data.shape
            mods.append(nn.Conv2d(c_in, c_out, k, padding=layer.padding))
        elif name == "Linear":
            out_f, in_f = layer.weight.data.shape
            mods.append(nn.Linear(in_f, out_f))
        elif name == "MaxPool2d":
            mods.append(nn.MaxPool2d(2, 2))
        else:
            mods.append(getattr(nn, name)())
    net = nn.Sequential(*mods)
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in
                         model.state_dict().items()})
    return net


class CnnlabRun:
    def __init__(self, backend, size):
        self.backend = backend
        self.x, self.y, channels = dataset(size)
        self.model = models.build("lab", channels, size, 2, rng=0)
        self.opt = optim.Adam(self.model.parameters(), lr=1e-3)
        self.loss = CrossEntropyLoss()

    def epoch(self, limit=None):
        with cnnlab.use_backend(self.backend):
            for idx in batches(len(self.y))[:limit]:
                self.opt.zero_grad()
                logits = self.model.forward(data.normalize(self.x[idx]))
                self.loss.forward(logits, self.y[idx])
                self.model.backward(self.loss.backward())
                self.opt.step()


class TorchRun:
    def __init__(self, size):
        import torch
        self.torch = torch
        self.x, self.y, channels = dataset(size)
        self.net = torch_lab(models.build("lab", channels, size, 2, rng=0))
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.loss = torch.nn.CrossEntropyLoss()

    def epoch(self, limit=None):
        t = self.torch
        for idx in batches(len(self.y))[:limit]:
            self.opt.zero_grad()
            xb = t.from_numpy(data.normalize(self.x[idx]))
            loss = self.loss(self.net(xb), t.from_numpy(self.y[idx]))
            loss.backward()
            self.opt.step()


def make(name, size):
    return TorchRun(size) if name == "torch" else CnnlabRun(name, size)


def candidates():
    names = [b for b in ("cython", "numpy") if b in cnnlab.backends()]
    try:
        import torch  # noqa: F401
        names.append("torch")
    except ImportError:
        pass
    return names


def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def memory_worker(name, size, threads):
    """One epoch in this (fresh) process; prints the peak memory it added, in bytes.

    The baseline is taken with the model and the data loaded but before the first batch,
    so memory that an allocator keeps after a batch counts for every library alike."""
    H.set_threads(threads)
    run = make(name, size)
    before = _status("VmRSS")
    run.epoch()
    print(json.dumps({"peak_bytes": _status("VmHWM") - before}))


def peak_memory(name, size, threads):
    out = subprocess.run([sys.executable, __file__, "--memory-worker", name, "--sizes",
                          str(size), "--threads", str(threads)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=cnnlab.get_num_threads())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", default="28,64")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--memory-only", action="store_true", help="skip the epoch timings")
    ap.add_argument("--memory-worker", help=argparse.SUPPRESS)
    ap.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results",
                                                   "train.json"))
    args = ap.parse_args(argv)
    if args.memory_worker:
        return memory_worker(args.memory_worker, int(args.sizes), args.threads)
    H.set_threads(args.threads)
    info = H.machine()
    info["threads"] = args.threads
    print(f"machine: {info['cpu']}, {info['usable_cpus']} usable CPUs; threads for everyone: "
          f"{args.threads}; OMP_WAIT_POLICY={info['omp_wait_policy']}; torch {info.get('torch')}")
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        names = candidates()
        runs = {n: make(n, size) for n in names}
        n_train = len(next(iter(runs.values())).y)
        t0 = time.perf_counter()
        times = {n: None for n in names} if args.memory_only else \
            H.interleaved({n: r.epoch for n, r in runs.items()}, repeats=args.repeats,
                          warmup=1, budget_s=600)
        print(f"  {size}x{size}: timed in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        mem = {} if args.no_memory else {n: peak_memory(n, size, args.threads) for n in names}
        for n in names:
            rows.append({"size": size, "images": n_train, "candidate": n, "epoch_s": times[n],
                         "peak_mb": mem[n] / 2**20 if n in mem else None})
    print()
    print("| input | train images | candidate | epoch s | vs torch | peak MB | vs torch |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        ref = next((q for q in rows if q["size"] == r["size"] and q["candidate"] == "torch"),
                   None)
        size = f"{r['size']}x{r['size']}x{1 if r['size'] == 28 else 3}"
        peak = "—" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
        epoch = "—" if r["epoch_s"] is None else f"{r['epoch_s']:.2f}"
        print(f"| {size} | {r['images']} | {r['candidate']} | {epoch} | "
              f"{H.fmt_ratio(r['epoch_s'], ref and ref['epoch_s'])} | {peak} | "
              f"{H.fmt_ratio(r['peak_mb'], ref and ref['peak_mb'])} |")
    H.write_json(args.json, {"machine": info, "rows": rows})
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
