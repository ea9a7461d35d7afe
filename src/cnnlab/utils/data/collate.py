"""``default_collate``: a list of samples -> one batch, with torch's rules.

    cnnlab Tensors (or torch tensors)   stacked along a new first dim: (N, *shape)
    NumPy arrays                        made tensors, then stacked
    NumPy scalars                       one tensor of their dtype
    Python floats / ints / bools        float64 / int64 / bool tensor of shape (N,)
    str, bytes                          the list as it is
    dicts (Mappings)                    the same keys, each value collated
    namedtuples                         the same type, each field collated
    tuples, lists                       transposed and collated per position; a tuple gives
                                        a list (as torch's)

``default_convert`` (used when automatic batching is off, ``batch_size=None``) only turns
NumPy arrays and scalars into tensors, recursively.
"""
from __future__ import annotations

import collections.abc
import copy
import re

import numpy as np

from ...tensor import Tensor, as_tensor, tensor
from ..._functions import stack

__all__ = ["default_collate", "default_convert"]

_ERROR = ("default_collate: batch must contain tensors, numpy arrays, numbers, dicts or "
          "lists; found {}")
_STR_OR_OBJECT = re.compile(r"[SaUO]")


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "device")


def _stack(batch):
    tensors = [b if isinstance(b, Tensor) else as_tensor(b) for b in batch]
    first = tuple(tensors[0].shape)
    for i, t in enumerate(tensors[1:], 1):
        if tuple(t.shape) != first:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got "
                               f"{list(first)} at entry 0 and {list(t.shape)} at entry {i}")
    return stack(tensors, 0)


def default_collate(batch):
    """Merge a list of samples into a batch (see the module docstring)."""
    elem = batch[0]
    if isinstance(elem, Tensor) or _is_torch(elem):
        return _stack(batch)
    if isinstance(elem, np.ndarray):
        if _STR_OR_OBJECT.search(elem.dtype.str):
            raise TypeError(_ERROR.format(elem.dtype))
        return _stack([np.ascontiguousarray(b) for b in batch])
    if isinstance(elem, (np.bool_, np.number)):
        return as_tensor(np.asarray(batch))
    if isinstance(elem, float):
        return tensor(batch, dtype="float64")
    if isinstance(elem, int):  # bool included: a bool tensor
        return tensor(batch)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        values = {key: default_collate([d[key] for d in batch]) for key in elem}
        try:
            if isinstance(elem, collections.abc.MutableMapping):
                clone = copy.copy(elem)
                clone.update(values)
                return clone
            return type(elem)(values)
        except TypeError:
            return values
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):
        return type(elem)(*(default_collate(s) for s in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(e) != size for e in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        columns = [default_collate(s) for s in zip(*batch)]
        if isinstance(elem, tuple):
            return columns
        try:
            return type(elem)(columns)
        except TypeError:
            return columns
    raise TypeError(_ERROR.format(type(elem)))


def default_convert(data):
    """NumPy arrays and scalars in ``data`` -> tensors; everything else unchanged."""
    if isinstance(data, np.ndarray) and not _STR_OR_OBJECT.search(data.dtype.str):
        return as_tensor(data)
    if isinstance(data, (np.bool_, np.number)):
        return as_tensor(np.asarray(data))
    if isinstance(data, (str, bytes, Tensor)):
        return data
    if isinstance(data, collections.abc.Mapping):
        try:
            return type(data)({k: default_convert(v) for k, v in data.items()})
        except TypeError:
            return {k: default_convert(v) for k, v in data.items()}
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence):
        try:
            return type(data)([default_convert(d) for d in data])
        except TypeError:
            return [default_convert(d) for d in data]
    return data
