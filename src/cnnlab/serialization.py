"""``cnnlab.save`` / ``cnnlab.load``: tensors in ``.safetensors`` files, never pickle.

How the pieces fit::

    save(obj, path)     obj: a state_dict ({name: Tensor}) or any nest of dicts, lists and
                        tuples holding Tensors (or NumPy arrays / torch tensors), numbers,
                        strings, bools and None
      tensors           stored under their state_dict key ("features.0.weight"), or for a
                        nest under their dotted path ("model.features.0.weight",
                        "optimizer.state.0.exp_avg"); the file is a plain safetensors file,
                        so ``safetensors.torch.load_file(path)`` reads a saved state_dict
                        straight into torch
      structure         the nest with each tensor replaced by its name, as strict JSON in
                        the header's metadata ("cnnlab.structure")
    load(path)          the same object back, tensors as cnnlab Tensors on ``map_location``

A file from elsewhere is read warily: only a regular file; the header's declared length is
checked against ``max_header_bytes`` and the file size before anything is parsed; the
safetensors library checks that every tensor lies inside the file, so no tensor can claim
more memory than the file holds; dtypes cnnlab has not, a structure that names missing
tensors and malformed JSON are refused. Every refusal is a :class:`LoadError` with a
one-line message naming the file.
"""
from __future__ import annotations

import json
import math
import os
import stat
from typing import Optional

import numpy as np

from ._array import place, to_numpy
from ._types import as_device
from .checkpoint import atomic_write
from .tensor import Tensor

__all__ = ["save", "load", "LoadError", "MAX_HEADER_BYTES"]

STRUCTURE_KEY = "cnnlab.structure"
MAX_HEADER_BYTES = 16 * 2**20
_DTYPES = {"F64": np.float64, "F32": np.float32, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


class LoadError(ValueError):
    """A file :func:`load` refuses; the message names the file and what is wrong."""


# --------------------------------------------------------------------------- saving


def _is_tensor_like(value) -> bool:
    return isinstance(value, (Tensor, np.ndarray)) or (
        type(value).__module__.startswith("torch") and hasattr(value, "device"))


class _Writer:
    """Walks a nest: collects its tensors by name and returns its JSON structure."""

    def __init__(self):
        self.arrays: dict = {}
        self.names_by_id: dict = {}

    def name_for(self, value, path: str) -> str:
        if id(value) in self.names_by_id:          # the same tensor twice: stored once
            return self.names_by_id[id(value)]
        name, n = path or "tensor", 1
        while name in self.arrays:
            name, n = f"{path}~{n}", n + 1
        array = to_numpy(value._data if isinstance(value, Tensor) else value)
        if array.dtype.type not in _DTYPES.values():
            raise TypeError(f"cnnlab.save: tensor {name!r} has dtype {array.dtype}, which "
                            f"cnnlab cannot store")
        self.arrays[name] = np.ascontiguousarray(array)
        self.names_by_id[id(value)] = name
        return name

    def encode(self, value, path: str = ""):
        def child(key):
            return f"{path}.{key}" if path else str(key)

        if _is_tensor_like(value):
            return {"tensor": self.name_for(value, path)}
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            return float(value) if math.isfinite(value) else {"float": repr(float(value))}
        if isinstance(value, dict):
            for key in value:
                if not (key is None or isinstance(key, (str, int, bool)) or (
                        isinstance(key, float) and math.isfinite(key))):
                    raise TypeError(f"cnnlab.save: dict key {key!r} at {path or 'the top'} "
                                    f"is not a str, int, finite float, bool or None")
            return {"dict": [[self.encode(k), self.encode(v, child(k))]
                             for k, v in value.items()]}
        if isinstance(value, (list, tuple)):
            items = [self.encode(v, child(i)) for i, v in enumerate(value)]
            return items if isinstance(value, list) else {"tuple": items}
        raise TypeError(f"cnnlab.save: cannot store {type(value).__name__} (at "
                        f"{path or 'the top'}); cnnlab files hold tensors, numbers, strings, "
                        f"bools, None, and dicts, lists and tuples of them (no pickle)")


def save(obj, f, metadata: Optional[dict] = None) -> None:
    """Write ``obj`` (see the module docstring) to the path ``f`` as safetensors,
    atomically. ``metadata`` ({str: str}) is added to the file's header."""
    import safetensors.numpy

    writer = _Writer()
    structure = writer.encode(obj)
    header = {"format": "pt", STRUCTURE_KEY: json.dumps(structure, allow_nan=False)}
    for key, value in (metadata or {}).items():
        if not (isinstance(key, str) and isinstance(value, str)) or key == STRUCTURE_KEY:
            raise TypeError(f"cnnlab.save: metadata must map str to str (and not use "
                            f"{STRUCTURE_KEY!r}), got {key!r}: {type(value).__name__}")
        header[key] = value
    blob = safetensors.numpy.save(writer.arrays, metadata=header)
    atomic_write(f, lambda out: out.write(blob))


# --------------------------------------------------------------------------- loading


def _fail(path, message: str):
    raise LoadError(f"{path}: {message}")


def _check_file(path: str, max_header_bytes: int) -> None:
    """Refuse what is not a regular safetensors file before any parsing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        _fail(path, "no such file")
    except OSError as e:
        _fail(path, f"cannot be read ({e.strerror})")
    if not stat.S_ISREG(st.st_mode):
        _fail(path, "not a regular file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as e:
        _fail(path, f"cannot be read ({e.strerror})")
    if head[:4] == b"PK\x03\x04":
        _fail(path, "a zip archive (a torch.save/pickle file or an old .npz checkpoint), not "
                    "safetensors; cnnlab never unpickles: convert it with "
                    "safetensors.torch.save_file")
    if len(head) < 8:
        _fail(path, f"not a safetensors file ({st.st_size} bytes, shorter than a header)")
    n = int.from_bytes(head, "little")
    if n > max_header_bytes:
        _fail(path, f"not a safetensors file, or one whose header declares {n} bytes "
                    f"(more than the {max_header_bytes} allowed)")
    if 8 + n > st.st_size:
        _fail(path, f"not a safetensors file: its header declares {n} bytes but the file "
                    f"has {st.st_size}")


class _Reader:
    """Turns a JSON structure back into the nest, checking every node."""

    def __init__(self, path, tensors: dict):
        self.path = path
        self.tensors = tensors
        self.used: set = set()

    def decode(self, node):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if isinstance(node, dict) and len(node) == 1:
            (tag, value), = node.items()
            if tag == "tensor" and isinstance(value, str):
                if value not in self.tensors:
                    _fail(self.path, f"the structure names a tensor {value!r} that the file "
                                     f"does not hold")
                self.used.add(value)
                return self.tensors[value]
            if tag == "tuple" and isinstance(value, list):
                return tuple(self.decode(v) for v in value)
            if tag == "float" and value in ("nan", "inf", "-inf"):
                return float(value)
            if tag == "dict" and isinstance(value, list):
                out = {}
                for item in value:
                    if not (isinstance(item, list) and len(item) == 2
                            and (item[0] is None or isinstance(item[0], (str, int, float,
                                                                          bool)))):
                        _fail(self.path, "malformed structure: a dict entry is not a "
                                         "[key, value] pair")
                    out[item[0]] = self.decode(item[1])
                return out
        _fail(self.path, f"malformed structure node {str(node)[:60]!r}")


def load(f, map_location=None, *, weights_only: bool = True,
         max_header_bytes: int = MAX_HEADER_BYTES):
    """Read what :func:`save` wrote (or any safetensors file: then a {name: Tensor} dict).

    ``map_location``: a device ("cpu", "cuda", "torch:cpu", a ``torch.device``) for every
    tensor; default "cpu". ``weights_only`` is accepted for torch's signature: cnnlab files
    never hold code. Raises :class:`LoadError` for a file it will not read."""
    from safetensors import SafetensorError, safe_open

    if not weights_only:
        raise ValueError("cnnlab.load reads tensors and plain data only (weights_only=True); "
                         "it never unpickles")
    path = os.fspath(f)
    device = as_device("cpu" if map_location is None else map_location)
    _check_file(path, max_header_bytes)
    try:
        with safe_open(path, framework="np") as sf:
            tensors = {}
            for key in sf.keys():
                kind = sf.get_slice(key).get_dtype()
                if kind not in _DTYPES:
                    _fail(path, f"tensor {key!r} has dtype {kind}, which cnnlab has not "
                                f"(it has {', '.join(_DTYPES)})")
                tensors[key] = Tensor._make(place(sf.get_tensor(key), device))
            meta = sf.metadata() or {}
    except SafetensorError as e:
        _fail(path, f"not a valid safetensors file ({str(e).splitlines()[0][:200]})")
    except MemoryError:
        _fail(path, "too large to load into memory")
    raw = meta.get(STRUCTURE_KEY)
    if raw is None:                      # a safetensors file from elsewhere
        return tensors
    try:
        structure = json.loads(raw)
    except (ValueError, RecursionError) as e:
        _fail(path, f"its {STRUCTURE_KEY} metadata is not valid JSON ({str(e)[:100]})")
    reader = _Reader(path, tensors)
    try:
        obj = reader.decode(structure)
    except RecursionError:
        _fail(path, "its structure is nested too deeply")
    unused = sorted(set(tensors) - reader.used)
    if unused:
        _fail(path, f"tensor {unused[0]!r} is not part of the saved structure")
    return obj
