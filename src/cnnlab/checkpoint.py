"""Checkpoints: one ``.safetensors`` file (written by :func:`cnnlab.serialization.save`) with
a model's weights, what it was trained on, and what resuming needs. Written atomically, read
without pickle, checked entry by entry before anything large is allocated.

What the file holds (tensors in the safetensors body, the rest as the JSON structure in its
header)::

    conv_layers.0.weight, ...     the model's state_dict (parameters and buffers) under
                                  torch's own keys: ``safetensors.torch.load_file(path)``
                                  loads into the equal torch model (``strict=False``: the
                                  file also holds the optimizer's tensors)
    optimizer.state.<i>.<name>    the optimizer's per-parameter tensors ("exp_avg", "step")
    structure                     format, version, arch, channels, image_size, class_names,
                                  dtype, normalization, epoch, optimizer (type, state with
                                  the tensors above, param_groups as torch's state_dict
                                  has them), rng (NumPy bit-generator states), settings
                                  (the run's options), history (per epoch), training_data
                                  ({"name", "images", "stats"}: ``imagestats``) or None

``load`` reads the header only (``serialization.open_lazy``), checks every entry and
setting, builds the declared network in steps that never allocate more than about four
times the weights the file holds, compares each declared tensor's shape and dtype with the
network's, and only then reads the tensors (each must be finite). Every refusal, a
``MemoryError`` included, is one :class:`CheckpointError` naming the file and the entry.
``atomic_write`` (temporary file, fsync, ``os.replace``) is the writer of every file a run
leaves behind.
"""
from __future__ import annotations

import inspect
import math
import os
import re
import stat
import zipfile
from typing import Optional

import numpy as np

from . import imagestats, models, optim
from ._checks import ArgumentError
from .data import NORMALIZATION
from .serialization import Declared, LoadError, atomic_write, open_lazy, save as _save_file

__all__ = ["CheckpointError", "FORMAT", "VERSION", "atomic_write", "save", "load",
           "MAX_IMAGE_SIZE", "MAX_CLASSES"]

FORMAT = "cnnlab-checkpoint"
VERSION = 3  # 3: one .safetensors file (2: .npz with cnnlab.nn keys)
MAX_IMAGE_SIZE = 4096
MAX_CLASSES = 1000
MAX_HEADER_BYTES = 4 * 2**20   # the JSON of a checkpoint: class names, history, settings
_DTYPES = {"float32": "F32", "float64": "F64"}
_OPTIMIZERS = tuple(n for n in optim.__all__ if n not in ("Optimizer", "lr_scheduler"))
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RETRAIN = ("the checkpoint format changed to one .safetensors file; train again with "
            "python -m cnnlab.train to get a new checkpoint")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the bad key."""


def _generator_state(gen) -> dict:
    """The NumPy bit-generator state of a NumPy Generator or a cnnlab.Generator."""
    return (gen if isinstance(gen, np.random.Generator) else gen.numpy).bit_generator.state


def save(path, model, *, arch: str, class_names, image_size: int, channels: int,
         optimizer=None, epoch: int = 0, rng: Optional[dict] = None,
         settings: Optional[dict] = None, history: Optional[list] = None,
         training_data: Optional[dict] = None) -> None:
    """Write ``model`` (a network from :func:`cnnlab.models.build`) and, for resuming,
    ``optimizer`` (any cnnlab.optim optimizer over ``model.parameters()``), the number of
    finished ``epoch``s, ``rng`` ({name: NumPy or cnnlab Generator}), the run's
    ``settings`` and per-epoch ``history`` (JSON-able), and ``training_data``
    (``imagestats.training_data(name, images)``: what a prediction compares images with)."""
    state = model.state_dict()
    dtypes = {np.dtype(t.dtype.numpy).name for t in state.values()
              if t.dtype.is_floating_point}
    if len(dtypes) != 1 or not dtypes <= set(_DTYPES):
        raise CheckpointError(f"{path}: parameters must all be float32 or all float64, got "
                              f"{sorted(dtypes)}")
    if training_data is not None:
        try:
            imagestats.check_training_data(training_data)
        except ValueError as e:
            raise CheckpointError(f"{path}: training_data {e}") from None
    packed = None
    if optimizer is not None:
        packed = dict(optimizer.state_dict(), type=type(optimizer).__name__)
    obj = {
        "format": FORMAT, "version": VERSION, "arch": arch,
        "channels": int(channels), "image_size": int(image_size),
        "class_names": [str(c) for c in class_names], "dtype": dtypes.pop(),
        "normalization": dict(NORMALIZATION), "epoch": int(epoch),
        "model": state, "optimizer": packed,
        "rng": {name: _generator_state(gen) for name, gen in (rng or {}).items()},
        "settings": settings or {}, "history": history or [],
        "training_data": training_data,
    }
    _save_file(obj, path, unprefixed=("model",))


# --------------------------------------------------------------------------- loading


def _fail(path, message):
    raise CheckpointError(f"checkpoint {path}: {message}")


def _int(v, low=0, high=None) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low and \
        (high is None or v <= high)


def _real(v, low=0.0, high=math.inf, open_low=False) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) \
        and (v > low if open_low else v >= low) and v <= high


def _scalar(v) -> bool:
    return v is None or isinstance(v, (bool, int, str)) or (isinstance(v, float))


def _class_names(v) -> bool:
    return isinstance(v, list) and 1 <= len(v) <= MAX_CLASSES and \
        all(isinstance(c, str) and 0 < len(c) <= 255 for c in v) and len(set(v)) == len(v)


def _history(v) -> bool:
    return isinstance(v, list) and all(
        isinstance(e, dict) and len(e) <= 64 and
        all(isinstance(k, str) and _scalar(x) for k, x in e.items()) for e in v)


# Each top-level entry of the structure and the rule its value must meet.
_RULES = {
    "arch": lambda v: v in models.ARCHITECTURES,
    "channels": lambda v: v in (1, 3) and not isinstance(v, bool),
    "image_size": lambda v: _int(v, 1, MAX_IMAGE_SIZE),
    "class_names": _class_names,
    "dtype": lambda v: v in _DTYPES,
    "normalization": lambda v: v == NORMALIZATION,
    "epoch": lambda v: _int(v),
    "model": lambda v: isinstance(v, dict) and all(isinstance(t, Declared)
                                                   for t in v.values()),
    "optimizer": lambda v: v is None or (isinstance(v, dict) and
                                         set(v) == {"type", "state", "param_groups"}),
    "rng": lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v),
    "settings": lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v),
    "history": _history,
    "training_data": lambda v: v is None or isinstance(v, dict),
}

# The run's settings that python -m cnnlab.train stores, and their rules; other settings
# must be plain JSON values.
_SETTINGS = {
    "data": lambda v: v is None or isinstance(v, str),
    "arch": _RULES["arch"], "channels": _RULES["channels"],
    "image_size": _RULES["image_size"], "dtype": _RULES["dtype"],
    "epochs": lambda v: _int(v, 1), "batch_size": lambda v: _int(v, 1, 2**31),
    "lr": lambda v: _real(v, open_low=True), "optimizer": lambda v: v in ("adam", "sgd"),
    "momentum": _real, "weight_decay": _real, "seed": lambda v: _int(v, -2**63, 2**64),
    "test_fraction": lambda v: _real(v, 0.0, 1.0, open_low=True) and v < 1,
    "limit": lambda v: v is None or _int(v, 1), "augment": lambda v: v in ("flip", "none"),
    "schedule": lambda v: v in ("cosine", "constant"),
}


def _check_structure(path, obj) -> None:
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        _fail(path, f"not a {FORMAT} file (a safetensors file without cnnlab's checkpoint "
                    f"entries; cnnlab.load reads plain weights)")
    if obj.get("version") != VERSION:
        _fail(path, f"version {str(obj.get('version'))[:20]}; this cnnlab reads version "
                    f"{VERSION}")
    for key, ok in _RULES.items():
        if key not in obj:
            _fail(path, f"has no {key!r}")
        if not ok(obj[key]):
            _fail(path, f"{key!r} has an invalid value {_short(obj[key])}")
    extra = sorted(set(map(str, obj)) - set(_RULES) - {"format", "version"})
    if extra:
        _fail(path, f"unexpected entry {extra[0]!r}")
    for key, value in obj["settings"].items():
        ok = _SETTINGS.get(key, _scalar)
        if not ok(value):
            _fail(path, f"setting {key!r} has an invalid value {_short(value)}")
    for name, state in obj["rng"].items():
        _check_rng(path, name, state)
    if obj["training_data"] is not None:
        try:
            imagestats.check_training_data(obj["training_data"])
        except ValueError as e:
            _fail(path, f"'training_data' {e}")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_rng(path, name, state) -> None:
    """A NumPy PCG64 state, tried on a fresh bit generator."""
    try:
        if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
            raise ValueError("not a PCG64 state")
        np.random.PCG64().state = state
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        _fail(path, f"rng {name!r} is not a NumPy PCG64 state ({str(e)[:80]})")


def _build(path, obj) -> "models.CNNClassifier":
    """The declared network, built at growing image sizes so that a size the file's
    weights cannot justify is refused before it is allocated: the number of weights grows
    with the image size, and each step at most quadruples it."""
    declared = sum(math.prod(t.shape) for t in obj["model"].values())
    target, size = obj["image_size"], min(obj["image_size"], 32)
    while True:
        try:
            model = models.build(obj["arch"], obj["channels"], size, len(obj["class_names"]),
                                 generator=0, dtype=obj["dtype"])
        except ArgumentError as e:
            if size == target:
                _fail(path, f"'image_size' {target} does not fit the network ({e})")
            model = None
        if model is not None and size == target:
            return model            # its tensors are compared with the file's next
        if model is not None and sum(math.prod(t.shape) for t in
                                     model.state_dict().values()) > declared:
            _fail(path, f"its format (arch {obj['arch']!r}, image_size {target}, "
                        f"{len(obj['class_names'])} classes) needs more weights than the "
                        f"{declared} the file holds")
        size = min(2 * size, target)


def _check_declared(path, key, d, shape, dtype) -> None:
    if tuple(d.shape) != tuple(shape):
        _fail(path, f"tensor {key!r} has shape {tuple(d.shape)}, expected {tuple(shape)}")
    if d.dtype != dtype:
        _fail(path, f"tensor {key!r} has dtype {d.dtype}, expected {dtype}")


def _finite(path, key, t):
    a = t.numpy()
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        _fail(path, f"tensor {key!r} holds NaN or Inf values")
    return t


def _dtype_code(t) -> str:
    return {"float32": "F32", "float64": "F64", "int64": "I64", "int32": "I32",
            "bool": "BOOL", "uint8": "U8"}[np.dtype(t.dtype.numpy).name]


# What torch's (and cnnlab's) learning-rate schedulers add to a parameter group.
SCHEDULER_KEYS = frozenset({"initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum"})


def _optimizer(path, spec, params: dict, dtype: str, read) -> dict:
    """The optimizer's state_dict (torch's layout): hyper-parameters tried on a fresh
    optimizer of its type, indices and tensors checked against the parameters."""
    kind, groups, state = spec["type"], spec["param_groups"], spec["state"]
    if kind not in _OPTIMIZERS:
        _fail(path, f"optimizer 'type' {_short(kind)} is not a cnnlab.optim optimizer")
    plist = list(params.values())
    indices = []
    if not isinstance(groups, list) or not groups:
        _fail(path, "optimizer 'param_groups' must be a non-empty list")
    for g in groups:
        if not isinstance(g, dict) or not isinstance(g.get("params"), list):
            _fail(path, f"optimizer has an invalid parameter group {_short(g)}")
        hyper = {k: v for k, v in g.items() if k != "params"}
        bad = [k for k, v in hyper.items() if not isinstance(k, str) or not (
            v is None or isinstance(v, bool) or _real(v, -math.inf) or (
                isinstance(v, (list, tuple)) and len(v) <= 4 and all(_real(x, -math.inf)
                                                                      for x in v)))]
        if bad:
            _fail(path, f"optimizer hyper-parameter {bad[0]!r} has an invalid value "
                        f"{_short(hyper[bad[0]])}")
        cls = getattr(optim, kind)
        unknown = sorted(set(hyper) - set(cls(plist[:1]).param_groups[0]) - SCHEDULER_KEYS)
        if unknown:
            _fail(path, f"optimizer hyper-parameter {unknown[0]!r} is not one of {kind}'s")
        accepted = inspect.signature(cls).parameters
        try:                # the constructor checks each value it takes, as torch's does
            cls(plist[:1], **{k: v for k, v in hyper.items() if k in accepted})
        except (TypeError, ValueError) as e:
            _fail(path, f"optimizer {kind} refuses its hyper-parameters ({str(e)[:100]})")
        indices += g["params"]
    if sorted(map(str, indices)) != sorted(map(str, range(len(plist)))) or \
            not all(_int(i) for i in indices):
        _fail(path, f"optimizer groups must hold the parameters 0..{len(plist) - 1} once "
                    f"each, got {_short(indices)}")
    if not isinstance(state, dict) or not all(_int(i, 0, len(plist) - 1) for i in state):
        _fail(path, "optimizer 'state' must map parameter indices to their buffers")
    out = {}
    for i, entry in state.items():
        p = plist[i]
        if not isinstance(entry, dict):
            _fail(path, f"optimizer state {i} is not a dict")
        out[i] = {}
        for name, d in entry.items():
            key = f"optimizer.state.{i}.{name}"
            if not (isinstance(name, str) and _IDENTIFIER.match(name)):
                _fail(path, f"optimizer state {i} has an invalid entry {_short(name)}")
            if name == "step":
                if not isinstance(d, Declared) or d.shape != () or d.dtype not in _DTYPES.values():
                    _fail(path, f"{key!r} must be a 0-d float tensor")
                step = float(read(d).item())
                if not (math.isfinite(step) and step >= 0 and step == int(step)):
                    _fail(path, f"{key!r} is not a step count ({step})")
                out[i][name] = read(d)
            elif d is None:
                out[i][name] = None
            elif isinstance(d, Declared):
                _check_declared(path, key, d, p.shape, _DTYPES[dtype])
                out[i][name] = _finite(path, key, read(d))
            else:
                _fail(path, f"optimizer state {key!r} has an invalid value {_short(d)}")
    state_dict = {"state": out, "param_groups": groups}
    try:        # a fresh optimizer of its type takes it, as train's --resume will
        trial = getattr(optim, kind)([
            dict({k: v for k, v in g.items() if k != "params"},
                 params=[plist[i] for i in g["params"]]) for g in groups])
        trial.load_state_dict(state_dict)
    except (TypeError, ValueError, KeyError) as e:
        _fail(path, f"optimizer {kind} refuses its settings or state ({str(e)[:100]})")
    return {"type": kind, "state_dict": state_dict}


def _old_format(path) -> bool:
    """An .npz checkpoint of an earlier cnnlab (a zip archive holding meta.npy)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):   # a FIFO would block open()
            return False
        with zipfile.ZipFile(path) as z:
            return "meta.npy" in z.namelist()
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return False


def load(path) -> dict:
    """Read and check a checkpoint written by :func:`save`. Returns a dict:

    model           the network (a ``CNNClassifier`` on "cpu"), in eval mode
    arch, class_names, image_size, channels, dtype, normalization, epoch, settings, history
    optimizer       None or {"type": "Adam" | "SGD" | ..., "state_dict": for the
                    optimizer's ``load_state_dict``}
    rng             {name: NumPy bit-generator state} (``Generator.bit_generator.state = s``)
    training_data   None or {"name", "images", "stats"} (see ``imagestats``)
    path            the file

    Raises CheckpointError, one line naming the file and the entry that is missing or wrong,
    for any file it will not use (a ``MemoryError`` while reading included).
    """
    path = os.fspath(path)
    try:
        return _load(path)
    except LoadError as e:
        if _old_format(path):
            _fail(path, f"an old .npz checkpoint: {_RETRAIN}")
        raise CheckpointError(f"checkpoint {e}") from None
    except MemoryError:
        _fail(path, "too large to load into memory")
    except RecursionError:
        _fail(path, "nested too deeply")


def _load(path) -> dict:
    with open_lazy(path, MAX_HEADER_BYTES) as (obj, read):
        _check_structure(path, obj)
        model = _build(path, obj)
        dtype = obj["dtype"]
        files = obj["model"]
        state = {}
        for key, t in model.state_dict().items():
            if key not in files:
                _fail(path, f"missing tensor {key!r}")
            _check_declared(path, key, files[key], t.shape,
                            _DTYPES[dtype] if t.dtype.is_floating_point else _dtype_code(t))
        extra = sorted(set(files) - set(state) - set(model.state_dict()))
        if extra:
            _fail(path, f"unexpected tensor {extra[0]!r}"
                  + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
        for key in model.state_dict():
            state[key] = _finite(path, key, read(files[key]))
        model.load_state_dict(state)
        optimizer = None
        if obj["optimizer"] is not None:
            optimizer = _optimizer(path, obj["optimizer"], dict(model.named_parameters()),
                                   dtype, read)
    model.eval()
    out = {k: obj[k] for k in ("arch", "class_names", "image_size", "channels", "dtype",
                               "normalization", "epoch", "rng", "settings", "history",
                               "training_data")}
    out.update(model=model, optimizer=optimizer, path=path)
    return out
