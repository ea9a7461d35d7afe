"""glibc's malloc, told to keep freed activation memory for the next training step.

The autograd frees a step's saved activations when its backward ends, as torch does. With
glibc's default, dynamic thresholds the freed top of the heap (megabytes of conv outputs)
is returned to the kernel and the next forward faults the same pages in again, zeroed:
measured on the lab network at 28x28, about 55,000 extra page faults and ~20% of an
epoch's CPU time (and a loop written over ``cnnlab.functional`` pays the same: 2.19 s
against 1.41 s for an epoch at 64x64x3). ``keep_freed_memory()`` (called by the first
``backward()`` and the first ``cnnlab.functional`` call of a process)
sets the two thresholds to the ceiling glibc's own dynamic rule reaches after freeing a
32 MiB block: arrays up to 32 MiB come from the heap, and up to 64 MiB of free heap top is
kept. Nothing happens off glibc, when ``CNNLAB_MALLOC_TUNING=0``, or when the process
already set one of glibc's ``MALLOC_*_`` variables.
"""
from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 << 20   # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
_TRIM_THRESHOLD = 2 * _MMAP_THRESHOLD  # what glibc pairs with it
_USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_",
                  "MALLOC_MMAP_MAX_")
_state = {"done": False, "applied": False}


def keep_freed_memory() -> bool:
    """Apply the settings once per process; True when they are in force."""
    if _state["done"]:
        return _state["applied"]
    _state["done"] = True
    if os.environ.get("CNNLAB_MALLOC_TUNING", "1") == "0" or \
            any(k in os.environ for k in _USER_SETTINGS) or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _state["applied"] = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return _state["applied"]
