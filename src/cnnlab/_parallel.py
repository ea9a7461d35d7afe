"""Thread count of the compiled kernels: ``set_num_threads`` / ``get_num_threads``.

How the pieces fit::

    default         OMP_NUM_THREADS (its first entry) if it is a positive integer, else the
                    CPUs this process may run on; capped at MAX_THREADS
    set_num_threads validates (a positive integer) and caps at MAX_THREADS, with a warning
    kernel_threads  what the compiled twin passes to its OpenMP loops on each call; it
                    notes that this process has started OpenMP threads
    fork            a child forked after its parent started OpenMP threads runs every
                    kernel on one thread, whatever it asks for

``MAX_THREADS`` is 4 threads per CPU of the machine (``os.cpu_count()``), at least 4:
more threads than that only add contention to these kernels, and past a few thousand GNU
OpenMP fails to create them ("libgomp: Thread creation failed", or a segfault).

GNU OpenMP's thread pool does not survive ``fork()``: in the child, a parallel region with
more than one thread waits forever for the parent's threads. So a child forked after the
parent ran a kernel on several threads stays on one (``set_num_threads`` there warns and
keeps 1), and so does torch's pool when torch is loaded. A child forked before any kernel
ran may use threads. Use the 'spawn' start method for parallel workers.
The NumPy twin ignores the thread count (NumPy's BLAS has its own threads).
"""
from __future__ import annotations

import numbers
import os
import sys
import warnings

__all__ = ["get_num_threads", "set_num_threads", "openmp_enabled", "kernel_threads",
           "MAX_THREADS"]

#: The most threads the compiled kernels use: 4 per CPU, at least 4.
MAX_THREADS = max(4, 4 * (os.cpu_count() or 1))


def _cap(n: int, source: str) -> int:
    if n > MAX_THREADS:
        warnings.warn(f"{source} asks for {n} threads; cnnlab's kernels use at most "
                      f"MAX_THREADS = {MAX_THREADS} (4 per CPU)", RuntimeWarning, stacklevel=3)
        return MAX_THREADS
    return n


def _default_threads() -> int:
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return _cap(int(env), f"OMP_NUM_THREADS={env}")
    try:
        return min(MAX_THREADS, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return min(MAX_THREADS, os.cpu_count() or 1)


_num_threads = _default_threads()
_started_threads = False      # this process has run a kernel on more than one thread
_single = False               # forked after the parent started OpenMP threads


def _after_fork_in_child() -> None:
    """A forked child: on one thread if the parent had started OpenMP threads (see the
    module docstring); torch's pool on one thread too, when torch is loaded."""
    global _num_threads, _single
    if _started_threads:
        _single = True
        _num_threads = 1
    torch = sys.modules.get("torch")        # torch's own pool: one thread in any child
    if torch is not None and hasattr(torch, "set_num_threads"):
        torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_num_threads() -> int:
    """Number of threads the compiled kernels use."""
    return _num_threads


def kernel_threads() -> int:
    """The thread count for a kernel about to run (the compiled twin calls this)."""
    global _started_threads
    if _num_threads > 1:
        _started_threads = True
    return _num_threads


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (a positive integer) in the compiled kernels from now on; more
    than ``MAX_THREADS`` gives MAX_THREADS, with a RuntimeWarning. In a process forked
    after its parent ran kernels on several threads, the kernels stay on one (a warning
    says so)."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"set_num_threads expects a positive int, got {n!r}")
    n = _cap(int(n), f"set_num_threads({n})")
    if _single and n > 1:
        warnings.warn("this process was forked after its parent ran OpenMP threads, and GNU "
                      "OpenMP cannot start threads in it: cnnlab's kernels stay on one thread "
                      "(use the 'spawn' start method for parallel workers)", RuntimeWarning,
                      stacklevel=2)
        n = 1
    _num_threads = n


#: GNU OpenMP's idle threads busy-wait before they sleep: by default 300,000 rounds, some
#: milliseconds after every kernel, on cores that NumPy's or BLAS's threads, or other
#: processes, need. Unless the user chose (OMP_WAIT_POLICY or GOMP_SPINCOUNT set), the
#: compiled twin loads its OpenMP runtime with this spin count (some tens of microseconds:
#: enough to catch the next kernel of a layer, not to hold a core between batches).
SPIN_COUNT = "1000"


def load_compiled():
    """Import and return the compiled twin (ImportError if it was not built). GNU OpenMP
    reads its settings when it loads, so GOMP_SPINCOUNT is set for the import only and the
    environment is restored after it (children and libraries loaded later see the user's)."""
    chosen = any(k in os.environ for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"))
    if not chosen:
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    try:
        from cnnlab import _core
    finally:
        if not chosen:
            os.environ.pop("GOMP_SPINCOUNT", None)
    return _core


def openmp_enabled() -> bool:
    """True when the compiled twin is built and was compiled with OpenMP."""
    try:
        core = load_compiled()
    except ImportError:
        return False
    return bool(core.openmp_enabled())
