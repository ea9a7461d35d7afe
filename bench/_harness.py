"""Timing method shared by the bench scripts: each candidate alone in its own process.

A user runs cnnlab *or* torch, not both in one process, so that is how the scripts measure:

    parent (no numpy/torch/cnnlab work of its own)
      round 1:  worker(cython)  worker(torch)  worker(numpy)     one fresh process each,
      round 2:  worker(torch)   worker(numpy)  worker(cython)    the order rotated per round
      round 3:  ...
    each worker: for every case, a warm-up, then ``repeats`` timed calls (stopping early
    once a time budget is spent); it prints {case: [seconds, ...]} as one JSON line.
    result per case and candidate: the median over the rounds of each process's median.

Every worker runs on the same thread count (cnnlab's OpenMP kernels, torch's intra-op pool,
the BLAS libraries through threadpoolctl), stated in every table, in the environment it was
started from: no OMP_WAIT_POLICY or BLAS setting is added (what a user gets). The BLAS
libraries and the kernels threadpoolctl reports are printed with every table, as is the load
average before and after: the machine may be shared.

``sgemm_peak`` measures the machine's peak the same way (a NumPy float32/float64 GEMM of a
large size in its own process, same threads): conv rows give GFLOP/s and that fraction.

``interleaved`` is the old method (all candidates in one process, alternating calls), kept
as a documented extra (``--interleaved``): two OpenMP runtimes in one process spin on each
other's cores unless ``OMP_WAIT_POLICY=PASSIVE``, which ``setup_interleaved_env`` sets.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time

# The machine's OpenBLAS overrides: when set they may pick a slower kernel (HELPERS.md).
BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


# --------------------------------------------------------------------------- environment


def setup_interleaved_env() -> str:
    """For ``--interleaved`` only; call before importing numpy, torch or cnnlab.

    Idle OpenMP threads sleep (``OMP_WAIT_POLICY=PASSIVE``) and OpenBLAS's idle threads too
    (``OPENBLAS_THREAD_TIMEOUT=4``), so the runtimes in one process do not steal cores."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    return os.environ["OMP_WAIT_POLICY"]


#: The name earlier scripts use (bench/nn_epoch.py): same behaviour.
setup_env = setup_interleaved_env


def set_threads(n: int, torch=None) -> None:
    """The same thread count for cnnlab (when imported), torch (when given) and BLAS."""
    if "cnnlab" in sys.modules:
        sys.modules["cnnlab"].set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)
    from threadpoolctl import threadpool_limits
    threadpool_limits(n)


def blas_info() -> list:
    """The BLAS libraries loaded in this process, as threadpoolctl reports them."""
    from threadpoolctl import threadpool_info
    keep = ("internal_api", "version", "architecture", "num_threads", "threading_layer")
    out = []
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            row = {k: lib.get(k) for k in keep}
            row["library"] = os.path.basename(lib.get("filepath", ""))
            out.append(row)
    return out


def blas_line(libs) -> str:
    return "; ".join(f"{b['internal_api']} {b['version']} kernel {b['architecture']} "
                     f"({b['library']})" for b in libs) or "none found"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return ",".join(f for f in ("avx2", "fma", "avx512f") if f in flags)
    except OSError:
        pass
    return ""


def machine() -> dict:
    """CPU, caches, environment and versions, printed beside every table (parent side)."""
    import numpy
    info = {"cpu": _cpu_model(), "simd": _cpu_flags(), "logical_cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "caches": cache_sizes(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
            "python": platform.python_version(), "numpy": numpy.__version__,
            "env": {k: os.environ.get(k, "(unset)") for k in
                    BLAS_OVERRIDES + ("OMP_WAIT_POLICY", "OMP_NUM_THREADS",
                                      "OPENBLAS_NUM_THREADS")}}
    try:
        import importlib.metadata as md
        info["torch"] = md.version("torch")
    except Exception:
        pass
    return info


def cache_sizes() -> dict:
    """Data/unified cache sizes of CPU 0 from sysfs: {'L1d': bytes, 'L2': ..., 'L3': ...}."""
    out = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for d in sorted(os.listdir(base)):
            if not d.startswith("index"):
                continue
            with open(f"{base}/{d}/type") as f:
                kind = f.read().strip()
            if kind == "Instruction":
                continue
            with open(f"{base}/{d}/level") as f:
                level = f.read().strip()
            with open(f"{base}/{d}/size") as f:
                size = f.read().strip()
            mult = {"K": 1 << 10, "M": 1 << 20}.get(size[-1], 1)
            out[f"L{level}" + ("d" if kind == "Data" else "")] = int(size.rstrip("KM")) * mult
    except OSError:
        pass
    return out


def warn_overrides() -> str:
    """A warning line when the machine's OpenBLAS overrides are set, else ''."""
    set_ = [f"{k}={os.environ[k]}" for k in BLAS_OVERRIDES if k in os.environ]
    if not set_:
        return ""
    return ("WARNING: " + " ".join(set_) + " is set; it may select a slower BLAS kernel. "
            "Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/...")


def boost() -> str:
    """``--boost``: run this script (and its workers) in a new session whose autogroup has
    nice -20, so that other sessions on a shared machine take less of its CPU time (Linux
    with autogroup scheduling; writing the nice value needs root). Returns what was done,
    for the table header. Other processes still share caches and memory bandwidth."""
    try:
        os.setsid()
    except OSError:
        pass                      # already a session leader
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write("-20")
        with open("/proc/self/autogroup") as f:
            return "autogroup " + f.read().strip()
    except OSError as e:
        return f"not boosted ({e.strerror})"


def load() -> float:
    """The 1-minute load average (a busy shared machine makes every figure noisy)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


# --------------------------------------------------------------------------- timing


def time_calls(fn, repeats: int, warmup: int = 2, budget_s: float = 10.0) -> list:
    """Seconds of ``repeats`` calls of fn after ``warmup`` calls; at least 3 calls are timed,
    then the loop stops once ``budget_s`` is spent."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    for r in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if r >= 2 and time.perf_counter() - start > budget_s:
            break
    return times


def run_worker(script: str, args: list, env: dict = None) -> dict:
    """Run ``python script *args`` in a fresh process; its last stdout line is JSON."""
    out = subprocess.run([sys.executable, script] + args, capture_output=True, text=True,
                         env=env)
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def in_processes(script: str, candidates: dict, rounds: int = 3, log=None,
                 keep=()) -> dict:
    """Each candidate in its own processes, alternated: ``candidates`` maps a name to
    (argv for ``script``, env or None); each worker prints {"times": {key: [seconds...]},
    "blas": blas_info(), and any other entries}.

    Returns {name: {"times": {key: {"median": s, "process_medians": [...]}}, "blas": [...],
    and for each entry named in ``keep`` the list of its values, one per process}}: per key
    the median over the ``rounds`` processes of each process's median time."""
    names = list(candidates)
    seen = {n: {} for n in names}
    kept = {n: {k: [] for k in keep} for n in names}
    blas = {}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            argv, env = candidates[name]
            t0 = time.perf_counter()
            res = run_worker(script, argv, env)
            if log:
                log(f"  round {r + 1}/{rounds} {name}: {time.perf_counter() - t0:.0f} s, "
                    f"load {load():.2f}")
            blas[name] = res.get("blas", [])
            for k in keep:
                kept[name][k].append(res[k])
            for key, ts in res["times"].items():
                seen[name].setdefault(key, []).append(statistics.median(ts))
    return {n: dict(kept[n], times={k: {"median": statistics.median(v), "process_medians": v}
                                    for k, v in seen[n].items()}, blas=blas[n])
            for n in names}


def interleaved(candidates: dict, repeats: int = 7, warmup: int = 2,
                budget_s: float = 20.0) -> dict:
    """The documented extra: {name: median seconds} of ``candidates`` ({name: callable}) in
    this one process, one call of each per round (see the module note)."""
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    times = {name: [] for name in candidates}
    start = time.perf_counter()
    for r in range(repeats):
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        if r >= 2 and time.perf_counter() - start > budget_s:
            break
    return {name: statistics.median(ts) for name, ts in times.items()}


# --------------------------------------------------------------------------- the peak


def gemm_rates(threads: int, size: int = 2048, repeats: int = 10) -> dict:
    """Worker side: {"float32": [GFLOP/s ...], "float64": [...]} of NumPy's (size x size)
    GEMM on ``threads`` BLAS threads."""
    import numpy as np
    set_threads(threads)
    out = {}
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64"):
        a = rng.standard_normal((size, size)).astype(dtype)
        b = rng.standard_normal((size, size)).astype(dtype)
        ts = time_calls(lambda: a @ b, repeats, warmup=2, budget_s=10.0)
        out[dtype] = [2.0 * size ** 3 / t / 1e9 for t in ts]
    out["blas"] = blas_info()
    return out


def sgemm_peak(threads: int, rounds: int = 3, size: int = 2048) -> dict:
    """The machine's measured GEMM peak in GFLOP/s, {"float32", "float64", "blas"}: the
    median over ``rounds`` fresh processes of each one's median rate."""
    rates = {"float32": [], "float64": []}
    blas = None
    for _ in range(rounds):
        res = run_worker(os.path.abspath(__file__), ["--peak-worker", str(threads),
                                                     str(size)])
        for k in rates:
            rates[k].append(statistics.median(res[k]))
        blas = res["blas"]
    return {"float32": statistics.median(rates["float32"]),
            "float64": statistics.median(rates["float64"]), "size": size,
            "threads": threads, "blas": blas}


# --------------------------------------------------------------------------- output


def fmt_ms(seconds) -> str:
    if seconds is None:
        return "—"
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def fmt_ratio(a, b) -> str:
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}x"


def write_json(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, path)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--peak-worker":
        print(json.dumps(gemm_rates(int(sys.argv[2]), int(sys.argv[3]))))
    else:
        threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
        print(warn_overrides() or "BLAS overrides unset")
        peak = sgemm_peak(threads)
        print(f"GEMM peak, {threads} threads, n={peak['size']}: float32 "
              f"{peak['float32']:.0f} GFLOP/s, float64 {peak['float64']:.0f} GFLOP/s; "
              f"{blas_line(peak['blas'])}")
