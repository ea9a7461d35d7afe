"""The array functions the autograd needs, for NumPy arrays and torch tensors alike.

A tensor's values are a NumPy array (device "cpu") or a torch tensor (the torch twin). The
ops compute with operators both families share (``+``, ``*``, ``@``, ``reshape``,
indexing, ``.shape``) and, for what the two spell differently, with ``ns(a)``: the
namespace of ``a``'s family, two small classes with the same method names (``NumPy`` and
``Torch``). Each takes and returns arrays of its family, on the same device, of the same
dtype. Below them: conversions between the families and devices (``place``,
``to_numpy``, ``convert``), the only places that copy between host and device.
"""
from __future__ import annotations

import numpy as np

from ._checks import dtype_name
from ._dispatch import is_tensor
from ._types import as_device, as_dtype

__all__ = ["ns", "NumPy", "Torch", "is_tensor", "dtype_name", "to_numpy", "convert", "place",
           "as_array", "flip_where"]


def _torch():
    import torch
    return torch


class NumPy:
    """Array functions on NumPy arrays."""

    @staticmethod
    def sum(a, axis=None, keepdims=False):
        return np.asarray(a.sum(axis=axis, keepdims=keepdims))

    @staticmethod
    def mean(a, axis=None, keepdims=False):
        return np.asarray(a.mean(axis=axis, keepdims=keepdims))

    @staticmethod
    def amax(a, axis=None, keepdims=False):
        return np.asarray(a.max(axis=axis, keepdims=keepdims))

    @staticmethod
    def amin(a, axis=None, keepdims=False):
        return np.asarray(a.min(axis=axis, keepdims=keepdims))

    @staticmethod
    def argmax(a, axis=None, keepdims=False):
        return np.asarray(a.argmax(axis=axis, keepdims=keepdims))

    @staticmethod
    def argmin(a, axis=None, keepdims=False):
        return np.asarray(a.argmin(axis=axis, keepdims=keepdims))

    exp, log, log1p, sqrt, tanh = np.exp, np.log, np.log1p, np.sqrt, np.tanh
    abs, sign, maximum, minimum, where = np.abs, np.sign, np.maximum, np.minimum, np.where
    zeros_like, ones_like, broadcast_to = np.zeros_like, np.ones_like, np.broadcast_to
    isfinite = np.isfinite

    @staticmethod
    def numel(a):
        return a.size

    @staticmethod
    def sigmoid(a):
        from scipy.special import expit
        return expit(a)

    @staticmethod
    def log_sigmoid(a):
        from scipy.special import log_expit
        return log_expit(a)

    @staticmethod
    def clip(a, lo, hi):
        return np.clip(a, lo, hi)

    @staticmethod
    def zeros(shape, like):
        return np.zeros(shape, like.dtype)

    @staticmethod
    def full(shape, value, like):
        return np.full(shape, value, like.dtype)

    @staticmethod
    def asarray(values, like):
        """``values`` (a NumPy array or list) in ``like``'s family."""
        return np.asarray(values)

    @staticmethod
    def transpose(a, axes):
        return a.transpose(axes)

    @staticmethod
    def concatenate(arrays, axis):
        return np.concatenate(arrays, axis=axis)

    @staticmethod
    def stack(arrays, axis):
        return np.stack(arrays, axis=axis)

    @staticmethod
    def astype(a, d):
        return a.astype(as_dtype(d).numpy, copy=False)

    @staticmethod
    def copy(a):
        return a.copy()

    @staticmethod
    def take_along_axis(a, idx, axis):
        return np.take_along_axis(a, idx, axis)

    @staticmethod
    def scatter_along_axis(shape, idx, values, axis):
        """Zeros of ``shape`` with ``values`` written at ``idx`` along ``axis``."""
        out = np.zeros(shape, values.dtype)
        np.put_along_axis(out, idx, values, axis)
        return out

    @staticmethod
    def index_add(shape, key, values):
        """Zeros of ``shape`` plus ``values`` added at ``a[key]`` (repeats accumulate)."""
        out = np.zeros(shape, values.dtype)
        np.add.at(out, key, values)
        return out

    @staticmethod
    def matmul(a, b):
        return np.asarray(np.matmul(a, b))

    @staticmethod
    def to_host(a):
        return a


class Torch:
    """The same functions on torch tensors (on their device)."""

    @staticmethod
    def sum(a, axis=None, keepdims=False):
        return a.sum() if axis is None and not keepdims else a.sum(
            dim=tuple(range(a.dim())) if axis is None else axis, keepdim=keepdims)

    @staticmethod
    def mean(a, axis=None, keepdims=False):
        return a.mean() if axis is None and not keepdims else a.mean(
            dim=tuple(range(a.dim())) if axis is None else axis, keepdim=keepdims)

    @staticmethod
    def amax(a, axis=None, keepdims=False):
        return a.amax() if axis is None and not keepdims else a.amax(
            dim=tuple(range(a.dim())) if axis is None else axis, keepdim=keepdims)

    @staticmethod
    def amin(a, axis=None, keepdims=False):
        return a.amin() if axis is None and not keepdims else a.amin(
            dim=tuple(range(a.dim())) if axis is None else axis, keepdim=keepdims)

    @staticmethod
    def argmax(a, axis=None, keepdims=False):
        return a.argmax(dim=axis, keepdim=keepdims)

    @staticmethod
    def argmin(a, axis=None, keepdims=False):
        return a.argmin(dim=axis, keepdim=keepdims)

    exp = staticmethod(lambda a: a.exp())
    log = staticmethod(lambda a: a.log())
    log1p = staticmethod(lambda a: a.log1p())
    sqrt = staticmethod(lambda a: a.sqrt())
    tanh = staticmethod(lambda a: a.tanh())
    abs = staticmethod(lambda a: a.abs())
    sign = staticmethod(lambda a: a.sign())
    sigmoid = staticmethod(lambda a: a.sigmoid())
    isfinite = staticmethod(lambda a: _torch().isfinite(a))
    numel = staticmethod(lambda a: a.numel())
    zeros_like = staticmethod(lambda a: _torch().zeros_like(a))
    ones_like = staticmethod(lambda a: _torch().ones_like(a))
    broadcast_to = staticmethod(lambda a, shape: a.broadcast_to(shape))

    @staticmethod
    def log_sigmoid(a):
        return _torch().nn.functional.logsigmoid(a)

    @staticmethod
    def maximum(a, b):
        return _torch().maximum(a, b) if is_tensor(b) else a.clamp_min(b)

    @staticmethod
    def minimum(a, b):
        return _torch().minimum(a, b) if is_tensor(b) else a.clamp_max(b)

    @staticmethod
    def where(cond, a, b):
        return _torch().where(cond, a, b)

    @staticmethod
    def clip(a, lo, hi):
        return a.clamp(lo, hi)

    @staticmethod
    def zeros(shape, like):
        return _torch().zeros(shape, dtype=like.dtype, device=like.device)

    @staticmethod
    def full(shape, value, like):
        return _torch().full(shape, value, dtype=like.dtype, device=like.device)

    @staticmethod
    def asarray(values, like):
        return _torch().as_tensor(np.asarray(values), device=like.device)

    @staticmethod
    def transpose(a, axes):
        return a.permute(axes)

    @staticmethod
    def concatenate(arrays, axis):
        return _torch().cat(arrays, dim=axis)

    @staticmethod
    def stack(arrays, axis):
        return _torch().stack(arrays, dim=axis)

    @staticmethod
    def astype(a, d):
        return a.to(as_dtype(d).torch)

    @staticmethod
    def copy(a):
        return a.clone()

    @staticmethod
    def take_along_axis(a, idx, axis):
        return _torch().take_along_dim(a, idx, dim=axis)

    @staticmethod
    def scatter_along_axis(shape, idx, values, axis):
        out = _torch().zeros(shape, dtype=values.dtype, device=values.device)
        return out.scatter_(axis, idx, values)

    @staticmethod
    def index_add(shape, key, values):
        torch = _torch()
        out = torch.zeros(shape, dtype=values.dtype, device=values.device)
        keys = key if isinstance(key, tuple) else (key,)
        if all(is_tensor(k) for k in keys):
            if len(keys) == 1 and keys[0].dtype == torch.bool:
                keys = keys[0].nonzero(as_tuple=True)
            return out.index_put_(keys, values, accumulate=True)
        # slices mixed with index tensors: let torch's own indexing gradient scatter it
        with torch.enable_grad():
            base = out.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(base[key], base, values)
        return grad

    @staticmethod
    def matmul(a, b):
        return _torch().matmul(a, b)

    @staticmethod
    def to_host(a):
        return a.detach().cpu().numpy()


def ns(a):
    """The namespace of ``a``'s family: :class:`NumPy` or :class:`Torch`."""
    return NumPy if isinstance(a, (np.ndarray, np.generic)) else Torch


# --------------------------------------------------------------------------- conversions


def as_array(a):
    """``a`` as an array of its family: NumPy scalars (what NumPy reductions and ufuncs on
    0-d arrays return) become 0-d arrays; arrays and torch tensors pass unchanged."""
    if type(a) is np.ndarray or is_tensor(a):
        return a
    return np.asarray(a)


def to_numpy(a) -> np.ndarray:
    """A NumPy array with ``a``'s values (a tensor is copied to the host; an array is
    returned as it is)."""
    if is_tensor(a):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def place(a, dev, d=None):
    """The array ``a`` (NumPy or torch) on the cnnlab device ``dev`` (see ``_types``): a
    NumPy array for "cpu", a torch tensor on the torch device otherwise; cast to the dtype
    ``d`` when given. No copy when nothing changes."""
    dev = as_device(dev)
    if not dev.torch:
        out = to_numpy(a)
        return out if d is None else out.astype(as_dtype(d).numpy, copy=False)
    try:
        torch = _torch()
    except ImportError:
        raise RuntimeError(f"device '{dev}' is the torch twin, and torch is not installed "
                           "(pip install cnnlab[torch])") from None
    if not is_tensor(a):
        a = np.asarray(a)
        # NumPy calls a size-1 axis with a negative stride contiguous; torch refuses it.
        a = torch.from_numpy(a if a.flags.writeable and min(a.strides, default=0) >= 0
                             else a.copy())
    return a.to(device=dev.torch_device(), dtype=None if d is None else as_dtype(d).torch)


def convert(a, device=None, dtype=None):
    """``a`` as a NumPy array (``device`` None) or as a torch tensor on the torch device
    ``device`` ("cpu", "cuda", a ``torch.device``); cast to ``dtype`` when given."""
    if device is None:
        return place(a, "cpu", dtype)
    text = str(device)
    return place(a, text if text.startswith("torch:") or not text.startswith("cpu")
                 else "torch:" + text, dtype)


def flip_where(x, mask):
    """(N, C, H, W) ``x`` with the images where ``mask`` (N,) is True mirrored left-right."""
    m = mask[:, None, None, None]
    if is_tensor(x):
        return _torch().where(m, x.flip(-1), x)
    return np.where(m, x[..., ::-1], x)
