"""The few array functions the layers need, for NumPy arrays and torch tensors alike.

Layers, losses and optimizers compute with operators that both families share (``+``,
``*``, ``@``, ``reshape``, indexing). What the two spell differently is here, and only here:
a function takes an array of either family and returns one of the same family, on the same
device, of the same dtype. Nothing here copies a tensor to the host except ``to_numpy``.
"""
from __future__ import annotations

import numpy as np

from ._checks import dtype_name
from ._dispatch import is_tensor

__all__ = ["is_tensor", "dtype_name", "to_numpy", "convert", "like", "zeros_like", "arange",
           "sqrt", "exp", "log", "relu", "maximum", "flip_where", "amax", "sum_axis", "argmax"]


def _torch():
    import torch
    return torch


def _dtype_str(dtype) -> str:
    """'float32' for 'float32', np.float32, np.dtype('float32') or torch.float32."""
    text = str(dtype)
    return text[6:] if text.startswith("torch.") else np.dtype(dtype).name


def _torch_dtype(dtype):
    """A torch dtype for any spelling of one (None stays None)."""
    return None if dtype is None else getattr(_torch(), _dtype_str(dtype))


def to_numpy(a) -> np.ndarray:
    """A NumPy array with ``a``'s values (a tensor is copied to the host; an array is
    returned as it is)."""
    if is_tensor(a):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def convert(a, device=None, dtype=None):
    """``a`` as a NumPy array (``device`` None or "numpy") or as a torch tensor on ``device``
    ("cpu", "cuda", "cuda:1", a ``torch.device``); cast to ``dtype`` when given."""
    if device is None or device == "numpy":
        out = to_numpy(a)
        return out if dtype is None else out.astype(_dtype_str(dtype), copy=False)
    torch = _torch()
    if is_tensor(a):
        return a.to(device=device, dtype=_torch_dtype(dtype))
    a = np.asarray(a)
    t = torch.from_numpy(a if a.flags.writeable else a.copy())
    return t.to(device=device, dtype=_torch_dtype(dtype))


def like(a, ref):
    """``a`` (NumPy or torch) in the family and on the device of ``ref``, keeping its dtype."""
    if is_tensor(ref):
        return convert(a, ref.device)
    return to_numpy(a)


def zeros_like(a):
    return _torch().zeros_like(a) if is_tensor(a) else np.zeros_like(a)


def arange(n: int, ref):
    """int64 0..n-1 in ``ref``'s family and on its device (row indices for ``ref``)."""
    if is_tensor(ref):
        return _torch().arange(n, device=ref.device)
    return np.arange(n)


def sqrt(a):
    return a.sqrt() if is_tensor(a) else np.sqrt(a)


def exp(a):
    return a.exp() if is_tensor(a) else np.exp(a)


def log(a):
    return a.log() if is_tensor(a) else np.log(a)


def relu(a):
    return a.relu() if is_tensor(a) else np.maximum(a, 0)


def maximum(a, b):
    """Element-wise maximum of two arrays of one family."""
    return _torch().maximum(a, b) if is_tensor(a) else np.maximum(a, b)


def flip_where(x, mask):
    """(N, C, H, W) ``x`` with the images where ``mask`` (N,) is True mirrored left-right."""
    m = mask[:, None, None, None]
    if is_tensor(x):
        return _torch().where(m, x.flip(-1), x)
    return np.where(m, x[..., ::-1], x)


def amax(a, axis: int, keepdims: bool = False):
    if is_tensor(a):
        return a.amax(dim=axis, keepdim=keepdims)
    return a.max(axis=axis, keepdims=keepdims)


def sum_axis(a, axis, keepdims: bool = False):
    if is_tensor(a):
        return a.sum(dim=axis, keepdim=keepdims)
    return a.sum(axis=axis, keepdims=keepdims)


def argmax(a, axis: int):
    """int64 indices of the first maximum along ``axis``."""
    return a.argmax(dim=axis) if is_tensor(a) else a.argmax(axis=axis)

