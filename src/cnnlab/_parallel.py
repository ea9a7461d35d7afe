"""Thread count of the compiled kernels: ``set_num_threads`` / ``get_num_threads``.

The default honours ``OMP_NUM_THREADS`` and otherwise uses the CPUs this process may run
on. A forked child process starts on one thread (GNU OpenMP is not fork-safe). The compiled twin reads ``get_num_threads()`` on every call and passes it to its OpenMP
``prange`` loops; the NumPy twin ignores it (NumPy's BLAS has its own threads).
"""
from __future__ import annotations

import os
import sys

__all__ = ["get_num_threads", "set_num_threads", "openmp_enabled"]


def _default_threads() -> int:
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


_num_threads = _default_threads()


def _after_fork_in_child() -> None:
    """GNU OpenMP's thread pool does not survive fork(): a child that opens a parallel
    region with more than one thread can hang. So a forked child starts on one thread
    (torch's pool too, when torch is loaded); use the 'spawn' start method for parallel
    workers."""
    global _num_threads
    _num_threads = 1
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):
        torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_num_threads() -> int:
    """Number of threads the compiled kernels use."""
    return _num_threads


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (``n >= 1``) in the compiled kernels from now on."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads expects a positive int, got {n!r}")
    _num_threads = n


def openmp_enabled() -> bool:
    """True when the compiled twin is built and was compiled with OpenMP."""
    try:
        from cnnlab import _core
    except ImportError:
        return False
    return bool(_core.openmp_enabled())
