"""Checkpoints: one ``.npz`` with a model's weights, what it was trained on, and what resuming
needs. Written atomically, read without pickle, checked key by key.

Layout of the archive (``np.savez``; every entry a plain array)::

    meta                          0-d str: JSON {format, version, arch, channels, image_size,
                                  class_names, dtype, normalization, epoch, optimizer (type,
                                  hyper-parameters, step counts), rng (NumPy bit-generator
                                  states), settings (the run's options), history (per epoch)}
    model/<name>                  each parameter, named as torch's state_dict ("0.weight")
    optimizer/<name>/<buffer>     the optimizer's per-parameter buffers ("exp_avg", ...)

``load`` rebuilds the named architecture from the meta data and then insists that every
array is there, has the parameter's shape and the checkpoint's dtype, is finite, and that no
other entry exists; each failure names the key. ``atomic_write`` is the writer used for
every file a run leaves behind (temporary file in the same folder, flush, fsync,
``os.replace``): a crash mid-write leaves the old file whole and no temporary file.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from typing import Callable, Optional

import numpy as np

from . import models
from .data import NORMALIZATION

__all__ = ["CheckpointError", "FORMAT", "VERSION", "atomic_write", "save", "load"]

FORMAT = "cnnlab-checkpoint"
VERSION = 1
_DTYPES = ("float32", "float64")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the bad key."""


def atomic_write(path, write: Callable, mode: str = "wb") -> None:
    """Create or replace ``path`` atomically: ``write(file)`` fills a temporary file in the
    same folder, which is flushed, fsynced and renamed over ``path``. On any failure the
    temporary file is removed and ``path`` is left as it was."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save(path, model, *, arch: str, class_names, image_size: int, channels: int,
         optimizer=None, epoch: int = 0, rng: Optional[dict] = None,
         settings: Optional[dict] = None, history: Optional[list] = None) -> None:
    """Write ``model`` (a network from :func:`cnnlab.models.build`) and, for resuming,
    ``optimizer`` (SGD/Adam), the number of finished ``epoch``s, ``rng`` ({name: NumPy
    Generator}), the run's ``settings`` and per-epoch ``history`` (JSON-able)."""
    named = list(model.named_parameters())
    dtypes = {p.numpy().dtype.name for _, p in named}
    if len(dtypes) != 1 or not dtypes <= set(_DTYPES):
        raise CheckpointError(f"{path}: parameters must all be float32 or all float64, got "
                              f"{sorted(dtypes)}")
    meta = {
        "format": FORMAT, "version": VERSION, "arch": arch,
        "channels": int(channels), "image_size": int(image_size),
        "class_names": [str(c) for c in class_names], "dtype": dtypes.pop(),
        "normalization": dict(NORMALIZATION), "epoch": int(epoch),
        "optimizer": None,
        "rng": {name: gen.bit_generator.state for name, gen in (rng or {}).items()},
        "settings": settings or {}, "history": history or [],
    }
    arrays = {f"model/{name}": p.numpy() for name, p in named}
    if optimizer is not None:
        state = optimizer.state_dict()
        meta["optimizer"] = {"type": type(optimizer).__name__, "hyper": state["hyper"],
                             "steps": [s["step"] for s in state["state"]]}
        for (name, _), s in zip(named, state["state"]):
            for buffer, value in s.items():
                if buffer != "step" and value is not None:
                    arrays[f"optimizer/{name}/{buffer}"] = value
    arrays["meta"] = np.array(json.dumps(meta))
    atomic_write(path, lambda f: np.savez(f, **arrays))


# --------------------------------------------------------------------------- loading


def _fail(path, message):
    raise CheckpointError(f"checkpoint {path}: {message}")


def _get(path, z, key):
    """z[key], with a pickled (object) entry or a damaged member named in the error."""
    if key not in z.files:
        _fail(path, f"missing key {key!r}")
    try:
        return z[key]
    except ValueError as e:  # "Object arrays cannot be loaded when allow_pickle=False"
        _fail(path, f"key {key!r} cannot be read without pickle ({e})")
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        _fail(path, f"key {key!r} is damaged ({e})")


def _check_array(path, key, a, shape, dtype):
    if tuple(a.shape) != tuple(shape):
        _fail(path, f"key {key!r} has shape {tuple(a.shape)}, expected {tuple(shape)}")
    if a.dtype.name != dtype:
        _fail(path, f"key {key!r} has dtype {a.dtype.name}, expected {dtype}")
    if not np.isfinite(a).all():
        _fail(path, f"key {key!r} holds NaN or Inf values")


def _meta(path, z) -> dict:
    raw = _get(path, z, "meta")
    if raw.dtype.kind != "U" or raw.ndim != 0:
        _fail(path, f"key 'meta' must be a 0-d string, got dtype {raw.dtype} shape {raw.shape}")
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError as e:
        _fail(path, f"key 'meta' is not valid JSON ({e})")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        _fail(path, f"not a {FORMAT} file (meta format {meta.get('format')!r})"
              if isinstance(meta, dict) else "key 'meta' is not a JSON object")
    if meta.get("version") != VERSION:
        _fail(path, f"meta version {meta.get('version')!r}; this cnnlab reads version {VERSION}")
    rules = {
        "arch": lambda v: v in models.ARCHITECTURES,
        "channels": lambda v: v in (1, 3),
        "image_size": lambda v: isinstance(v, int) and v >= 1,
        "class_names": lambda v: isinstance(v, list) and len(v) >= 1
        and all(isinstance(c, str) for c in v),
        "dtype": lambda v: v in _DTYPES,
        "normalization": lambda v: v == NORMALIZATION,
        "epoch": lambda v: isinstance(v, int) and v >= 0,
        "rng": lambda v: isinstance(v, dict),
        "settings": lambda v: isinstance(v, dict),
        "history": lambda v: isinstance(v, list),
        "optimizer": lambda v: v is None or (isinstance(v, dict) and v.get("type") in
                                             ("SGD", "Adam") and isinstance(v.get("hyper"), dict)
                                             and isinstance(v.get("steps"), list)),
    }
    for key, ok in rules.items():
        if key not in meta:
            _fail(path, f"meta has no {key!r}")
        if not ok(meta[key]):
            _fail(path, f"meta {key!r} has an invalid value {meta[key]!r}")
    return meta


def load(path) -> dict:
    """Read and check a checkpoint written by :func:`save`. Returns a dict:

    model           the network, a ``Sequential`` of NumPy parameters, in eval mode
    arch, class_names, image_size, channels, dtype, normalization, epoch, settings, history
    optimizer       None or {"type": "Adam" | "SGD", "state_dict": for load_state_dict}
    rng             {name: NumPy bit-generator state} (``Generator.bit_generator.state = s``)

    Raises CheckpointError naming the file and the key that is missing or wrong.
    """
    path = os.fspath(path)
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"checkpoint {path}: not a .npz archive ({e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise CheckpointError(f"checkpoint {path}: a single .npy array, not a .npz archive")
    with z:
        meta = _meta(path, z)
        dtype = meta["dtype"]
        model = models.build(meta["arch"], meta["channels"], meta["image_size"],
                             len(meta["class_names"]), rng=0, dtype=dtype)
        named = list(model.named_parameters())
        expected = {"meta"}
        state = {}
        for name, p in named:
            key = f"model/{name}"
            state[name] = _get(path, z, key)
            _check_array(path, key, state[name], p.shape, dtype)
            expected.add(key)
        model.load_state_dict(state)
        optimizer = None
        if meta["optimizer"] is not None:
            opt = meta["optimizer"]
            from .optim import Adam, SGD
            buffers = {"SGD": SGD, "Adam": Adam}[opt["type"]]._buffers
            steps = opt["steps"]
            if len(steps) != len(named) or not all(isinstance(s, int) and s >= 0 for s in steps):
                _fail(path, f"meta optimizer 'steps' must be {len(named)} counts, got {steps!r}")
            per_param = []
            for (name, p), step in zip(named, steps):
                entry = {"step": step}
                for buffer in buffers:
                    key = f"optimizer/{name}/{buffer}"
                    entry[buffer] = None
                    if key in z.files:
                        entry[buffer] = _get(path, z, key)
                        _check_array(path, key, entry[buffer], p.shape, dtype)
                        expected.add(key)
                per_param.append(entry)
            optimizer = {"type": opt["type"],
                         "state_dict": {"hyper": opt["hyper"], "state": per_param}}
        unexpected = sorted(set(z.files) - expected)
        if unexpected:
            _fail(path, f"unexpected key {unexpected[0]!r}"
                  + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
    model.eval()
    out = {k: meta[k] for k in ("arch", "class_names", "image_size", "channels", "dtype",
                                "normalization", "epoch", "rng", "settings", "history")}
    out.update(model=model, optimizer=optimizer, path=path)
    return out
