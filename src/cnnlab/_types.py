"""How cnnlab spells what torch spells ``torch.float32``, ``torch.device`` and ``torch.Size``.

Devices say which twin holds a tensor's values::

    "cpu"            a NumPy array, computed by the selected NumPy backend ("cython", else
                     "numpy"; see cnnlab.set_backend): the fast path, and what
                     ``torch.device("cuda" if torch.cuda.is_available() else "cpu")``
                     gives on a machine without a GPU
    "cuda", "cuda:1" a torch tensor on that GPU (the torch twin); any other torch device
                     type ("mps", ...) likewise
    "torch:cpu"      a torch tensor on the CPU: the torch twin without a GPU, so the GPU
                     code path runs (and is tested) on any machine

A real ``torch.device`` given anywhere means torch tensors on that device. dtypes are
``cnnlab.float32`` (``float``), ``float64`` (``double``), ``int64`` (``long``), ``int32``
(``int``), ``uint8``, ``int8``, ``int16``, ``bool``; NumPy and torch dtypes and their names
are accepted wherever a dtype is.
"""
from __future__ import annotations

import numpy as np

__all__ = ["dtype", "device", "Size", "as_dtype", "as_device", "get_default_dtype",
           "set_default_dtype", "CPU"]


class dtype:
    """A tensor element type: ``name`` ("float32"), ``itemsize`` (bytes),
    ``is_floating_point``; ``numpy`` is the NumPy dtype."""

    __slots__ = ("name", "numpy", "itemsize", "is_floating_point", "is_signed")

    def __init__(self, name: str):
        self.name = name
        self.numpy = np.dtype(name)
        self.itemsize = self.numpy.itemsize
        self.is_floating_point = self.numpy.kind == "f"
        self.is_signed = self.numpy.kind in "if"

    @property
    def torch(self):
        """The equal ``torch.dtype``."""
        import torch
        return getattr(torch, self.name)

    def __repr__(self):
        return f"cnnlab.{self.name}"

    def __reduce__(self):  # copy/deepcopy keep the singleton
        return (as_dtype, (self.name,))


float32, float64 = dtype("float32"), dtype("float64")
int64, int32, int16, int8 = dtype("int64"), dtype("int32"), dtype("int16"), dtype("int8")
uint8, bool_ = dtype("uint8"), dtype("bool")
_ALL = {d.name: d for d in (float32, float64, int64, int32, int16, int8, uint8, bool_)}
_LOOKUP: dict = {}
_default = [float32]


def as_dtype(value) -> dtype:
    """The cnnlab dtype for a cnnlab, NumPy or torch dtype, a scalar type or a name."""
    if type(value) is dtype:
        return value
    try:
        return _LOOKUP[value]
    except (KeyError, TypeError):
        pass
    text = str(value)
    name = text[6:] if text.startswith("torch.") else None
    if name is None:
        try:
            name = np.dtype(value).name
        except TypeError:
            name = text
    found = _ALL.get(name)
    if found is None:
        raise TypeError(f"cnnlab has no dtype {value!r}; use one of {sorted(_ALL)}")
    try:
        _LOOKUP[value] = found
    except TypeError:
        pass
    return found


def get_default_dtype() -> dtype:
    """The dtype of new floating tensors and parameters (float32 unless set)."""
    return _default[0]


def set_default_dtype(d) -> None:
    """Make ``d`` (float32 or float64) the dtype of new floating tensors and parameters."""
    d = as_dtype(d)
    if d not in (float32, float64):
        raise TypeError(f"only floating-point types are supported as the default type, got {d}")
    _default[0] = d


class device:
    """Where a tensor lives: ``type`` ("cpu", "cuda", ...), ``index`` (or None) and
    ``torch`` (True when its values are a torch tensor; see the module docstring)."""

    __slots__ = ("type", "index", "torch")

    def __init__(self, type, index=None):
        if isinstance(type, device):
            type, index, twin = type.type, type.index, type.torch
        else:
            text = str(type)
            twin = text.startswith("torch:")
            if twin:
                text = text[6:]
            kind, _, number = text.partition(":")
            if number:
                if index is not None:
                    raise RuntimeError(f"type (string) must not include an index because "
                                       f"index was passed explicitly: {type}")
                if not number.isdigit():
                    raise RuntimeError(f"Invalid device string: '{type}'")
                index = int(number)
            if not kind or not kind.replace("_", "").isalnum():
                raise RuntimeError(f"Invalid device string: '{type}'")
            type, twin = kind, twin or kind != "cpu"
        if index is not None and (isinstance(index, bool) or int(index) < 0):
            raise RuntimeError(f"Device index must not be negative, got {index}")
        self.type = type
        self.index = None if index is None else int(index)
        self.torch = twin

    def torch_device(self):
        """The torch.device holding this device's tensors (None for NumPy)."""
        if not self.torch:
            return None
        import torch
        return torch.device(self.type, self.index)

    def __str__(self):
        base = self.type if self.index is None else f"{self.type}:{self.index}"
        return f"torch:{base}" if self.torch and self.type == "cpu" else base

    def __repr__(self):
        if self.torch and self.type == "cpu":
            return f"device('{self}')"
        index = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{index})"

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = device(other)
            except RuntimeError:
                return False
        return (isinstance(other, device) and self.type == other.type
                and self.index == other.index and self.torch == other.torch)

    def __hash__(self):
        return hash((self.type, self.index, self.torch))

    def __reduce__(self):
        return (device, (str(self),))


CPU = device("cpu")


def as_device(value) -> device:
    """A cnnlab device from a cnnlab device, a string, an int (a CUDA index, as torch) or a
    real ``torch.device`` (whose tensors are torch tensors, also on "cpu")."""
    if type(value) is device:
        return value
    if isinstance(value, str):
        return CPU if value == "cpu" else device(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return device("cuda", value)
    if type(value).__module__ == "torch" and type(value).__name__ == "device":
        return device("torch:" + str(value) if value.type == "cpu" else str(value))
    raise TypeError(f"expected a device (a string such as 'cpu', 'cuda', 'torch:cpu'), got "
                    f"{type(value).__name__}")


class Size(tuple):
    """The shape of a tensor: a tuple of ints, as ``torch.Size``."""

    __slots__ = ()

    def numel(self) -> int:
        n = 1
        for s in self:
            n *= s
        return n

    def __repr__(self):
        return f"cnnlab.Size({list(self)})"

    def __getitem__(self, key):
        out = tuple.__getitem__(self, key)
        return Size(out) if isinstance(key, slice) else out
