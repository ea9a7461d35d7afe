"""Timing method shared by the bench scripts.

Warm-up, then the median of several repeats, with the candidates interleaved (one run of
each per round) so that a slow moment of the machine hits them all alike. The thread
count is set once for everyone: cnnlab's OpenMP kernels, torch's intra-op pool and the
BLAS libraries (threadpoolctl).

Interleaving puts two OpenMP runtimes in one process (cnnlab's libgomp and the one torch
bundles). With the default wait policy each keeps its idle threads spinning after a
parallel region, and on a 2-core machine the spinners of one runtime take the cores the
other needs: measured here, torch's conv2d went from 6.3 ms alone to 32 ms when it alternated
with cnnlab's. So ``setup_env()`` sets ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep) for
both runtimes before either loads, unless the caller set it; the tables print the policy.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time


def setup_env() -> str:
    """Call before importing numpy, torch or cnnlab: the OpenMP wait policy in force.

    OpenBLAS (NumPy's and SciPy's) has its own pool; ``OPENBLAS_THREAD_TIMEOUT=4`` makes its
    idle threads sleep after a few cycles too, instead of spinning for about 0.1 s."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    return os.environ["OMP_WAIT_POLICY"]


def machine() -> dict:
    """CPU model, cores and library versions, printed beside every table."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import numpy
    import cnnlab
    info = {"cpu": model, "logical_cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "python": platform.python_version(), "numpy": numpy.__version__,
            "cnnlab_backends": cnnlab.backends(), "openmp": cnnlab.openmp_enabled(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
            "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT", "(default)")}
    try:
        import torch
        info["torch"] = torch.__version__
    except ImportError:
        pass
    return info


def set_threads(n: int) -> None:
    """The same thread count for cnnlab, torch and the BLAS libraries."""
    import cnnlab
    cnnlab.set_num_threads(n)
    try:
        import torch
        torch.set_num_threads(n)
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)
    except ImportError:
        pass


def interleaved(candidates: dict, repeats: int = 7, warmup: int = 2,
                budget_s: float = 20.0) -> dict:
    """{name: median seconds} of ``candidates`` ({name: zero-argument callable}).

    Rounds stop early (after at least 3) once ``budget_s`` is spent, so that slow
    candidates do not make the whole run take minutes.
    """
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
