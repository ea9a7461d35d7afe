"""torch's top-level functions over tensors, as ``cnnlab.<name>``.

Creation (``zeros``, ``ones``, ``full``, ``arange``, ``eye``, ``*_like``, and the random
``randn``, ``rand``, ``randint``, ``randperm`` drawn from a ``cnnlab.Generator``), joining
(``cat``, ``stack``), and the function forms of Tensor methods (``max``, ``argmax``,
``exp``, ``flatten``, ...). ``device`` and ``dtype`` arguments take every spelling
``cnnlab/_types.py`` describes; tensors are made on the host and placed on the device.
"""
from __future__ import annotations

import numpy as np

from . import _ops
from ._array import place
from ._ops import shape as S
from ._types import CPU, as_device, as_dtype, get_default_dtype
from .random import resolve
from .tensor import Tensor, return_types, shape_args

__all__ = ["zeros", "ones", "full", "empty", "zeros_like", "ones_like", "full_like",
           "empty_like", "arange", "linspace", "eye", "randn", "rand", "randint", "randperm",
           "randn_like", "rand_like", "cat", "concat", "concatenate", "stack", "max", "min",
           "argmax", "argmin", "sum", "mean", "exp", "log", "sqrt", "abs", "relu", "sigmoid",
           "tanh", "softmax", "log_softmax", "matmul", "mm", "flatten", "reshape", "squeeze",
           "unsqueeze", "transpose", "permute", "clamp", "clip", "where", "maximum", "minimum",
           "numel", "is_tensor", "is_floating_point", "allclose", "equal", "isnan",
           "isfinite", "return_types"]


def _new(values: np.ndarray, dtype, device, requires_grad) -> Tensor:
    t = Tensor._make(place(values, CPU if device is None else as_device(device), dtype))
    if requires_grad:
        t.requires_grad = True
    return t


def _float(dtype):
    return (get_default_dtype() if dtype is None else as_dtype(dtype)).numpy


def zeros(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _new(np.zeros(shape_args(size), _float(dtype)), None, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _new(np.ones(shape_args(size), _float(dtype)), None, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    if dtype is None:
        dtype = (as_dtype("bool") if isinstance(fill_value, bool) else as_dtype("int64")
                 if isinstance(fill_value, int) else get_default_dtype())
    return _new(np.full(shape_args((size,)), fill_value, as_dtype(dtype).numpy), None,
                device, requires_grad)


def _like(t, dtype, device):
    return (t.dtype if dtype is None else as_dtype(dtype)), (t.device if device is None
                                                              else device)


def zeros_like(input, dtype=None, device=None, requires_grad=False) -> Tensor:
    dt, dev = _like(input, dtype, device)
    return zeros(input.shape, dtype=dt, device=dev, requires_grad=requires_grad)


def ones_like(input, dtype=None, device=None, requires_grad=False) -> Tensor:
    dt, dev = _like(input, dtype, device)
    return ones(input.shape, dtype=dt, device=dev, requires_grad=requires_grad)


def empty_like(input, dtype=None, device=None, requires_grad=False) -> Tensor:
    return zeros_like(input, dtype, device, requires_grad)


def full_like(input, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    dt, dev = _like(input, dtype, device)
    return full(input.shape, fill_value, dtype=dt, device=dev, requires_grad=requires_grad)


def arange(start, end=None, step=1, *, dtype=None, device=None,
           requires_grad=False) -> Tensor:
    """Values from ``start`` (0 when only one bound is given) to ``end`` (excluded): int64
    when every bound is an int, else the default float dtype."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        ints = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = as_dtype("int64") if ints else get_default_dtype()
    values = np.arange(start, end, step, dtype=np.float64 if as_dtype(dtype).is_floating_point
                       else np.int64)
    return _new(values, dtype, device, requires_grad)


def linspace(start, end, steps, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _new(np.linspace(start, end, steps), _float(dtype), device, requires_grad)


def eye(n, m=None, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _new(np.eye(n, m, dtype=_float(dtype)), None, device, requires_grad)


# --------------------------------------------------------------------------- random


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Standard normal values drawn from ``generator`` (default: cnnlab's)."""
    values = resolve(generator).normal(0.0, 1.0, shape_args(size), _float(dtype))
    return _new(values, None, device, requires_grad)


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Uniform values in [0, 1) drawn from ``generator`` (default: cnnlab's)."""
    values = resolve(generator).uniform(0.0, 1.0, shape_args(size), _float(dtype))
    return _new(values, None, device, requires_grad)


def randint(low, high=None, size=None, *, generator=None, dtype=None, device=None) -> Tensor:
    """Integers in [low, high) (``randint(high, size)`` starts at 0), int64 by default."""
    if size is None:
        low, high, size = 0, low, high
    values = resolve(generator).integers(low, high, shape_args((size,)))
    return _new(values, dtype, device, False)


def randperm(n, *, generator=None, dtype=None, device=None) -> Tensor:
    """A random permutation of 0..n-1 (int64)."""
    return _new(resolve(generator).permutation(int(n)), dtype, device, False)


def randn_like(input, dtype=None, device=None, requires_grad=False) -> Tensor:
    dt, dev = _like(input, dtype, device)
    return randn(input.shape, dtype=dt, device=dev, requires_grad=requires_grad)


def rand_like(input, dtype=None, device=None, requires_grad=False) -> Tensor:
    dt, dev = _like(input, dtype, device)
    return rand(input.shape, dtype=dt, device=dev, requires_grad=requires_grad)


# --------------------------------------------------------------------------- joining


def _same_family(tensors, op):
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError(f"{op}(): expected a non-empty list of Tensors")
    first = type(tensors[0]._data)
    for t in tensors[1:]:
        if type(t._data) is not first:
            raise RuntimeError(f"Expected all tensors to be on the same device, but found at "
                               f"least two devices, {tensors[0].device} and {t.device}!")
    return tensors


def cat(tensors, dim: int = 0) -> Tensor:
    """Concatenate along ``dim`` (the tensors agree on every other dim)."""
    tensors = _same_family(tensors, "cat")
    return S.Cat.apply(*tensors, dim=dim)


concat = concatenate = cat


def stack(tensors, dim: int = 0) -> Tensor:
    """Stack equal-shaped tensors along a new ``dim``."""
    tensors = _same_family(tensors, "stack")
    return S.Stack.apply(*tensors, dim=dim)


# --------------------------------------------------------------------------- method forms


def max(input, dim=None, keepdim=False, *, out=None):
    """``max(t)``: the largest element; ``max(t, dim)``: (values, indices);
    ``max(t, other)``: the element-wise maximum."""
    return input.max(dim, keepdim)


def min(input, dim=None, keepdim=False):
    return input.min(dim, keepdim)


def argmax(input, dim=None, keepdim=False):
    return input.argmax(dim, keepdim)


def argmin(input, dim=None, keepdim=False):
    return input.argmin(dim, keepdim)


def sum(input, dim=None, keepdim=False, *, dtype=None):
    return input.sum(dim, keepdim, dtype=dtype)


def mean(input, dim=None, keepdim=False, *, dtype=None):
    return input.mean(dim, keepdim, dtype=dtype)


def exp(input):
    return input.exp()


def log(input):
    return input.log()


def sqrt(input):
    return input.sqrt()


def abs(input):
    return input.abs()


def relu(input):
    return input.relu()


def sigmoid(input):
    return input.sigmoid()


def tanh(input):
    return input.tanh()


def softmax(input, dim, dtype=None):
    return (input if dtype is None else input.to(dtype=dtype)).softmax(dim)


def log_softmax(input, dim, dtype=None):
    return (input if dtype is None else input.to(dtype=dtype)).log_softmax(dim)


def matmul(input, other):
    return input @ other


mm = matmul


def flatten(input, start_dim: int = 0, end_dim: int = -1):
    return input.flatten(start_dim, end_dim)


def reshape(input, shape):
    return input.reshape(shape)


def squeeze(input, dim=None):
    return input.squeeze(dim)


def unsqueeze(input, dim):
    return input.unsqueeze(dim)


def transpose(input, dim0, dim1):
    return input.transpose(dim0, dim1)


def permute(input, dims):
    return input.permute(dims)


def clamp(input, min=None, max=None):
    return input.clamp(min, max)


clip = clamp


def where(condition, input, other):
    """``input`` where ``condition`` (a bool tensor), else ``other``."""
    cond = condition._data if isinstance(condition, Tensor) else np.asarray(condition)
    ref = input if isinstance(input, Tensor) else other
    a = ref._operand(input) if isinstance(ref, Tensor) else input
    b = ref._operand(other) if isinstance(ref, Tensor) else other
    return _ops.pointwise.Where.apply(cond, a, b)


def maximum(input, other):
    return input.maximum(other)


def minimum(input, other):
    return input.minimum(other)


def numel(input) -> int:
    return input.numel()


def is_tensor(obj) -> bool:
    """True for a cnnlab Tensor (and a Parameter)."""
    return isinstance(obj, Tensor)


def is_floating_point(input) -> bool:
    return input.is_floating_point()


def isnan(input):
    return input.isnan()


def isfinite(input):
    return input.isfinite()


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
    return bool(np.allclose(np.asarray(input), np.asarray(other), rtol=rtol, atol=atol,
                            equal_nan=equal_nan))


def equal(input, other) -> bool:
    a, b = np.asarray(input), np.asarray(other)
    return a.shape == b.shape and bool((a == b).all())
