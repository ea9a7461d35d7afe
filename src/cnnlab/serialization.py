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
    open_lazy(path)     the same object with each tensor as a ``Declared`` (name, dtype,
                        shape from the header; nothing read yet) and a function that reads
                        one: a caller (``checkpoint.load``) checks shapes before reading
    atomic_write        the writer of every file cnnlab leaves behind

A file from elsewhere is read warily: only a regular file; the header's declared length is
checked against ``max_header_bytes`` and the file size before anything is parsed; the
safetensors library checks that every tensor lies inside the file, so no tensor can claim
more memory than the file holds; dtypes cnnlab has not, a structure that names missing
tensors and malformed JSON are refused. Every refusal is a :class:`LoadError` with a
one-line message naming the file.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
from typing import Callable, NamedTuple, Optional

import numpy as np

from ._array import place, to_numpy
from ._types import as_device
from .tensor import Tensor

__all__ = ["save", "load", "open_lazy", "Declared", "LoadError", "MAX_HEADER_BYTES",
           "atomic_write"]

STRUCTURE_KEY = "cnnlab.structure"
MAX_HEADER_BYTES = 16 * 2**20
_DTYPES = {"F64": np.float64, "F32": np.float32, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


class LoadError(ValueError):
    """A file :func:`load` refuses; the message names the file and what is wrong."""


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
        self.arrays[name] = np.require(array, requirements="C")  # 0-d stays 0-d
        self.names_by_id[id(value)] = name
        return name

    def encode(self, value, path: str = "", unprefixed=()):
        def child(key):
            return f"{path}.{key}" if path else "" if key in unprefixed else str(key)

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


def save(obj, f, metadata: Optional[dict] = None, *, unprefixed=()) -> None:
    """Write ``obj`` (see the module docstring) to the path ``f`` as safetensors,
    atomically. ``metadata`` ({str: str}) is added to the file's header. ``unprefixed``:
    keys of a top-level dict whose tensors keep their own names (a checkpoint's "model"
    state_dict under torch's keys, "conv_layers.0.weight", rather than "model.conv...")."""
    import safetensors.numpy

    writer = _Writer()
    structure = writer.encode(obj, unprefixed=tuple(unprefixed) if isinstance(obj, dict)
                              else ())
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


class Declared(NamedTuple):
    """A tensor of the file as its header declares it, not read yet: its name, safetensors
    dtype ("F32", ...) and shape."""
    name: str
    dtype: str
    shape: tuple

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(_DTYPES[self.dtype]).itemsize


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


def _walk(obj, fn):
    """``obj`` with each Declared replaced by ``fn(declared)``."""
    if isinstance(obj, Declared):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _walk(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_walk(v, fn) for v in obj)
    return obj


@contextlib.contextmanager
def open_lazy(f, max_header_bytes: int = MAX_HEADER_BYTES):
    """Open a safetensors file warily and yield ``(obj, read)``: the saved object with each
    tensor as a :class:`Declared` (for a file from elsewhere, {name: Declared}), and
    ``read(declared, map_location=None) -> Tensor``, valid inside the ``with`` block. Only
    the header is parsed on entry (at most ``max_header_bytes``); every refusal, a
    ``MemoryError`` included, is a :class:`LoadError` naming the file."""
    from safetensors import SafetensorError, safe_open

    path = os.fspath(f)
    _check_file(path, max_header_bytes)
    try:
        with safe_open(path, framework="np") as sf:
            declared = {}
            for key in sf.keys():
                piece = sf.get_slice(key)
                kind = piece.get_dtype()
                if kind not in _DTYPES:
                    _fail(path, f"tensor {key!r} has dtype {kind}, which cnnlab has not "
                                f"(it has {', '.join(_DTYPES)})")
                declared[key] = Declared(key, kind, tuple(piece.get_shape()))
            raw = (sf.metadata() or {}).get(STRUCTURE_KEY)
            obj = declared if raw is None else _structure(path, raw, declared)

            def read(d: Declared, map_location=None) -> Tensor:
                device = as_device("cpu" if map_location is None else map_location)
                try:
                    return Tensor._make(place(sf.get_tensor(d.name), device))
                except SafetensorError as e:
                    _fail(path, f"tensor {d.name!r} cannot be read "
                                f"({str(e).splitlines()[0][:200]})")

            yield obj, read
    except SafetensorError as e:
        _fail(path, f"not a valid safetensors file ({str(e).splitlines()[0][:200]})")
    except MemoryError:
        _fail(path, "too large to load into memory")


def _structure(path, raw: str, declared: dict):
    """The nest that the JSON ``raw`` describes, tensors as the Declared entries."""
    try:
        structure = json.loads(raw)
    except (ValueError, RecursionError) as e:
        _fail(path, f"its {STRUCTURE_KEY} metadata is not valid JSON ({str(e)[:100]})")
    reader = _Reader(path, declared)
    try:
        obj = reader.decode(structure)
    except RecursionError:
        _fail(path, "its structure is nested too deeply")
    unused = sorted(set(declared) - reader.used)
    if unused:
        _fail(path, f"tensor {unused[0]!r} is not part of the saved structure")
    return obj


def load(f, map_location=None, *, weights_only: bool = True,
         max_header_bytes: int = MAX_HEADER_BYTES):
    """Read what :func:`save` wrote (or any safetensors file: then a {name: Tensor} dict).

    ``map_location``: a device ("cpu", "cuda", "torch:cpu", a ``torch.device``) for every
    tensor; default "cpu". ``weights_only`` is accepted for torch's signature: cnnlab files
    never hold code. Raises :class:`LoadError` for a file it will not read."""
    if not weights_only:
        raise ValueError("cnnlab.load reads tensors and plain data only (weights_only=True); "
                         "it never unpickles")
    as_device("cpu" if map_location is None else map_location)   # a bad device: TypeError
    with open_lazy(f, max_header_bytes) as (obj, read):
        done = {}          # a tensor named twice in the structure is read once

        def fetch(d):
            if d.name not in done:
                done[d.name] = read(d, map_location)
            return done[d.name]
        return _walk(obj, fetch)
