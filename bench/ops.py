"""Benchmark every op, forward and backward: cnnlab's twins against torch's CPU kernels.

    python bench/ops.py                      # all cases, float32 and float64, 3 rounds
    python bench/ops.py --quick              # float32, 2 rounds, fewer repeats
    python bench/ops.py --cases conv --dtypes float32 --candidates cython,torch
    python bench/ops.py --interleaved        # the old one-process method (an extra)

Run it with the machine's OpenBLAS overrides unset (HELPERS.md):
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/ops.py``.

Each candidate (``cython``, ``numpy``, ``torch``; ``reference`` on request) runs alone in
its own processes, alternated, on the same thread count (see ``_harness``); times are the
median over the rounds of each process's median. Cases: the lab network's layers at batch 32
on 64x64 RGB input (conv 3->16, 16->32, 32->64, 3x3 padding 1, 2x2 max/avg pooling after each,
a 2x2 stride-2 transposed conv 64->32), two ResNet-like layers (64->64 @56 batch 8,
128->128 @14 batch 32) and the course's classic cases. Backward is the full gradient set
(input, weight, bias for convolutions) against ``torch.ops.aten.convolution_backward`` and
the pooling backward kernels, which are what torch's autograd calls. Conv rows give the
forward's GFLOP/s (2*N*C_in*C_out*kH*kW*H_out*W_out/groups per second) and its fraction of
the machine's GEMM peak, measured in its own processes. A second table times cnnlab's
convolutions (forward + backward) on 1 thread against all threads, two ways: 1-thread
processes against the N-thread ones (as the other tables), and paired inside one process
(``cython paired``: blocks of calls on 1 and on N threads alternated, the ratio taken per
pair of blocks, so that the machine's drift between processes cancels), with NumPy's GEMM
paired the same way and the N-thread calls' busy threads (process CPU time / wall time).
A third table gives each conv forward's fraction of the peak twice: against the peak's own
processes, and paired (the same ``cython paired`` process times each forward between two
blocks of the peak's GEMM, so that the host's load, which moves both by up to 2x over
minutes on a shared VM, cancels).
Writes JSON and Markdown (default ``bench/results/ops.json`` and ``ops.md``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as H  # noqa: E402

SCRIPT = os.path.abspath(__file__)

# --------------------------------------------------------------------------- the cases


def conv(name, x, w, **kw):
    return dict(name=name, op="conv2d", x=x, w=w, kw=dict(stride=1, padding=1, **kw))


def pool(name, op, x):
    return dict(name=name, op=op, x=x, kw=dict(kernel_size=2, stride=2))


def all_cases(batch=32):
    cases = []
    for cin, cout, size in [(3, 16, 64), (16, 32, 32), (32, 64, 16)]:
        cases.append(conv(f"lab conv {cin}->{cout} @{size}", (batch, cin, size, size),
                          (cout, cin, 3, 3)))
        for op in ("max_pool2d", "avg_pool2d"):
            cases.append(pool(f"lab {op[:3]}pool 2/2 {cout}@{size}", op,
                              (batch, cout, size, size)))
    cases += [
        dict(name="lab convT 64->32 2x2/2 @8", op="conv_transpose2d", x=(batch, 64, 8, 8),
             w=(64, 32, 2, 2), kw=dict(stride=2, padding=0)),
        conv("conv 64->64 @56 batch 8", (8, 64, 56, 56), (64, 64, 3, 3)),
        conv("conv 128->128 @14", (batch, 128, 14, 14), (128, 128, 3, 3)),
        dict(name="classic conv 100x3x31x31 w25 s2 p1", op="conv2d", x=(100, 3, 31, 31),
             w=(25, 3, 3, 3), kw=dict(stride=2, padding=1)),
        pool("classic maxpool 100x3x32x32 2/2", "max_pool2d", (100, 3, 32, 32)),
        pool("classic avgpool 100x3x32x32 2/2", "avg_pool2d", (100, 3, 32, 32)),
    ]
    return cases


def select(cases, spec):
    """--cases: 'all', 'conv' (convolutions), 'pool', or comma-separated name parts."""
    if spec == "all":
        return cases
    if spec == "conv":
        return [c for c in cases if "w" in c]
    if spec == "pool":
        return [c for c in cases if "w" not in c]
    parts = spec.split(",")
    return [c for c in cases if any(p in c["name"] for p in parts)]


def out_hw(case):
    (n, c, h, w), kw = case["x"], case["kw"]
    s, p = kw["stride"], kw.get("padding", 0)
    if case["op"] == "conv_transpose2d":
        k = case["w"][2]
        return (h - 1) * s - 2 * p + k, (w - 1) * s - 2 * p + k
    k = case["w"][2] if "w" in case else kw["kernel_size"]
    return (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1


def flops(case):
    """Multiply-adds x 2 of a convolution's forward (the backward does twice as many)."""
    if "w" not in case:
        return None
    n, c_in, _, _ = case["x"]
    c0, c1, kh, kw = case["w"]
    if case["op"] == "conv_transpose2d":      # every input pixel meets every weight
        return 2 * n * case["x"][2] * case["x"][3] * c0 * c1 * kh * kw
    ho, wo = out_hw(case)
    return 2 * n * ho * wo * c0 * c1 * kh * kw


def key(case, dtype, pass_):
    return f"{case['name']}|{dtype}|{pass_}"


# --------------------------------------------------------------------------- worker side


def operands(case, dtype, batch=None, seed=0):
    """x, w, b, grad_output as NumPy arrays (the same for every candidate)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    xs = case["x"] if batch is None else (batch,) + tuple(case["x"][1:])
    x = rng.standard_normal(xs).astype(dtype)
    w = b = None
    if "w" in case:
        w = (rng.standard_normal(case["w"]) * 0.1).astype(dtype)
        c_out = case["w"][1] if case["op"] == "conv_transpose2d" else case["w"][0]
        b = rng.standard_normal(c_out).astype(dtype)
    c_out = case["x"][1] if "w" not in case else (
        case["w"][1] if case["op"] == "conv_transpose2d" else case["w"][0])
    gy = rng.standard_normal((xs[0], c_out) + out_hw(case)).astype(dtype)
    return x, w, b, gy


def cnnlab_calls(F, case, x, w, b, gy):
    """(forward, backward) through cnnlab.functional on the current backend."""
    op, kw = case["op"], case["kw"]
    if op == "conv2d":
        return (lambda: F.conv2d(x, w, b, **kw),
                lambda: F.conv2d_backward(gy, x, w, **kw))
    if op == "conv_transpose2d":
        return (lambda: F.conv_transpose2d(x, w, b, **kw),
                lambda: F.conv_transpose2d_backward(gy, x, w, **kw))
    if op == "max_pool2d":
        _, idx = F.max_pool2d(x, return_indices=True, **kw)
        return (lambda: F.max_pool2d(x, return_indices=True, **kw),
                lambda: F.max_pool2d_backward(gy, x, indices=idx, **kw))
    return (lambda: F.avg_pool2d(x, **kw), lambda: F.avg_pool2d_backward(gy, x, **kw))


def torch_calls(torch, case, x, w, b, gy):
    """torch's CPU kernels: the forward function and the backward ATen op autograd uses."""
    TF, aten = torch.nn.functional, torch.ops.aten
    op, kw = case["op"], case["kw"]
    if op in ("conv2d", "conv_transpose2d"):
        s, p = kw["stride"], kw["padding"]
        transposed = op == "conv_transpose2d"
        fwd = TF.conv_transpose2d if transposed else TF.conv2d
        n_out = w.shape[1] if transposed else w.shape[0]
        return (lambda: fwd(x, w, b, stride=s, padding=p),
                lambda: aten.convolution_backward(gy, x, w, [n_out], [s, s], [p, p], [1, 1],
                                                  transposed, [0, 0], 1, [True, True, True]))
    k, s = kw["kernel_size"], kw["stride"]
    if op == "max_pool2d":
        _, idx = TF.max_pool2d(x, k, s, return_indices=True)
        return (lambda: TF.max_pool2d(x, k, s, return_indices=True),
                lambda: aten.max_pool2d_with_indices_backward(gy, x, [k, k], [s, s], [0, 0],
                                                              [1, 1], False, idx))
    return (lambda: TF.avg_pool2d(x, k, s),
            lambda: aten.avg_pool2d_backward(gy, x, [k, k], [s, s], [0, 0], False, True, None))


def calls_for(candidate, threads):
    """A function case, dtype -> (forward, backward) for one candidate, in this process."""
    if candidate == "torch":
        import torch
        H.set_threads(threads, torch)

        def make(case, dtype):
            ops = [None if a is None else torch.from_numpy(a) for a in operands(case, dtype)]
            return torch_calls(torch, case, *ops)
        return make
    import cnnlab
    import cnnlab.functional as F
    H.set_threads(threads)
    if candidate == "reference":
        from cnnlab import reference as R

        def make(case, dtype):
            return cnnlab_calls(R, case, *operands(case, dtype, batch=1))
        return make

    def make(case, dtype):
        with cnnlab.use_backend(candidate):
            pair = cnnlab_calls(F, case, *operands(case, dtype))
        return tuple(_on(candidate, threads, fn) for fn in pair)
    return make


def _on(backend, threads, fn):
    """fn on a cnnlab backend and thread count (the interleaved mode mixes them)."""
    import cnnlab

    def call():
        cnnlab.set_num_threads(threads)
        with cnnlab.use_backend(backend):
            return fn()
    return call


def worker(args):
    """Time every selected case in this process; print {key: [seconds...]} as JSON."""
    if args.worker == "paired":
        return paired_worker(args)
    make = calls_for(args.worker, args.threads)
    out = {}
    for dtype in args.dtypes.split(","):
        for case in select(all_cases(), args.cases):
            fwd, bwd = make(case, dtype)
            for pass_, fn in (("fwd", fwd), ("bwd", bwd)):
                if args.worker == "reference":      # one image, once, scaled to the batch
                    t0 = time.perf_counter()
                    fn()
                    ts = [(time.perf_counter() - t0) * case["x"][0]]
                else:
                    ts = H.time_calls(fn, args.repeats, budget_s=args.budget)
                out[key(case, dtype, pass_)] = ts
    print(json.dumps({"times": out, "blas": H.blas_info()}))


#: Paired scaling: pairs of blocks (one on 1 thread, one on N, the order swapped from pair
#: to pair), each block CALLS calls after one untimed call at its thread count.
PAIRS, CALLS = 6, 3
#: NumPy's GEMM in the paired scaling (the peak's size, 2048, takes 0.2-0.5 s a call on 1
#: thread here; 1024 is the same kernel in a quarter of the time).
GEMM_SIZE = 1024
#: The peak's GEMM size (``_harness.sgemm_peak``), also in the paired fraction of the peak.
PEAK_SIZE = 2048


def _paired(fn, set_threads, threads):
    """[t1 / tN per pair of blocks], [CPU s / wall s of each N-thread block]: block medians
    of ``fn`` on 1 and on ``threads`` threads, alternated in this process."""
    import resource

    def cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def block(n):
        set_threads(n)
        fn()
        ts, c0, w0 = [], cpu(), time.perf_counter()
        for _ in range(CALLS):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return sorted(ts)[CALLS // 2], (cpu() - c0) / (time.perf_counter() - w0)

    ratios, busy = [], []
    for i in range(PAIRS):
        order = (1, threads) if i % 2 == 0 else (threads, 1)
        got = {n: block(n) for n in order}
        ratios.append(got[1][0] / got[threads][0])
        busy.append(got[threads][1])
    return ratios, busy


#: The paired fraction of the peak: PEAK_PAIRS rounds of [a GEMM block, then a block of every
#: conv forward]; each forward's GFLOP/s over the mean of the two GEMM blocks around it.
PEAK_PAIRS = 6
#: Seconds of calls in one block of the paired fraction of the peak.
PEAK_BLOCK_S = 0.3


def _paired_peak(fwds, gemm, size):
    """{name: [fraction of the GEMM's rate, per round]}: each forward in ``fwds`` (name ->
    (fn, flops)) timed between two blocks of ``gemm`` (a size^3 product) in this process,
    so that a machine slowed for a while slows both (the peak's own processes run at other
    times: on this VM the host's load moves both by up to 2x over minutes). A block is
    PEAK_BLOCK_S seconds of calls after two untimed ones, its median call."""
    def block(fn):
        fn()
        fn()
        ts, start = [], time.perf_counter()
        while len(ts) < 3 or time.perf_counter() - start < PEAK_BLOCK_S:
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    work = 2.0 * size ** 3
    out = {name: [] for name in fwds}
    gemm_rates = [work / block(gemm) / 1e9]
    for _ in range(PEAK_PAIRS):
        rates = {name: flops / 1e9 / block(fn) for name, (fn, flops) in fwds.items()}
        gemm_rates.append(work / block(gemm) / 1e9)
        for name, r in rates.items():
            out[name].append(r / ((gemm_rates[-2] + gemm_rates[-1]) / 2))
    return out, gemm_rates


def paired_worker(args):
    """cnnlab's convolutions (compiled twin) in this process: fwd+bwd on 1 thread against
    ``args.threads`` alternated, and NumPy's GEMM the same way ({key|speedup: [ratios],
    key|busy: [...]}); then each forward on ``args.threads`` between blocks of the peak's
    GEMM ({key|peak: [fractions]})."""
    import numpy as np
    import cnnlab
    import cnnlab.functional as F
    cnnlab.set_backend("cython")
    out = {}
    for dtype in args.dtypes.split(","):
        fwds = {}
        for case in select(all_cases(), args.cases):
            if "w" not in case:
                continue
            fwd, bwd = cnnlab_calls(F, case, *operands(case, dtype))
            ratios, busy = _paired(lambda: (fwd(), bwd()), H.set_threads, args.threads)
            out[key(case, dtype, "speedup")], out[key(case, dtype, "busy")] = ratios, busy
            if case["op"] == "conv2d":
                fwds[key(case, dtype, "peak")] = (fwd, flops(case))
        a = np.random.default_rng(0).standard_normal((GEMM_SIZE, GEMM_SIZE)).astype(dtype)
        ratios, busy = _paired(lambda: a @ a, H.set_threads, args.threads)
        out[f"numpy gemm|{dtype}|speedup"], out[f"numpy gemm|{dtype}|busy"] = ratios, busy
        H.set_threads(args.threads)
        big = np.random.default_rng(0).standard_normal((PEAK_SIZE, PEAK_SIZE)).astype(dtype)
        fractions, gemm_rates = _paired_peak(fwds, lambda: big @ big, PEAK_SIZE)
        out.update(fractions)
        out[f"numpy gemm|{dtype}|paired_rate"] = gemm_rates
    print(json.dumps({"times": out, "blas": H.blas_info()}))


# --------------------------------------------------------------------------- parent side


def worker_argv(args, candidate, threads):
    return ["--worker", candidate, "--threads", str(threads), "--dtypes", args.dtypes,
            "--cases", args.cases, "--repeats", str(args.repeats),
            "--budget", str(args.budget)]


def measure(args, log):
    """({candidate: {key: seconds}}, {candidate: {key: [process medians]}}, {candidate:
    BLAS libraries}), each candidate in its own processes (plus cython on 1 thread for the
    scaling table)."""
    cands = {c: (worker_argv(args, c, args.threads), None) for c in args.candidates}
    if args.scaling and "cython" in args.candidates and args.threads > 1:
        cands["cython 1 thread"] = (worker_argv(args, "cython", 1), None)
        if not args.interleaved:
            cands["cython paired"] = (worker_argv(args, "paired", args.threads), None)
    if args.interleaved:
        return interleaved(args, cands, log)
    res = H.in_processes(SCRIPT, cands, rounds=args.rounds, log=log)
    return ({n: {k: v["median"] for k, v in r["times"].items()} for n, r in res.items()},
            {n: {k: v["process_medians"] for k, v in r["times"].items()}
             for n, r in res.items()},
            {n: r["blas"] for n, r in res.items()})


def interleaved(args, cands, log):
    """The documented extra: all candidates in one process (this one), alternating."""
    mode = H.setup_interleaved_env()
    log(f"  interleaved in one process, OMP_WAIT_POLICY={mode}")
    import numpy as np  # noqa: F401
    makers = {n: calls_for(argv[1], int(argv[3])) for n, (argv, _) in cands.items()}
    times = {n: {} for n in cands}
    for dtype in args.dtypes.split(","):
        for case in select(all_cases(), args.cases):
            pairs = {n: m(case, dtype) for n, m in makers.items()}
            for i, pass_ in enumerate(("fwd", "bwd")):
                fns = {n: p[i] for n, p in pairs.items()}
                for n, t in H.interleaved(fns, args.repeats, budget_s=args.budget).items():
                    times[n][key(case, dtype, pass_)] = t
    import threadpoolctl  # noqa: F401
    return times, {}, {n: H.blas_info() for n in cands}


def tables(args, times, peak, order, peak1=None):
    """Markdown: the op table and the thread-scaling table (with NumPy's GEMM on 1 and on
    all threads, ``peak1`` and ``peak``, as the machine's own reference)."""
    cands = [c for c in ("reference", "numpy", "cython", "torch") if c in order]
    head = ("| case | dtype | pass | " + " | ".join(f"{c} ms" for c in cands)
            + " | cython/torch | cython GFLOP/s | cython % of peak | torch GFLOP/s |"
            + " torch % of peak |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    rows = []
    for dtype in args.dtypes.split(","):
        for case in select(all_cases(), args.cases):
            f = flops(case)
            for pass_ in ("fwd", "bwd", "fwd+bwd"):
                t = {}
                for c in cands:
                    parts = [times[c].get(key(case, dtype, p)) for p in pass_.split("+")]
                    t[c] = None if None in parts else sum(parts)
                work = None if f is None else f * (1 if pass_ == "fwd" else
                                                   2 if pass_ == "bwd" else 3)
                rate = {c: (work / t[c] / 1e9 if work and t.get(c) else None) for c in cands}
                pk = peak.get(dtype) if peak else None
                rows.append({"case": case["name"], "dtype": dtype, "pass": pass_,
                             "times": t, "gflops": rate, "peak_gflops": pk})
                lines.append(
                    f"| {case['name']} | {dtype} | {pass_} | "
                    + " | ".join(H.fmt_ms(t[c]) for c in cands)
                    + f" | {H.fmt_ratio(t.get('cython'), t.get('torch'))}"
                    + "".join(f" | {_rate(rate.get(c))} | {_pct(rate.get(c), pk)}"
                              for c in ("cython", "torch")) + " |")
    scaling = []
    paired = times.get("cython paired", {})
    n = args.threads
    if "cython 1 thread" in times:
        lines += ["", f"| cython conv fwd+bwd | dtype | 1 thread ms | {n} threads ms"
                  " | speed-up | paired speed-up | busy threads |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for dtype in args.dtypes.split(","):
            for case in select(all_cases(), args.cases):
                if "w" not in case:
                    continue
                t1 = sum(times["cython 1 thread"][key(case, dtype, p)] for p in ("fwd", "bwd"))
                tn = sum(times["cython"][key(case, dtype, p)] for p in ("fwd", "bwd"))
                sp, busy = (paired.get(key(case, dtype, k)) for k in ("speedup", "busy"))
                scaling.append({"case": case["name"], "dtype": dtype, "t1": t1, "tn": tn,
                                "threads": n, "speedup": t1 / tn, "paired_speedup": sp,
                                "busy_threads": busy})
                lines.append(f"| {case['name']} | {dtype} | {H.fmt_ms(t1)} | {H.fmt_ms(tn)} "
                             f"| {t1 / tn:.2f}x | {_x(sp)} | {_f(busy)} |")
        if peak1:
            work = 2.0 * peak["size"] ** 3 / 1e9
            for dtype in args.dtypes.split(","):
                t1, tn = work / peak1[dtype], work / peak[dtype]
                sp, busy = (paired.get(f"numpy gemm|{dtype}|{k}") for k in ("speedup", "busy"))
                scaling.append({"case": "numpy gemm", "dtype": dtype, "t1": t1, "tn": tn,
                                "threads": n, "speedup": t1 / tn, "paired_speedup": sp,
                                "busy_threads": busy, "paired_size": GEMM_SIZE})
                lines.append(f"| NumPy GEMM {peak['size']}^3 (paired: {GEMM_SIZE}^3; the "
                             f"machine's reference) | {dtype} | {H.fmt_ms(t1)} | "
                             f"{H.fmt_ms(tn)} | {t1 / tn:.2f}x | {_x(sp)} | {_f(busy)} |")
    peaks = []
    if any(k.endswith("|peak") for k in paired):
        rates = ", ".join(f"{d} {paired[f'numpy gemm|{d}|paired_rate']:.0f}"
                          for d in args.dtypes.split(",")
                          if f"numpy gemm|{d}|paired_rate" in paired)
        lines += ["", f"Paired: the forward's GFLOP/s over the mean of the {PEAK_SIZE}^3 GEMM"
                  f" blocks before and after it in one process (the GEMM's median there, "
                  f"GFLOP/s: {rates}).", "",
                  f"| cython conv fwd, {n} threads | dtype | % of peak, own processes |"
                  " % of peak, paired with the GEMM |", "| --- | --- | --- | --- |"]
        for dtype in args.dtypes.split(","):
            for case in select(all_cases(), args.cases):
                frac = paired.get(key(case, dtype, "peak"))
                if frac is None:
                    continue
                own = flops(case) / times["cython"][key(case, dtype, "fwd")] / 1e9 / peak[dtype]
                peaks.append({"case": case["name"], "dtype": dtype, "own_processes": own,
                              "paired": frac})
                lines.append(f"| {case['name']} | {dtype} | {100 * own:.0f}% | "
                             f"{100 * frac:.0f}% |")
    return "\n".join(lines), rows, scaling, peaks


def _x(r):
    return "—" if r is None else f"{r:.2f}x"


def _f(r):
    return "—" if r is None else f"{r:.2f}"


def _rate(r):
    return "—" if r is None else f"{r:.0f}"


def _pct(r, peak):
    return "—" if r is None or not peak else f"{100 * r / peak:.0f}%"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="processes per candidate")
    ap.add_argument("--repeats", type=int, default=15, help="timed calls per process")
    ap.add_argument("--budget", type=float, default=5.0,
                    help="seconds of timing per case and pass in a process before stopping")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--cases", default="all", help="all, conv, pool or name parts")
    ap.add_argument("--candidates", default="numpy,cython,torch",
                    help="comma-separated: numpy, cython, torch, reference (naive loops, one "
                         "image timed once and scaled to the batch)")
    ap.add_argument("--no-scaling", dest="scaling", action="store_false",
                    help="skip cython on 1 thread")
    ap.add_argument("--quick", action="store_true", help="float32, 2 rounds, 7 repeats")
    ap.add_argument("--interleaved", action="store_true",
                    help="the old method: every candidate in this one process (an extra)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(SCRIPT), "results", "ops"),
                    help="writes OUT.json and OUT.md")
    ap.add_argument("--boost", action="store_true",
                    help="raise this run's scheduling weight on a shared machine (root; see "
                         "_harness.boost)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.quick:
        args.dtypes, args.rounds, args.repeats = "float32", 2, 7
    args.candidates = args.candidates.split(",")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)
    boosted = H.boost() if args.boost else "not boosted"
    warn = H.warn_overrides()
    if warn:
        log(warn)
    info = H.machine()
    load0 = H.load()
    t0 = time.perf_counter()
    peak = H.sgemm_peak(args.threads, size=PEAK_SIZE)
    log(f"GEMM peak: float32 {peak['float32']:.0f}, float64 {peak['float64']:.0f} GFLOP/s")
    peak1 = None
    if args.scaling and "cython" in args.candidates and args.threads > 1:
        peak1 = H.sgemm_peak(1, size=PEAK_SIZE)
        log(f"GEMM on 1 thread: float32 {peak1['float32']:.0f}, float64 "
            f"{peak1['float64']:.0f} GFLOP/s")
    times, per_process, blas = measure(args, log)
    load1 = H.load()
    table, rows, scaling, peaks = tables(args, times, peak, list(times), peak1)
    method = ("interleaved in one process (OMP_WAIT_POLICY=PASSIVE)" if args.interleaved
              else f"each candidate in its own process, alternated, median of {args.rounds} "
                   f"processes x up to {args.repeats} calls")
    header = [
        f"machine: {info['cpu']} ({info['simd']}), {info['usable_cpus']} usable CPUs, caches "
        + ", ".join(f"{k} {v >> 10} KiB" for k, v in info["caches"].items()),
        f"threads for every candidate: {args.threads}; method: {method}; "
        f"load average {load0:.2f} before, {load1:.2f} after; "
        f"{time.perf_counter() - t0:.0f} s",
        "environment: " + ", ".join(f"{k}={v}" for k, v in info["env"].items())
        + f"; scheduling: {boosted}",
        f"GEMM peak (NumPy {peak['size']}^3, own processes): float32 "
        f"{peak['float32']:.0f} GFLOP/s, float64 {peak['float64']:.0f} GFLOP/s"
        + ("" if not peak1 else f"; on 1 thread {peak1['float32']:.0f} and "
           f"{peak1['float64']:.0f}"),
    ] + [f"BLAS in the {c} process: {H.blas_line(b)}" for c, b in blas.items()] + [
        f"torch {info.get('torch')}, numpy {info['numpy']}, python {info['python']}"]
    text = "\n".join(header) + "\n\n" + table + "\n"
    print(text)
    H.write_json(args.out + ".json", {"machine": info, "threads": args.threads,
                                      "method": method, "load": [load0, load1],
                                      "scheduling": boosted,
                                      "peak": peak, "peak_1_thread": peak1,
                                      "blas": blas, "rows": rows,
                                      "per_process": per_process,
                                      "thread_scaling": scaling,
                                      "paired_peak": peaks})
    with open(args.out + ".md", "w") as f:
        f.write(text)
    log(f"wrote {args.out}.json and {args.out}.md")


if __name__ == "__main__":
    main()
