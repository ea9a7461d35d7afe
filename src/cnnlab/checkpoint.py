"""Checkpoints: one ``.npz`` with a model's weights, what it was trained on, and what resuming
needs. Written atomically, read without pickle, checked key by key.

Layout of the archive (``np.savez``; every entry a plain array)::

    meta                          0-d str: JSON {format, version, arch, channels, image_size,
                                  class_names, dtype, normalization, epoch, optimizer (type,
                                  param_groups as torch's state_dict has them, step counts),
                                  rng (NumPy bit-generator states), settings (the run's
                                  options), history (per epoch)}
    model/<key>                   each entry of the model's state_dict (parameters and
                                  buffers), with torch's keys ("conv_layers.0.weight")
    optimizer/<name>/<buffer>     the optimizer's per-parameter arrays ("exp_avg", ...), for
                                  any cnnlab.optim optimizer: its state_dict, unpacked

``load`` rebuilds the named architecture from the meta data and then insists that every
array is there, has the model's shape and dtype (the checkpoint's float dtype for floating
entries), is finite, and that no other entry exists; each failure names the key.
``atomic_write`` is the writer used for every file a run leaves behind (temporary file in
the same folder, flush, fsync, ``os.replace``): a crash mid-write leaves the old file whole
and no temporary file.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import zipfile
from typing import Callable, Optional

import numpy as np

from . import models, optim
from .data import NORMALIZATION

__all__ = ["CheckpointError", "FORMAT", "VERSION", "atomic_write", "save", "load"]

FORMAT = "cnnlab-checkpoint"
VERSION = 2  # 2: cnnlab.nn modules (keys "conv_layers.0.weight", buffers)
_DTYPES = ("float32", "float64")
_OPTIMIZERS = tuple(n for n in optim.__all__ if n not in ("Optimizer", "lr_scheduler"))
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


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


def _generator_state(gen) -> dict:
    """The NumPy bit-generator state of a NumPy Generator or a cnnlab.Generator."""
    return (gen if isinstance(gen, np.random.Generator) else gen.numpy).bit_generator.state


def save(path, model, *, arch: str, class_names, image_size: int, channels: int,
         optimizer=None, epoch: int = 0, rng: Optional[dict] = None,
         settings: Optional[dict] = None, history: Optional[list] = None) -> None:
    """Write ``model`` (a network from :func:`cnnlab.models.build`) and, for resuming,
    ``optimizer`` (any cnnlab.optim optimizer over ``model.parameters()``), the number of
    finished ``epoch``s, ``rng`` ({name: NumPy or cnnlab Generator}), the run's
    ``settings`` and per-epoch ``history`` (JSON-able)."""
    state = {k: v.numpy(force=True) for k, v in model.state_dict().items()}
    dtypes = {a.dtype.name for a in state.values() if a.dtype.kind == "f"}
    if len(dtypes) != 1 or not dtypes <= set(_DTYPES):
        raise CheckpointError(f"{path}: parameters must all be float32 or all float64, got "
                              f"{sorted(dtypes)}")
    meta = {
        "format": FORMAT, "version": VERSION, "arch": arch,
        "channels": int(channels), "image_size": int(image_size),
        "class_names": [str(c) for c in class_names], "dtype": dtypes.pop(),
        "normalization": dict(NORMALIZATION), "epoch": int(epoch),
        "optimizer": None,
        "rng": {name: _generator_state(gen) for name, gen in (rng or {}).items()},
        "settings": settings or {}, "history": history or [],
    }
    arrays = {f"model/{k}": a for k, a in state.items()}
    if optimizer is not None:
        names = [n for n, _ in model.named_parameters()]
        packed = optimizer.state_dict()
        steps = [None] * len(names)
        for i, entry in packed["state"].items():
            for key, value in entry.items():
                if key == "step":
                    steps[i] = int(value.item())
                elif value is not None:
                    arrays[f"optimizer/{names[i]}/{key}"] = value.numpy(force=True)
        meta["optimizer"] = {"type": type(optimizer).__name__,
                             "param_groups": packed["param_groups"], "steps": steps}
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
                                             _OPTIMIZERS and isinstance(v.get("steps"), list)
                                             and isinstance(v.get("param_groups"), list)),
    }
    for key, ok in rules.items():
        if key not in meta:
            _fail(path, f"meta has no {key!r}")
        if not ok(meta[key]):
            _fail(path, f"meta {key!r} has an invalid value {meta[key]!r}")
    return meta


def _optimizer_meta(path, opt: dict, n: int) -> None:
    """The optimizer's groups cover the n parameters once each; steps are n counts/None."""
    steps = opt["steps"]
    if len(steps) != n or not all(s is None or (isinstance(s, int) and not isinstance(s, bool)
                                                and s >= 0) for s in steps):
        _fail(path, f"meta optimizer 'steps' must be {n} counts, got {steps!r}")
    indices = []
    for group in opt["param_groups"]:
        lr = group.get("lr") if isinstance(group, dict) else None
        if not isinstance(group, dict) or not isinstance(group.get("params"), list) or \
                not isinstance(lr, (int, float)) or isinstance(lr, bool) or \
                not (np.isfinite(lr) and lr >= 0):
            _fail(path, f"meta optimizer has an invalid parameter group {group!r}")
        indices += group["params"]
    if sorted(indices) != list(range(n)):
        _fail(path, f"meta optimizer groups must hold the parameters 0..{n - 1} once each, "
                    f"got {indices!r}")


def _optimizer_state(path, z, opt: dict, params: dict, dtype: str, expected: set) -> dict:
    """The optimizer's state_dict (torch's layout) from the meta data and its arrays."""
    names = list(params)
    _optimizer_meta(path, opt, len(names))
    state = {i: {"step": step} for i, step in enumerate(opt["steps"]) if step is not None}
    for key in z.files:
        if not key.startswith("optimizer/"):
            continue
        name, _, buffer = key[len("optimizer/"):].rpartition("/")
        if name not in params or not _IDENTIFIER.match(buffer) or buffer == "step":
            continue  # reported as an unexpected key
        i = names.index(name)
        if i not in state:
            _fail(path, f"key {key!r} belongs to a parameter without optimizer steps")
        state[i][buffer] = _get(path, z, key)
        _check_array(path, key, state[i][buffer], params[name].shape, dtype)
        expected.add(key)
    return {"state": state, "param_groups": opt["param_groups"]}


def load(path) -> dict:
    """Read and check a checkpoint written by :func:`save`. Returns a dict:

    model           the network (a ``CNNClassifier`` on "cpu"), in eval mode
    arch, class_names, image_size, channels, dtype, normalization, epoch, settings, history
    optimizer       None or {"type": "Adam" | "SGD" | ..., "state_dict": for the
                    optimizer's ``load_state_dict``}
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
                             len(meta["class_names"]), generator=0, dtype=dtype)
        expected = {"meta"}
        state = {}
        for name, t in model.state_dict().items():
            key = f"model/{name}"
            state[name] = _get(path, z, key)
            _check_array(path, key, state[name], t.shape,
                         dtype if t.dtype.is_floating_point else t.dtype.name)
            expected.add(key)
        model.load_state_dict(state)
        optimizer = None
        if meta["optimizer"] is not None:
            params = dict(model.named_parameters())
            optimizer = {"type": meta["optimizer"]["type"],
                         "state_dict": _optimizer_state(path, z, meta["optimizer"], params,
                                                        dtype, expected)}
        unexpected = sorted(set(z.files) - expected)
        if unexpected:
            _fail(path, f"unexpected key {unexpected[0]!r}"
                  + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
    model.eval()
    out = {k: meta[k] for k in ("arch", "class_names", "image_size", "channels", "dtype",
                                "normalization", "epoch", "rng", "settings", "history")}
    out.update(model=model, optimizer=optimizer, path=path)
    return out
