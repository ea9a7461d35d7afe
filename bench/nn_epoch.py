"""A training epoch of the lab network through ``cnnlab.nn`` (autograd) against the layers it
replaced (``cnnlab.layers`` with hand-written backward passes, as of ``--old-ref``), per
twin; the autograd's bookkeeping share of an epoch; and ``python -m cnnlab.train`` before
and after.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/nn_epoch.py
    python bench/nn_epoch.py --sizes 28 --twins cython --repeats 5 --no-train-command

Method. Every (input size, twin, candidate) runs alone in a fresh process: one warm-up
epoch, then the median of ``--repeats`` epochs (batch 32, Adam 1e-3, the bundled training
split, no augmentation; the same batches for both candidates). Candidates:

    nn      this tree's cnnlab: model(x), CrossEntropyLoss, loss.backward(), optimizer.step()
    nn-glibc-default  the same with ``CNNLAB_MALLOC_TUNING=0``: glibc's own malloc
            thresholds (see src/cnnlab/_malloc.py), to show what that setting is worth
    layers  the tree at --old-ref (``git archive``, its Python files only; its kernels are
            this tree's compiled ``_core``, copied in): model.forward(x), loss.forward,
            model.backward(loss.backward()), optimizer.step()

Twins: "cython" and "numpy" (NumPy arrays, device "cpu"), "torch" (torch tensors on the
CPU: cnnlab's "torch:cpu", the old layers' ``model.to("cpu")``). Threads: ``--threads``
for cnnlab's OpenMP, torch and BLAS alike (BLAS one thread except on the numpy twin, as
``python -m cnnlab.train`` does). Rounds (``--rounds``) alternate the candidates' processes,
and the table gives the median over rounds.

Each worker also records the CPU time of its epochs (all threads: ``time.process_time``),
which a busy machine disturbs less than wall time; the table gives both, and the load
average before and after the run.

Bookkeeping share (``nn`` only, a separate instrumented epoch): every autograd Function's
forward and backward, the optimizer's step and the batch preparation are timed; what is
left of the epoch is the autograd's and the modules' bookkeeping (recording nodes, the walk
back, wrapping arrays in Tensors, Module.__call__, zero_grad, loss.item()).

``--train-command`` (on by default) runs ``python -m cnnlab.train --no-progress`` (the
default recipe, 25 epochs) once with the old tree and once with this one and records the
wall time and the test accuracy each prints.

Writes ``bench/results/nn_epoch.json`` and prints Markdown tables.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _harness as H  # noqa: E402

BATCH = 32
OLD_REF = "3aaeabd"  # the last commit with cnnlab.layers


# --------------------------------------------------------------------------- the worker


def _limit_threads(n: int, twin: str) -> None:
    import cnnlab
    cnnlab.set_num_threads(n)
    try:
        import torch
        torch.set_num_threads(n)
    except ImportError:
        pass
    from threadpoolctl import threadpool_limits
    threadpool_limits(n if twin == "numpy" else 1)


def _data(size: int):
    import numpy as np
    from cnnlab import data
    channels = 1 if size == 28 else 3
    ds = data.load_dataset(None, size, channels, np.random.default_rng(0))
    perm = np.random.default_rng(0).permutation(len(ds.y_train))
    batches = [perm[i:i + BATCH] for i in range(0, len(perm), BATCH)]
    return ds.x_train, ds.y_train.astype(np.int64), channels, batches


class NewRun:
    """One epoch with this tree's cnnlab.nn, as PyTorch code is written."""

    def __init__(self, twin, size):
        import cnnlab
        from cnnlab import models, nn, optim
        self.cnnlab = cnnlab
        self.x, self.y, channels, self.batches = _data(size)
        self.device = "torch:cpu" if twin == "torch" else "cpu"
        self.backend = "torch" if twin == "torch" else twin
        self.model = models.build("lab", channels, size, 2, generator=0).to(self.device)
        self.opt = optim.Adam(self.model.parameters(), lr=1e-3)
        self.loss = nn.CrossEntropyLoss()
        self.prep = 0.0

    def batch(self, idx):
        from cnnlab import _array as A, data
        t0 = time.perf_counter()
        where = None if self.device == "cpu" else "cpu"
        x = self.cnnlab.as_tensor(A.convert(data.normalize(self.x[idx]), where))
        y = self.cnnlab.as_tensor(A.convert(self.y[idx], where))
        self.prep += time.perf_counter() - t0
        return x, y

    def epoch(self):
        with self.cnnlab.use_backend(self.backend if self.backend != "torch" else "numpy"):
            for idx in self.batches:
                x, y = self.batch(idx)
                self.opt.zero_grad()
                loss = self.loss(self.model(x), y)
                loss.item()
                loss.backward()
                self.opt.step()


class OldRun:
    """One epoch with the old layers (imported from the --old-ref tree)."""

    def __init__(self, twin, size):
        import numpy as np
        import cnnlab
        from cnnlab import models, optim
        from cnnlab.layers import CrossEntropyLoss
        self.cnnlab = cnnlab
        self.x, self.y, channels, self.batches = _data(size)
        self.torch = twin == "torch"
        self.backend = "numpy" if self.torch else twin
        self.model = models.build("lab", channels, size, 2, rng=0)
        if self.torch:
            self.model.to("cpu")
        self.opt = optim.Adam(self.model.parameters(), lr=1e-3)
        self.loss = CrossEntropyLoss()
        self.np = np

    def epoch(self):
        from cnnlab import _array as A, data
        with self.cnnlab.use_backend(self.backend):
            for idx in self.batches:
                x, y = data.normalize(self.x[idx]), self.y[idx]
                if self.torch:
                    x, y = A.convert(x, "cpu"), A.convert(y, "cpu")
                self.opt.zero_grad()
                logits = self.model.forward(x)
                float(self.loss.forward(logits, y))
                self.model.backward(self.loss.backward())
                self.opt.step()


def _instrument(run) -> dict:
    """Time every Function's forward/backward and the optimizer step (in place)."""
    from cnnlab import _ops
    from cnnlab._ops import loss, nn, pointwise, reduce, shape
    from cnnlab.autograd import Function
    spent = {"math": 0.0, "optimizer": 0.0}

    def timed(fn, key):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - t0
        return staticmethod(wrapper)

    for module in (loss, nn, pointwise, reduce, shape):
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Function) and obj is not Function:
                for name in ("forward", "backward"):
                    if name in vars(obj):
                        raw = vars(obj)[name]
                        raw = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) \
                            else raw
                        if isinstance(vars(obj)[name], classmethod):
                            continue  # _Extremum's classmethods call pick(); leave them
                        setattr(obj, name, timed(raw, "math"))
    step = run.opt.step

    def opt_step(*a, **k):
        t0 = time.perf_counter()
        try:
            return step(*a, **k)
        finally:
            spent["optimizer"] += time.perf_counter() - t0
    run.opt.step = opt_step
    del _ops
    return spent


def worker(candidate, twin, size, threads, repeats) -> dict:
    _limit_threads(threads, twin)
    run = (NewRun if candidate == "nn" else OldRun)(twin, size)
    run.epoch()  # warm-up
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        run.epoch()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    out = {"epoch_s": statistics.median(times), "epochs_s": times,
           "cpu_s": statistics.median(cpu), "load": os.getloadavg()[0]}
    if candidate == "nn":
        spent = _instrument(run)
        run.prep = 0.0
        t0 = time.perf_counter()
        run.epoch()
        total = time.perf_counter() - t0
        rest = total - spent["math"] - spent["optimizer"] - run.prep
        out.update(instrumented_epoch_s=total, math_s=spent["math"],
                   optimizer_s=spent["optimizer"], batch_prep_s=run.prep,
                   bookkeeping_s=rest, bookkeeping_share=rest / total)
    return out


# --------------------------------------------------------------------------- the driver


def old_tree(ref: str) -> str:
    """The src/ folder of ``ref``'s Python files with this install's compiled _core."""
    import cnnlab
    root = tempfile.mkdtemp(prefix="cnnlab-old-")
    archive = subprocess.run(["git", "-C", os.path.dirname(HERE), "archive", ref, "src/cnnlab"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", root], input=archive, check=True)
    for so in glob.glob(os.path.join(os.path.dirname(cnnlab.__file__), "_core*.so")):
        shutil.copy(so, os.path.join(root, "src", "cnnlab"))
    return os.path.join(root, "src")


def _spawn(args, candidate, twin, size, old_src):
    env = dict(os.environ)
    if candidate == "nn-glibc-default":
        env["CNNLAB_MALLOC_TUNING"] = "0"
    if candidate == "layers":
        env["PYTHONPATH"] = old_src + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker",
                          "nn" if candidate.startswith("nn") else candidate,
                          twin, str(size), "--threads", str(args.threads), "--repeats",
                          str(args.repeats)], capture_output=True, text=True, env=env,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def train_command(old_src) -> list:
    """Wall time and test accuracy of the default ``python -m cnnlab.train``, old and new."""
    rows = []
    for name, src in (("layers", old_src), ("nn", None)):
        env = dict(os.environ)
        if src:
            env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "cnnlab.train", "--no-progress",
                                   "--out", out], capture_output=True, text=True, env=env,
                                  cwd=out)
            wall = time.perf_counter() - t0
        text = proc.stdout
        acc = re.search(r"test accuracy: ([0-9.]+)%", text)
        trained = re.search(r"trained \d+ epochs in ([0-9.]+) s", text)
        rows.append({"candidate": name, "wall_s": wall, "status": proc.returncode,
                     "trained_s": float(trained.group(1)) if trained else None,
                     "test_accuracy": float(acc.group(1)) if acc else None})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sizes", default="28,64")
    ap.add_argument("--twins", default="cython,numpy,torch")
    ap.add_argument("--old-ref", default=OLD_REF)
    ap.add_argument("--no-train-command", action="store_true")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=os.path.join(HERE, "results", "nn_epoch.json"))
    args = ap.parse_args(argv)
    H.setup_env()
    import cnnlab
    if args.threads is None:
        args.threads = cnnlab.get_num_threads()
    if args.worker:
        candidate, twin, size = args.worker
        print(json.dumps(worker(candidate, twin, int(size), args.threads, args.repeats)))
        return
    info = H.machine()
    info.update(threads=args.threads, old_ref=args.old_ref, load_before=os.getloadavg())
    print(f"machine: {info['cpu']}, {info['usable_cpus']} usable CPUs; {args.threads} threads; "
          f"OMP_WAIT_POLICY={info['omp_wait_policy']}; load {info['load_before']}")
    old_src = old_tree(args.old_ref)
    try:
        _run_all(args, info, old_src)
    finally:
        shutil.rmtree(os.path.dirname(old_src), ignore_errors=True)


def _run_all(args, info, old_src):
    import cnnlab
    twins = [t for t in args.twins.split(",") if t in cnnlab.backends()]
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for twin in twins:
            names = ("layers", "nn", "nn-glibc-default")
            runs = {name: [] for name in names}
            for r in range(args.rounds):
                for candidate in (names if r % 2 == 0 else names[::-1]):
                    runs[candidate].append(_spawn(args, candidate, twin, size, old_src))
            row = {"size": size, "twin": twin, "runs": runs}
            for name in names:
                row[f"{name}_epoch_s"] = statistics.median(r["epoch_s"] for r in runs[name])
                row[f"{name}_cpu_s"] = statistics.median(r["cpu_s"] for r in runs[name])
            row["bookkeeping_share"] = statistics.median(r["bookkeeping_share"]
                                                         for r in runs["nn"])
            rows.append(row)
            H.write_json(args.json, {"machine": info, "rows": rows, "partial": True})
            print(f"  {size} {twin}: layers {row['layers_epoch_s']:.3f} s, nn "
                  f"{row['nn_epoch_s']:.3f} s (glibc default "
                  f"{row['nn-glibc-default_epoch_s']:.3f} s), bookkeeping "
                  f"{100 * row['bookkeeping_share']:.1f}%", file=sys.stderr)
    train_rows = [] if args.no_train_command else train_command(old_src)
    info["load_after"] = os.getloadavg()
    print()
    print("| input | twin | layers (old) epoch s | nn epoch s | nn / layers | nn, glibc's "
          "default malloc, s | CPU s: layers / nn / nn glibc default | bookkeeping share |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        size = f"{r['size']}x{r['size']}x{1 if r['size'] == 28 else 3}"
        print(f"| {size} | {r['twin']} | {r['layers_epoch_s']:.3f} | {r['nn_epoch_s']:.3f} | "
              f"{H.fmt_ratio(r['nn_epoch_s'], r['layers_epoch_s'])} | "
              f"{r['nn-glibc-default_epoch_s']:.3f} | {r['layers_cpu_s']:.2f} / "
              f"{r['nn_cpu_s']:.2f} / {r['nn-glibc-default_cpu_s']:.2f} | "
              f"{100 * r['bookkeeping_share']:.1f}% |")
    if train_rows:
        print()
        print("| python -m cnnlab.train | wall s | trained s | test accuracy |")
        print("| --- | --- | --- | --- |")
        for r in train_rows:
            print(f"| {r['candidate']} | {r['wall_s']:.1f} | {r['trained_s']} | "
                  f"{r['test_accuracy']}% |")
    H.write_json(args.json, {"machine": info, "rows": rows, "train_command": train_rows})
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
