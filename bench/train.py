"""Time one training epoch of the course's ``lab`` network, as a user's own loop runs it.

    python bench/train.py                       # 28x28x1 and 64x64x3, cython/numpy/torch
    python bench/train.py --sizes 64 --candidates cython,torch,functional --env-variants

Run it with the machine's OpenBLAS overrides unset (HELPERS.md):
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/train.py``.

Every candidate trains the lab network (3 x [conv 3x3 padding 1, ReLU, max-pool 2], Linear
128, ReLU, Linear 2) on the bundled silhouettes' training split (1,592 images, batch 32,
Adam 1e-3, the same batches for all, no augmentation), alone in its own fresh processes,
alternated, in the environment the script was started from (no OMP or BLAS variable added):

    cython, numpy   cnnlab's public training API on that backend: ``cnnlab.nn`` modules with
                    autograd and ``cnnlab.optim.Adam`` (torch's code with ``import cnnlab as
                    torch``) where cnnlab has them, else ``cnnlab.layers`` + ``cnnlab.optim``
    torch           the same network in ``torch.nn``, autograd, ``torch.optim.Adam``
    functional      a hand-written loop over ``cnnlab.functional`` (compiled twin): conv2d,
                    relu, max_pool2d, linear and their backwards, Adam in NumPy
    cython PASSIVE, cython BLAS=1  (``--env-variants``) cython with OMP_WAIT_POLICY=PASSIVE /
                    OPENBLAS_NUM_THREADS=1: the settings a thread fight would need; a library
                    must be as fast without them

Threads: the machine's default (all usable CPUs) for everyone, or ``--threads N`` given to
cnnlab and torch. A process builds the model and data, runs one warm-up epoch (its peak
memory is reported: VmHWM minus the resident set just before it), then ``--epochs`` timed
epochs; the figure is the median over ``--rounds`` processes of each process's median epoch.
Writes JSON and Markdown (default ``bench/results/train.json`` and ``train.md``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as H  # noqa: E402

SCRIPT = os.path.abspath(__file__)
BATCH = 32
ENV_VARIANTS = {"cython PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
                "cython BLAS=1": {"OPENBLAS_NUM_THREADS": "1"}}


# --------------------------------------------------------------------------- worker side


def batches(n: int, seed: int = 0):
    import numpy as np
    perm = np.random.default_rng(seed).permutation(n)
    return [perm[i:i + BATCH] for i in range(0, n, BATCH)]


def _rss(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def torchlike_epoch(lib, model, opt, loss_fn, x, y, to_tensor):
    """One epoch of the standard loop; ``lib`` is torch, or cnnlab used as torch."""
    for idx in batches(len(y)):
        xb = to_tensor(x[idx].astype("float32") / 255.0)
        yb = to_tensor(y[idx])
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()


def torch_run(x, y, channels, size):
    import torch
    torch.manual_seed(0)
    nn = torch.nn
    layers, c_in, s = [], channels, size
    for c_out in (16, 32, 64):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2)]
        c_in, s = c_out, s // 2
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(64 * s * s, 128), nn.ReLU(),
                          nn.Linear(128, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    return lambda: torchlike_epoch(torch, model, opt, loss_fn, x, y, torch.from_numpy)


def cnnlab_run(backend, x, y, channels, size):
    """cnnlab's public training API on ``backend``: cnnlab.nn when it exists, else layers."""
    import cnnlab
    cnnlab.set_backend(backend)
    if hasattr(cnnlab, "nn"):
        model = cnnlab.models.lab(channels, size, 2, generator=0)
        opt = cnnlab.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = cnnlab.nn.CrossEntropyLoss()
        return lambda: torchlike_epoch(cnnlab, model, opt, loss_fn, x, y, cnnlab.from_numpy)
    from cnnlab import models, optim
    from cnnlab.layers import CrossEntropyLoss
    model = models.build("lab", channels, size, 2, rng=0)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    loss = CrossEntropyLoss()

    def epoch():
        for idx in batches(len(y)):
            opt.zero_grad()
            logits = model.forward(x[idx].astype("float32") / 255.0)
            loss.forward(logits, y[idx])
            model.backward(loss.backward())
            opt.step()
    return epoch


def functional_run(x, y, channels, size):
    """A hand-written loop over cnnlab.functional (NumPy arrays: conv2d, relu, max_pool2d,
    linear and their backwards, no input gradient for the first layer), Adam in NumPy."""
    import numpy as np
    import cnnlab.functional as F
    rng = np.random.default_rng(0)
    shapes, c_in, s = [], channels, size
    for c_out in (16, 32, 64):
        shapes += [(c_out, c_in, 3, 3), (c_out,)]
        c_in, s = c_out, s // 2
    shapes += [(128, 64 * s * s), (128,), (2, 128), (2,)]
    params = [(rng.standard_normal(sh) * (1 / np.sqrt(np.prod(sh[1:])) if len(sh) > 1
                                         else 0.01)).astype(np.float32) for sh in shapes]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    tmp = [np.empty_like(p) for p in params]
    step = [0]

    def forward_backward(xb, yb):
        acts, a = [], xb
        for i in range(3):
            w, b = params[2 * i], params[2 * i + 1]
            r = F.relu(F.conv2d(a, w, b, padding=1))
            p, idx = F.max_pool2d(r, 2, 2, return_indices=True)
            acts.append((a, r, idx))
            a = p
        f = a.reshape(len(xb), -1)
        h = F.linear(f, params[6], params[7])
        hr = F.relu(h)
        logits = F.linear(hr, params[8], params[9])
        e = np.exp(logits - logits.max(1, keepdims=True))
        g = e / e.sum(1, keepdims=True)
        g[np.arange(len(yb)), yb] -= 1
        g /= len(yb)
        grads = [None] * len(params)
        ghr, grads[8], grads[9] = F.linear_backward(g, hr, params[8])
        gf, grads[6], grads[7] = F.linear_backward(F.relu_backward(ghr, hr), f, params[6])
        ga = gf.reshape(a.shape)
        for i in (2, 1, 0):
            a_in, r, idx = acts[i]
            gr = F.relu_backward(F.max_pool2d_backward(ga, r, 2, 2, indices=idx), r)
            ga, grads[2 * i], grads[2 * i + 1] = F.conv2d_backward(
                gr, a_in, params[2 * i], padding=1, output_mask=(i > 0, True, True))
        return grads

    def adam(grads, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        step[0] += 1
        c1, c2 = 1 - b1 ** step[0], 1 - b2 ** step[0]
        for p, g, mi, vi, t in zip(params, grads, m, v, tmp):   # in place: no temporaries
            mi *= b1
            np.multiply(g, 1 - b1, out=t)
            mi += t
            vi *= b2
            np.multiply(g, g, out=t)
            t *= 1 - b2
            vi += t
            np.divide(vi, c2, out=t)
            np.sqrt(t, out=t)
            t += eps
            np.divide(mi, t, out=t)
            t *= lr / c1
            p -= t

    def epoch():
        for idx in batches(len(y)):
            adam(forward_backward(x[idx].astype(np.float32) / 255.0, y[idx]))
    return epoch


def worker(args):
    """Build one candidate, warm up (peak memory), time epochs; print JSON."""
    import numpy as np
    with np.load(args.data, allow_pickle=False) as d:
        x, y = d["x"], d["y"].astype(np.int64)
    channels, size = x.shape[1], x.shape[2]
    name = args.worker
    torch = None
    if name == "torch":
        import torch
        epoch = torch_run(x, y, channels, size)
    elif name == "functional":
        import cnnlab
        cnnlab.set_backend("cython")
        epoch = functional_run(x, y, channels, size)
    else:
        epoch = cnnlab_run(name.split()[0], x, y, channels, size)
    if args.threads:
        if torch is not None:
            torch.set_num_threads(args.threads)
        else:
            import cnnlab
            cnnlab.set_num_threads(args.threads)
    before = _rss("VmRSS")
    epoch()                                      # warm-up, and the memory it adds
    peak = _rss("VmHWM") - before
    times = H.time_calls(epoch, args.epochs, warmup=0, budget_s=120)
    print(json.dumps({"times": {"epoch": times}, "peak_bytes": peak,
                      "blas": H.blas_info()}))


# --------------------------------------------------------------------------- parent side


def dataset_file(size: int, folder: str) -> str:
    """The bundled training split at ``size`` (1 channel at 28, else 3) in an .npz."""
    import numpy as np
    from cnnlab import data
    channels = 1 if size == 28 else 3
    ds = data.load_dataset(None, size, channels, seed=0)
    path = os.path.join(folder, f"train{size}.npz")
    np.savez(path, x=ds.x_train, y=ds.y_train)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=0,
                    help="threads for cnnlab and torch (default: theirs, all usable CPUs)")
    ap.add_argument("--rounds", type=int, default=3, help="processes per candidate")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per process")
    ap.add_argument("--sizes", default="28,64")
    ap.add_argument("--candidates", default="cython,numpy,torch",
                    help="comma-separated: cython, numpy, torch, functional")
    ap.add_argument("--env-variants", action="store_true",
                    help="also cython with OMP_WAIT_POLICY=PASSIVE / OPENBLAS_NUM_THREADS=1")
    ap.add_argument("--variant", action="append", default=[], metavar="VAR=VALUE",
                    help="also cython with this environment variable (repeatable)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(SCRIPT), "results",
                                                  "train"), help="writes OUT.json, OUT.md")
    ap.add_argument("--boost", action="store_true",
                    help="raise this run's scheduling weight on a shared machine (root; see "
                         "_harness.boost)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)
    boosted = H.boost() if args.boost else "not boosted"
    warn = H.warn_overrides()
    if warn:
        log(warn)
    import cnnlab
    info = H.machine()
    api = "cnnlab.nn + cnnlab.optim" if hasattr(cnnlab, "nn") else \
        "cnnlab.layers + cnnlab.optim (cnnlab.nn not in this tree)"
    names = args.candidates.split(",")
    load0, t0 = H.load(), time.perf_counter()
    rows, blas = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            path = dataset_file(size, tmp)
            common = ["--data", path, "--epochs", str(args.epochs), "--threads",
                      str(args.threads)]
            cands = {n: (["--worker", n] + common, None) for n in names}
            variants = dict(ENV_VARIANTS) if args.env_variants else {}
            for v in args.variant:
                variants[f"cython {v}"] = dict([v.split("=", 1)])
            for n, extra in variants.items():
                cands[n] = (["--worker", n] + common, dict(os.environ, **extra))
            log(f"{size}x{size}:")
            res = H.in_processes(SCRIPT, cands, rounds=args.rounds, log=log,
                                 keep=("peak_bytes",))
            for n, r in res.items():
                blas[n] = r["blas"]
                rows.append({"size": size, "candidate": n,
                             "epoch_s": r["times"]["epoch"]["median"],
                             "process_medians": r["times"]["epoch"]["process_medians"],
                             "peak_mb": min(r["peak_bytes"]) / 2 ** 20})
    load1 = H.load()
    threads = args.threads or info["usable_cpus"]
    header = [
        f"machine: {info['cpu']} ({info['simd']}), {info['usable_cpus']} usable CPUs",
        f"threads: {threads} for cnnlab and torch"
        + (" (given)" if args.threads else " (their defaults)") + "; BLAS untouched; "
        f"method: each candidate in its own processes, alternated, median of {args.rounds} "
        f"processes x {args.epochs} epochs after a warm-up epoch; load average "
        f"{load0:.2f} before, {load1:.2f} after; {time.perf_counter() - t0:.0f} s",
        "environment: " + ", ".join(f"{k}={v}" for k, v in info["env"].items())
        + f"; scheduling: {boosted}",
        f"cnnlab API: {api}",
    ] + [f"BLAS in the {c} process: {H.blas_line(b)}" for c, b in blas.items()] + [
        f"torch {info.get('torch')}, numpy {info['numpy']}, python {info['python']}"]
    lines = ["| input | candidate | epoch s | vs torch | peak MB | vs torch |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ref = next((q for q in rows if q["size"] == r["size"] and q["candidate"] == "torch"),
                   None)
        shape = f"{r['size']}x{r['size']}x{1 if r['size'] == 28 else 3}"
        lines.append(f"| {shape} | {r['candidate']} | {r['epoch_s']:.2f} | "
                     f"{H.fmt_ratio(r['epoch_s'], ref and ref['epoch_s'])} | "
                     f"{r['peak_mb']:.0f} | {H.fmt_ratio(r['peak_mb'], ref and ref['peak_mb'])} |")
    text = "\n".join(header) + "\n\n" + "\n".join(lines) + "\n"
    print(text)
    H.write_json(args.out + ".json", {"machine": info, "threads": threads, "api": api,
                                      "load": [load0, load1],
                                      "scheduling": boosted, "blas": blas, "rows": rows})
    with open(args.out + ".md", "w") as f:
        f.write(text)
    log(f"wrote {args.out}.json and {args.out}.md")


if __name__ == "__main__":
    main()
