"""Backend selection: which twin runs an operation. The only place that decides.

Twins (same function names, same signatures, see ``cnnlab/_fallback.py`` for the contract):

    "cython"  cnnlab._core      compiled Cython + OpenMP kernels (NumPy arrays)
    "numpy"   cnnlab._fallback  vectorised NumPy, used where nothing was compiled
    "torch"   cnnlab._torch     torch.nn.functional, on any device

The array type decides first: torch tensors always go to the torch twin and come back as
tensors on their device. NumPy arrays go to the selected backend; if that is "torch", they
travel through torch on the CPU and come back as NumPy arrays.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
from functools import lru_cache

from . import _parallel

__all__ = ["backends", "get_backend", "set_backend", "use_backend", "placement"]

_MODULES = {"cython": "cnnlab._core", "numpy": "cnnlab._fallback", "torch": "cnnlab._torch"}


@lru_cache(maxsize=None)
def _load(name: str):
    """The twin module, or None when it cannot be imported here."""
    try:
        if name == "cython":
            return _parallel.load_compiled()
        return importlib.import_module(_MODULES[name])
    except ImportError:
        return None


def backends() -> list:
    """Names of the backends available in this installation, fastest first."""
    return [name for name in _MODULES if _load(name) is not None]


def _check_name(name: str) -> str:
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(_MODULES)}")
    if _load(name) is None:
        hint = {"cython": "the compiled extension was not built (pure-Python install?)",
                "torch": "torch is not installed (pip install cnnlab[torch])"}.get(name, "")
        raise ValueError(f"backend {name!r} is not available: {hint}; available: {backends()}")
    return name


def _initial() -> str:
    env = os.environ.get("CNNLAB_BACKEND", "").strip()
    if env:
        return _check_name(env)
    return "cython" if _load("cython") is not None else "numpy"


_current = contextvars.ContextVar("cnnlab_backend", default=None)
_default = [None]


def get_backend() -> str:
    """The backend NumPy arrays go to: "cython", "numpy" or "torch"."""
    name = _current.get()
    if name is None:
        if _default[0] is None:
            _default[0] = _initial()
        name = _default[0]
    return name


def set_backend(name: str) -> None:
    """Select the backend for NumPy arrays, for the whole process."""
    _default[0] = _check_name(name)
    _current.set(None)


@contextlib.contextmanager
def use_backend(name: str):
    """``with cnnlab.use_backend("numpy"): ...`` selects a backend inside the block only
    (per thread / per asyncio task)."""
    token = _current.set(_check_name(name))
    try:
        yield name
    finally:
        _current.reset(token)


def placement(backend=None, device=None):
    """(backend, torch device or None) for the commands' ``--backend`` / ``--device``.

    A device is a torch device, so naming one selects the torch backend (another backend
    with it is an error); the torch backend without a device runs on the CPU. NumPy
    backends get None. Raises ValueError with a one-line reason."""
    if device is not None:
        if backend not in (None, "torch"):
            raise ValueError(f"--device {device} needs --backend torch, not {backend}")
        backend = "torch"
    backend = backend or get_backend()
    if backend not in backends():
        raise ValueError(f"backend {backend!r} is not available here; available: "
                         f"{', '.join(backends())}")
    if backend != "torch":
        return backend, None
    if device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: CUDA is not available "
                             "(torch.cuda.is_available() is False)")
    return backend, device or "cpu"


def is_tensor(a) -> bool:
    """True for a torch.Tensor, without importing torch when it is not loaded yet."""
    t = type(a)
    return t.__module__.startswith("torch") and hasattr(a, "device")


def twin_for(op: str, *arrays):
    """(twin module, kind) for these operands; kind is "numpy", "torch" or "numpy->torch".

    All non-None operands must be of one family (NumPy arrays or torch tensors)."""
    import numpy as np

    arrays_, tensors = 0, 0          # a plain loop: this runs on every call of every op
    for a in arrays:
        if a is None:
            continue
        if isinstance(a, np.ndarray):
            arrays_ += 1
        elif is_tensor(a):
            tensors += 1
        else:
            arrays_ = -1
            break
    if arrays_ == 0:
        return _load("torch") or _require_torch(), "torch"
    if tensors or arrays_ < 0:
        kinds = ", ".join(type(a).__name__ for a in arrays if a is not None)
        raise TypeError(f"{op}: expected NumPy arrays or torch tensors, all of one kind, got "
                        f"({kinds})")
    name = get_backend()
    if name == "torch":
        return _load("torch"), "numpy->torch"
    return _load(name), "numpy"


def _require_torch():  # pragma: no cover - a tensor without torch cannot exist
    raise ImportError("cnnlab._torch could not be imported")
