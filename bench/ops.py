"""Benchmark every op, forward and backward, on every twin and on torch's CPU kernels.

    python bench/ops.py                       # all cases, float32 and float64
    python bench/ops.py --quick               # fewer repeats, float32 only
    python bench/ops.py --threads 1 --json bench/results/ops-1thread.json

Cases: the lab network's layers at batch 32 on 64x64 RGB input (conv 3->16, 16->32, 32->64,
3x3 padding 1, 2x2 max/avg pooling after each, a 2x2 stride-2 transposed conv 64->32) and the
course's classic speed tests (x (100,3,31,31), w (25,3,3,3), stride 2, padding 1; pooling on
(100,3,32,32), 2x2 stride 2). ``cnnlab.reference`` (the naive loops) is timed once on one
image and scaled to the batch. Backward passes are the full gradient set (input, weight,
bias for convolutions), against ``torch.ops.aten.convolution_backward`` and the pooling
backward kernels, which are what torch's autograd calls. Prints a Markdown table and writes
JSON (default ``bench/results/ops.json``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as H  # noqa: E402

H.setup_env()  # before any OpenMP runtime loads (see _harness)

import numpy as np  # noqa: E402

import cnnlab  # noqa: E402
import cnnlab.functional as F  # noqa: E402

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # the table then has no torch column
    torch = None

try:
    from cnnlab import reference as R
except ImportError:
    R = None


# --------------------------------------------------------------------------- the cases

def lab_cases(batch=32):
    cases = []
    for cin, cout, size in [(3, 16, 64), (16, 32, 32), (32, 64, 16)]:
        cases.append(dict(name=f"lab conv {cin}->{cout} @{size}", op="conv2d",
                          x=(batch, cin, size, size), w=(cout, cin, 3, 3),
                          kw=dict(stride=1, padding=1)))
        for op in ("max_pool2d", "avg_pool2d"):
            cases.append(dict(name=f"lab {op[:3]}pool 2/2 {cout}@{size}", op=op,
                              x=(batch, cout, size, size), kw=dict(kernel_size=2, stride=2)))
    cases.append(dict(name="lab convT 64->32 2x2/2 @8", op="conv_transpose2d",
                      x=(batch, 64, 8, 8), w=(64, 32, 2, 2), kw=dict(stride=2)))
    return cases


def classic_cases():
    return [
        dict(name="classic conv 100x3x31x31 w25 s2 p1", op="conv2d", x=(100, 3, 31, 31),
             w=(25, 3, 3, 3), kw=dict(stride=2, padding=1)),
        dict(name="classic maxpool 100x3x32x32 2/2", op="max_pool2d", x=(100, 3, 32, 32),
             kw=dict(kernel_size=2, stride=2)),
        dict(name="classic avgpool 100x3x32x32 2/2", op="avg_pool2d", x=(100, 3, 32, 32),
             kw=dict(kernel_size=2, stride=2)),
    ]


# --------------------------------------------------------------------------- callables

def cnnlab_calls(case, x, w, b, gy, idx):
    """(forward, backward) through cnnlab.functional on the current backend."""
    op, kw = case["op"], case["kw"]
    if op == "conv2d":
        return (lambda: F.conv2d(x, w, b, **kw),
                lambda: F.conv2d_backward(gy, x, w, **kw))
    if op == "conv_transpose2d":
        return (lambda: F.conv_transpose2d(x, w, b, **kw),
                lambda: F.conv_transpose2d_backward(gy, x, w, **kw))
    if op == "max_pool2d":
        return (lambda: F.max_pool2d(x, return_indices=True, **kw),
                lambda: F.max_pool2d_backward(gy, x, indices=idx, **kw))
    return (lambda: F.avg_pool2d(x, **kw), lambda: F.avg_pool2d_backward(gy, x, **kw))


def reference_calls(case, x, w, b, gy):
    op, kw = case["op"], case["kw"]
    fwd = getattr(R, op)
    bwd = getattr(R, op + "_backward")
    if op in ("conv2d", "conv_transpose2d"):
        return lambda: fwd(x, w, b, **kw), lambda: bwd(gy, x, w, **kw)
    return lambda: fwd(x, **kw), lambda: bwd(gy, x, **kw)


def torch_calls(case, x, w, b, gy, idx):
    """torch's CPU kernels: the forward function and the backward ATen op autograd uses."""
    op, kw = case["op"], case["kw"]
    aten = torch.ops.aten
    if op in ("conv2d", "conv_transpose2d"):
        s = kw.get("stride", 1)
        p = kw.get("padding", 0)
        transposed = op == "conv_transpose2d"
        fwd = TF.conv_transpose2d if transposed else TF.conv2d
        n_out = w.shape[1] if transposed else w.shape[0]
        return (lambda: fwd(x, w, b, stride=s, padding=p),
                lambda: aten.convolution_backward(gy, x, w, [n_out], [s, s], [p, p], [1, 1],
                                                  transposed, [0, 0], 1, [True, True, True]))
    k, s = kw["kernel_size"], kw["stride"]
    if op == "max_pool2d":
        return (lambda: TF.max_pool2d(x, k, s, return_indices=True),
                lambda: aten.max_pool2d_with_indices_backward(gy, x, [k, k], [s, s], [0, 0],
                                                              [1, 1], False, idx))
    return (lambda: TF.avg_pool2d(x, k, s),
            lambda: aten.avg_pool2d_backward(gy, x, [k, k], [s, s], [0, 0], False, True, None))


# --------------------------------------------------------------------------- running

def operands(case, dtype, batch=None, seed=0):
    rng = np.random.default_rng(seed)
    xs = case["x"] if batch is None else (batch,) + case["x"][1:]
    x = rng.standard_normal(xs).astype(dtype)
    w = b = None
    if "w" in case:
        w = (rng.standard_normal(case["w"]) * 0.1).astype(dtype)
        n_out = case["w"][1] if case["op"] == "conv_transpose2d" else case["w"][0]
        b = rng.standard_normal(n_out).astype(dtype)
    with cnnlab.use_backend("numpy"):
        if case["op"] == "max_pool2d":
            y, idx = F.max_pool2d(x, return_indices=True, **case["kw"])
        else:
            y, idx = cnnlab_calls(case, x, w, b, None, None)[0](), None
    gy = rng.standard_normal(y.shape).astype(dtype)
    return x, w, b, gy, idx


def run_case(case, dtype, args):
    x, w, b, gy, idx = operands(case, dtype)
    fwd, bwd = {}, {}
    for name in ("numpy", "cython"):
        if name in cnnlab.backends():
            f, g = cnnlab_calls(case, x, w, b, gy, idx)
            fwd[name] = _on(name, f)
            bwd[name] = _on(name, g)
    if torch is not None:
        t = [None if a is None else torch.from_numpy(a) for a in (x, w, b, gy, idx)]
        f, g = torch_calls(case, *t)
        fwd["torch"], bwd["torch"] = f, g
    res = {"fwd": H.interleaved(fwd, args.repeats, budget_s=args.budget),
           "bwd": H.interleaved(bwd, args.repeats, budget_s=args.budget)}
    if R is not None and not args.no_reference:
        n = case["x"][0]
        rx, rw, rb, rgy, _ = operands(case, dtype, batch=1)
        rf, rg = reference_calls(case, rx, rw, rb, rgy)
        for key, fn in (("fwd", rf), ("bwd", rg)):
            t0 = time.perf_counter()
            fn()
            res[key]["reference"] = (time.perf_counter() - t0) * n  # scaled to the batch
    return res


def _on(backend, fn):
    def call():
        with cnnlab.use_backend(backend):
            return fn()
    return call


COLUMNS = ("reference", "numpy", "cython", "torch")


def table(rows) -> str:
    head = ("| case | dtype | pass | " + " | ".join(f"{c} ms" for c in COLUMNS)
            + " | cython/torch | cython/numpy |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        t = r["times"]
        lines.append(f"| {r['case']} | {r['dtype']} | {r['pass']} | "
                     + " | ".join(H.fmt_ms(t.get(c)) for c in COLUMNS)
                     + f" | {H.fmt_ratio(t.get('cython'), t.get('torch'))}"
                     + f" | {H.fmt_ratio(t.get('cython'), t.get('numpy'))} |")
    return "\n".join(lines)


def thread_scaling(args):
    """Cython conv2d forward+backward on the lab layers, 1 thread against all threads."""
    if "cython" not in cnnlab.backends():
        return []
    out = []
    n_all = args.threads
    for case in lab_cases():
        if case["op"] != "conv2d":
            continue
        x, w, b, gy, idx = operands(case, np.float32)
        f, g = cnnlab_calls(case, x, w, b, gy, idx)

        def both(n):
            def call():
                cnnlab.set_num_threads(n)
                with cnnlab.use_backend("cython"):
                    f()
                    g()
            return call
        t = H.interleaved({"1": both(1), str(n_all): both(n_all)}, args.repeats,
                          budget_s=args.budget)
        cnnlab.set_num_threads(n_all)
        out.append({"case": case["name"], "t1": t["1"], "tn": t[str(n_all)],
                    "threads": n_all, "speedup": t["1"] / t[str(n_all)]})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=cnnlab.get_num_threads())
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--budget", type=float, default=15.0,
                    help="seconds of timing per case and pass before stopping early")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--quick", action="store_true", help="float32 only, 5 repeats")
    ap.add_argument("--no-reference", action="store_true", help="skip the naive loops")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results",
                                                   "ops.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.dtypes, args.repeats = "float32", 5
    H.set_threads(args.threads)
    info = H.machine()
    info["threads"] = args.threads
    print(f"machine: {info['cpu']}, {info['usable_cpus']} usable CPUs; threads for everyone: "
          f"{args.threads}; OMP_WAIT_POLICY={info['omp_wait_policy']}; backends "
          f"{info['cnnlab_backends']}, torch {info.get('torch')}")
    rows = []
    for dtype in args.dtypes.split(","):
        for case in lab_cases() + classic_cases():
            res = run_case(case, np.dtype(dtype).type, args)
            for key in ("fwd", "bwd"):
                rows.append({"case": case["name"], "dtype": dtype, "pass": key,
                             "times": res[key]})
            print(f"  {case['name']} {dtype}: done", file=sys.stderr)
    print()
    print(table(rows))
    scaling = thread_scaling(args)
    if scaling:
        print()
        print(f"| cython conv fwd+bwd, float32 | 1 thread ms | {args.threads} threads ms "
              "| speed-up |")
        print("| --- | --- | --- | --- |")
        for s in scaling:
            print(f"| {s['case']} | {H.fmt_ms(s['t1'])} | {H.fmt_ms(s['tn'])} | "
                  f"{s['speedup']:.2f}x |")
    H.write_json(args.json, {"machine": info, "rows": rows, "thread_scaling": scaling})
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
