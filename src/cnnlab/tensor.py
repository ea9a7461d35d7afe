"""``cnnlab.Tensor``: an array with torch's Tensor API and a gradient.

How the pieces fit::

    Tensor._data           the values: a NumPy array on device "cpu" (computed by the
                           selected NumPy backend), a torch tensor on the torch twin
                           ("cuda", "torch:cpu"); see cnnlab/_types.py for the spellings
    requires_grad, grad    as torch's; .grad is a Tensor on the same device, accumulated
    grad_fn (_node)        the autograd Context that made it (None for a leaf)
    methods, operators     differentiable ones call one Function of cnnlab/_ops
                           (x + y -> Add.apply(x, y)); comparisons, argmax, item(),
                           numpy(), ... read the array directly and record nothing
    backward()             cnnlab.autograd.backward from this tensor

In-place methods (``add_``, ``zero_``, ``copy_``, ``t[i] = v``, ...) change the values and
are not recorded: torch's rule that a leaf requiring grad cannot be changed in place outside
``no_grad`` is enforced, and a tensor saved for a backward must not be changed before it.
``tensor``, ``as_tensor`` and ``from_numpy`` make tensors from data.
"""
from __future__ import annotations

import numbers
from collections import namedtuple

import numpy as np

from . import autograd
from ._array import as_array, ns, place
from ._array import is_tensor as is_torch
from ._ops import nn as N
from ._ops import pointwise as P
from ._ops import reduce as R
from ._ops import shape as S
from ._types import CPU, Size, as_device, as_dtype, device, dtype, get_default_dtype
from .random import resolve

__all__ = ["Tensor", "tensor", "as_tensor", "from_numpy", "shape_args", "return_types"]


def shape_args(args) -> tuple:
    """``f(2, 3)``, ``f((2, 3))``, ``f([2, 3])`` and ``f(size)`` all mean the shape (2, 3)."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = args[0]
    return tuple(int(a) for a in args)


def _dim(d: int, ndim: int) -> int:
    n = max(ndim, 1)
    if not -n <= d < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {d})")
    return d % n


def _default_kind(a: np.ndarray) -> np.ndarray:
    """Python floats become the default float dtype, as in torch (ints stay int64)."""
    if a.dtype == np.float64:
        return a.astype(get_default_dtype().numpy)
    return a


class return_types:
    """The (values, indices) pairs that ``max(dim)`` and ``min(dim)`` return."""

    max = namedtuple("max", ["values", "indices"])
    min = namedtuple("min", ["values", "indices"])


class Tensor:
    """A multi-dimensional array with autograd; see the module docstring.

    ``Tensor(data)`` shares a NumPy array's or torch tensor's memory, or makes a float
    tensor of the default dtype from a list (as torch's legacy constructor). Prefer
    ``cnnlab.tensor(data)``.
    """

    __slots__ = ("_data", "_node", "_requires_grad", "_grad", "__dict__", "__weakref__")
    __array_priority__ = 1000
    __array_ufunc__ = None  # NumPy defers: np.float64(2) * t calls t.__rmul__, keeps the graph
    __hash__ = object.__hash__

    def __init__(self, data=(), *, requires_grad: bool = False):
        if isinstance(data, Tensor):
            data = data._data
        elif not (isinstance(data, np.ndarray) or is_torch(data)):
            data = np.asarray(data, dtype=get_default_dtype().numpy)
        self._data = as_array(data)
        self._node = None
        self._grad = None
        self._requires_grad = False
        if requires_grad:
            self.requires_grad = True

    @staticmethod
    def _make(data, node=None, requires_grad=False) -> "Tensor":
        """A plain Tensor around ``data`` (an array of either family), fast."""
        t = object.__new__(Tensor)
        t._data = data
        t._node = node
        t._requires_grad = requires_grad
        t._grad = None
        return t

    # ------------------------------------------------------------------ autograd state
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value) -> None:
        value = bool(value)
        if value and not self.dtype.is_floating_point:
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        if self._node is not None and not value:
            raise RuntimeError("you can only change requires_grad flags of leaf variables. If "
                               "you want to use a computed variable in a subgraph that doesn't "
                               "require differentiation use var_no_grad = var.detach().")
        self._requires_grad = value

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        self.requires_grad = requires_grad
        return self

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value) -> None:
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad expected to be a Tensor or None but got grad "
                                f"of type {type(value).__name__}")
            if tuple(value.shape) != tuple(self.shape):
                raise RuntimeError(f"assigned grad has data of a different size: "
                                   f"{value.shape} vs {self.shape}")
        self._grad = value

    @property
    def grad_fn(self):
        return self._node

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def data(self) -> "Tensor":
        """The values as a Tensor that shares memory and records nothing."""
        return Tensor._make(self._data)

    @data.setter
    def data(self, value) -> None:
        self._data = value._data if isinstance(value, Tensor) else as_array(value)

    def detach(self) -> "Tensor":
        return Tensor._make(self._data)

    def detach_(self) -> "Tensor":
        self._node, self._requires_grad = None, False
        return self

    def backward(self, gradient=None, retain_graph=None, create_graph: bool = False,
                 inputs=None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (``gradient`` weights the
        elements of a non-scalar self). The graph is freed unless ``retain_graph``."""
        if create_graph or inputs is not None:
            raise NotImplementedError("cnnlab's backward has no create_graph or inputs")
        if not self._requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have "
                               "a grad_fn")
        xp = ns(self._data)
        if gradient is None:
            if xp.numel(self._data) != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            g = xp.ones_like(self._data)
        else:
            g = gradient._data if isinstance(gradient, Tensor) else \
                place(np.asarray(gradient), self.device)
            if tuple(g.shape) != tuple(self.shape):
                raise RuntimeError(f"Mismatch in shape: grad_output[0] has a shape of "
                                   f"{Size(g.shape)} and output[0] has a shape of "
                                   f"{self.shape}.")
            g = xp.copy(place(g, self.device, self.dtype))  # never the caller's memory
        autograd.backward(self, g, bool(retain_graph))

    # ------------------------------------------------------------------ description
    @property
    def shape(self) -> Size:
        return Size(self._data.shape)

    def size(self, dim=None):
        return self.shape if dim is None else int(self._data.shape[_dim(dim, self.ndim)])

    @property
    def dtype(self) -> dtype:
        return as_dtype(self._data.dtype)

    @property
    def device(self) -> device:
        return CPU if isinstance(self._data, np.ndarray) else as_device(self._data.device)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def dim(self) -> int:
        return self._data.ndim

    ndimension = dim

    def numel(self) -> int:
        return int(ns(self._data).numel(self._data))

    nelement = numel

    def element_size(self) -> int:
        return self.dtype.itemsize

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    def __len__(self) -> int:
        if not self.ndim:
            raise TypeError("len() of a 0-d tensor")
        return int(self._data.shape[0])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    # ------------------------------------------------------------------ values out
    def numpy(self, *, force: bool = False) -> np.ndarray:
        """The values as a NumPy array: the same memory on device "cpu" (and "torch:cpu"),
        as torch's. ``force=True`` detaches and copies from any device."""
        if force:
            return np.array(ns(self._data).to_host(self._data))
        if self._requires_grad:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use "
                               "tensor.detach().numpy() instead.")
        if isinstance(self._data, np.ndarray):
            return self._data
        if self._data.device.type != "cpu":
            raise TypeError(f"can't convert {self._data.device} device type tensor to numpy. "
                            f"Use Tensor.cpu() to copy the tensor to host memory first.")
        return self._data.numpy()

    def __array__(self, dtype=None, copy=None):
        a = ns(self._data).to_host(self._data)
        return a if dtype is None else a.astype(dtype)

    def item(self):
        if self.numel() != 1:
            raise RuntimeError(f"a Tensor with {self.numel()} elements cannot be converted to "
                               "Scalar")
        return self._data.item()

    def tolist(self):
        return self._data.tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.dtype.is_floating_point or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an "
                            "index")
        return int(self.item())

    def __bool__(self):
        if self.numel() != 1:
            raise RuntimeError(f"Boolean value of Tensor with more than one value is ambiguous")
        return bool(self.item())

    def __repr__(self):
        return _format(self)

    def __format__(self, spec):
        return format(self.item(), spec) if self.ndim == 0 else repr(self)

    # ------------------------------------------------------------------ moving, casting
    def to(self, *args, **kwargs) -> "Tensor":
        """``to(device)``, ``to(dtype)``, ``to(device, dtype)``, ``to(other)``; keywords
        ``device``, ``dtype``, ``non_blocking`` and ``copy`` as torch's. Differentiable."""
        dev, dt, copy = _to_args(args, kwargs)
        if (dev is None or dev == self.device) and (dt is None or dt == self.dtype):
            return P.Clone.apply(self) if copy else self
        return P.Copy.apply(self, device=dev, dtype=dt)

    def cpu(self) -> "Tensor":
        return self.to(CPU)

    def cuda(self, device=None) -> "Tensor":
        return self.to("cuda" if device is None else as_device(device if not isinstance(
            device, int) else f"cuda:{device}"))

    def float(self) -> "Tensor":
        return self.to(dtype=as_dtype("float32"))

    def double(self) -> "Tensor":
        return self.to(dtype=as_dtype("float64"))

    def long(self) -> "Tensor":
        return self.to(dtype=as_dtype("int64"))

    def int(self) -> "Tensor":
        return self.to(dtype=as_dtype("int32"))

    def bool(self) -> "Tensor":
        return self.to(dtype=as_dtype("bool"))

    def type(self, dtype=None):
        if dtype is None:
            return f"cnnlab.{self.dtype.name}"
        return self.to(dtype=as_dtype(dtype))

    def clone(self) -> "Tensor":
        return P.Clone.apply(self)

    def contiguous(self) -> "Tensor":
        return self

    # ------------------------------------------------------------------ arithmetic
    def _operand(self, other):
        """``other`` for a binary op with self: a Tensor of the same family, or a number."""
        if isinstance(other, Tensor):
            if type(other._data) is not type(self._data):
                raise RuntimeError(f"Expected all tensors to be on the same device, but found "
                                   f"at least two devices, {self.device} and {other.device}!")
            return other
        if isinstance(other, np.generic) and other.ndim == 0:
            other = other.item()  # a NumPy scalar counts as a Python number, as in torch
        if isinstance(other, numbers.Number):
            return other
        return Tensor._make(place(np.asarray(other) if not is_torch(other) else other,
                                  self.device))

    def __add__(self, other):
        return P.Add.apply(self, self._operand(other))

    def __radd__(self, other):
        return P.Add.apply(self._operand(other), self)

    def __sub__(self, other):
        return P.Sub.apply(self, self._operand(other))

    def __rsub__(self, other):
        return P.Sub.apply(self._operand(other), self)

    def __mul__(self, other):
        return P.Mul.apply(self, self._operand(other))

    def __rmul__(self, other):
        return P.Mul.apply(self._operand(other), self)

    def __truediv__(self, other):
        return P.Div.apply(self, self._operand(other))

    def __rtruediv__(self, other):
        return P.Div.apply(self._operand(other), self)

    def __pow__(self, other):
        return P.Pow.apply(self, self._operand(other))

    def __rpow__(self, other):
        return P.Pow.apply(self._operand(other), self)

    def __matmul__(self, other):
        return N.Matmul.apply(self, self._operand(other))

    def __rmatmul__(self, other):
        return N.Matmul.apply(self._operand(other), self)

    def __neg__(self):
        return P.Neg.apply(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return P.Abs.apply(self)

    def add(self, other, alpha=1):
        return self + (other if alpha == 1 else other * alpha)

    def sub(self, other, alpha=1):
        return self - (other if alpha == 1 else other * alpha)

    def mul(self, other):
        return self * other

    def div(self, other):
        return self / other

    def pow(self, exponent):
        return self ** exponent

    def neg(self):
        return -self

    def matmul(self, other):
        return self @ other

    mm = matmul

    def exp(self):
        return P.Exp.apply(self)

    def log(self):
        return P.Log.apply(self)

    def sqrt(self):
        return P.Sqrt.apply(self)

    def abs(self):
        return P.Abs.apply(self)

    def relu(self):
        return P.Relu.apply(self)

    def sigmoid(self):
        return P.Sigmoid.apply(self)

    def tanh(self):
        return P.Tanh.apply(self)

    def clamp(self, min=None, max=None):
        return P.Clamp.apply(self, min, max)

    clip = clamp

    def maximum(self, other):
        return P.Maximum.apply(self, self._operand(other))

    def minimum(self, other):
        return P.Minimum.apply(self, self._operand(other))

    def softmax(self, dim):
        return N.Softmax.apply(self, _dim(dim, self.ndim))

    def log_softmax(self, dim):
        return N.LogSoftmax.apply(self, _dim(dim, self.ndim))

    # ------------------------------------------------------------------ comparisons
    def _compare(self, other, op):
        if other is None:
            return False
        o = self._operand(other)
        return Tensor._make(as_array(op(self._data, o._data if isinstance(o, Tensor) else o)))

    def __eq__(self, other):
        return self._compare(other, lambda a, b: a == b)

    def __ne__(self, other):
        return self._compare(other, lambda a, b: a != b)

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b)

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b)

    eq, ne, lt, le, gt, ge = __eq__, __ne__, __lt__, __le__, __gt__, __ge__

    def __invert__(self):
        return Tensor._make(as_array(~self._data))

    def __and__(self, other):
        return self._compare(other, lambda a, b: a & b)

    def __or__(self, other):
        return self._compare(other, lambda a, b: a | b)

    def isnan(self):
        return Tensor._make(as_array(self._data != self._data))

    def isfinite(self):
        return Tensor._make(as_array(ns(self._data).isfinite(self._data)))

    def all(self):
        return Tensor._make(as_array(self._data.all()))

    def any(self):
        return Tensor._make(as_array(self._data.any()))

    # ------------------------------------------------------------------ reductions
    def sum(self, dim=None, keepdim: bool = False, dtype=None):
        t = self if dtype is None else self.to(dtype=dtype)
        if not t.dtype.is_floating_point and t.dtype.name != "int64":
            t = t.to(dtype=as_dtype("int64"))  # torch sums bool and int32 as int64
        return R.Sum.apply(t, dim=dim, keepdim=keepdim)

    def mean(self, dim=None, keepdim: bool = False, dtype=None):
        t = self if dtype is None else self.to(dtype=dtype)
        if not t.dtype.is_floating_point:
            raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be "
                               f"either a floating point or complex dtype. Got: "
                               f"{t.dtype.name.capitalize()}")
        return R.Mean.apply(t, dim=dim, keepdim=keepdim)

    def var(self, dim=None, keepdim: bool = False, *, correction=1, unbiased=None):
        if unbiased is not None:
            correction = int(bool(unbiased))
        centred = self - self.mean(dim, keepdim=True)
        n = self.numel() if dim is None else int(np.prod([self.shape[d] for d in
                                                          R.axes(dim, self.ndim)]))
        return (centred * centred).sum(dim, keepdim) / max(n - correction, 0)

    def std(self, dim=None, keepdim: bool = False, *, correction=1, unbiased=None):
        return self.var(dim, keepdim, correction=correction, unbiased=unbiased).sqrt()

    def norm(self, p=2):
        if p != 2:
            return (self.abs() ** p).sum() ** (1.0 / p)
        return (self * self).sum().sqrt()

    def _extremum(self, dim, keepdim, other, largest):
        if isinstance(dim, Tensor):
            other, dim = dim, None
        if other is not None:
            return self.maximum(other) if largest else self.minimum(other)
        if dim is None:
            return R.ExtremumAll.apply(self, largest=largest)
        values, indices = R.ExtremumDim.apply(self, dim, keepdim=keepdim, largest=largest)
        return (return_types.max if largest else return_types.min)(values, indices)

    def max(self, dim=None, keepdim: bool = False, *, other=None):
        """The largest element; with ``dim``: (values, indices) along it; with a tensor:
        the element-wise maximum."""
        return self._extremum(dim, keepdim, other, True)

    def min(self, dim=None, keepdim: bool = False, *, other=None):
        return self._extremum(dim, keepdim, other, False)

    def amax(self, dim=None, keepdim: bool = False):
        return self.max() if dim is None else self.max(dim, keepdim).values

    def amin(self, dim=None, keepdim: bool = False):
        return self.min() if dim is None else self.min(dim, keepdim).values

    def argmax(self, dim=None, keepdim: bool = False):
        a = self._data
        xp = ns(a)
        if dim is None:
            return Tensor._make(as_array(xp.argmax(a.reshape(-1), 0)))
        return Tensor._make(as_array(xp.argmax(a, _dim(dim, a.ndim), keepdim)))

    def argmin(self, dim=None, keepdim: bool = False):
        a = self._data
        xp = ns(a)
        if dim is None:
            return Tensor._make(as_array(xp.argmin(a.reshape(-1), 0)))
        return Tensor._make(as_array(xp.argmin(a, _dim(dim, a.ndim), keepdim)))

    # ------------------------------------------------------------------ shapes
    def view(self, *shape):
        return S.Reshape.apply(self, shape_args(shape))

    def reshape(self, *shape):
        return S.Reshape.apply(self, shape_args(shape))

    def view_as(self, other):
        return self.reshape(other.shape)

    reshape_as = view_as

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        shape = tuple(self.shape)
        if not shape:
            return self.reshape(1)
        start, end = _dim(start_dim, len(shape)), _dim(end_dim, len(shape))
        if start > end:
            raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
        return self.reshape(shape[:start] + (-1,) + shape[end + 1:])

    def unflatten(self, dim: int, sizes):
        shape = tuple(self.shape)
        d = _dim(dim, len(shape))
        return self.reshape(shape[:d] + tuple(sizes) + shape[d + 1:])

    def squeeze(self, dim=None):
        shape = tuple(self.shape)
        if dim is None:
            return self.reshape(tuple(s for s in shape if s != 1))
        dims = {_dim(d, len(shape)) for d in ((dim,) if isinstance(dim, int) else dim)}
        return self.reshape(tuple(s for i, s in enumerate(shape) if not (i in dims and s == 1)))

    def unsqueeze(self, dim: int):
        shape = list(self.shape)
        shape.insert(_dim(dim, len(shape) + 1), 1)
        return self.reshape(tuple(shape))

    def permute(self, *dims):
        dims = shape_args(dims)
        if len(dims) != self.ndim:
            raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input "
                               f"does not match the length of the desired ordering of "
                               f"dimensions i.e. input.dim() = {self.ndim} is not equal to "
                               f"len(dims) = {len(dims)}")
        return S.Permute.apply(self, tuple(_dim(d, self.ndim) for d in dims))

    def transpose(self, dim0: int, dim1: int):
        order = list(range(self.ndim))
        a, b = _dim(dim0, self.ndim), _dim(dim1, self.ndim)
        order[a], order[b] = order[b], order[a]
        return S.Permute.apply(self, tuple(order))

    swapaxes = transpose

    def t(self):
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is "
                               f"{self.ndim}D")
        return self if self.ndim < 2 else self.transpose(0, 1)

    @property
    def T(self):
        return S.Permute.apply(self, tuple(reversed(range(self.ndim))))

    def expand(self, *sizes):
        sizes = shape_args(sizes)
        shape = tuple(self.shape)
        lead = len(sizes) - len(shape)
        full = tuple(shape[i - lead] if s == -1 else s for i, s in enumerate(sizes))
        return S.Expand.apply(self, full)

    def expand_as(self, other):
        return self.expand(other.shape)

    def __getitem__(self, key):
        return S.Index.apply(self, _key(key, self._data))

    def __setitem__(self, key, value):
        self._check_inplace()
        self._data[_key(key, self._data)] = value._data if isinstance(value, Tensor) \
            else value

    # ------------------------------------------------------------------ in place
    def _check_inplace(self) -> None:
        if self._requires_grad and self._node is None and autograd.is_grad_enabled():
            raise RuntimeError("a leaf Variable that requires grad is being used in an "
                               "in-place operation.")

    def _set(self, values) -> "Tensor":
        """Write ``values`` (an array or number) into self's memory; returns self."""
        self._check_inplace()
        d = self._data
        if isinstance(d, np.ndarray):
            np.copyto(d, values, casting="unsafe")
        elif isinstance(values, numbers.Number):
            d.fill_(values)
        else:
            d.copy_(values if is_torch(values) else place(values, self.device))
        return self

    def _value(self, other):
        return other._data if isinstance(other, Tensor) else other

    def copy_(self, src, non_blocking: bool = False) -> "Tensor":
        s = src._data if isinstance(src, Tensor) else src
        return self._set(place(s, self.device, self.dtype) if hasattr(s, "shape") else s)

    def zero_(self) -> "Tensor":
        return self._set(0)

    def fill_(self, value) -> "Tensor":
        return self._set(self._value(value))

    def add_(self, other, alpha=1) -> "Tensor":
        o = self._value(other)
        return self._set(self._data + (o if alpha == 1 else o * alpha))

    def sub_(self, other, alpha=1) -> "Tensor":
        o = self._value(other)
        return self._set(self._data - (o if alpha == 1 else o * alpha))

    def mul_(self, other) -> "Tensor":
        return self._set(self._data * self._value(other))

    def div_(self, other) -> "Tensor":
        return self._set(self._data / self._value(other))

    def clamp_(self, min=None, max=None) -> "Tensor":
        return self._set(ns(self._data).clip(self._data, min, max))

    def uniform_(self, a: float = 0.0, b: float = 1.0, *, generator=None) -> "Tensor":
        return self._set(resolve(generator).uniform(a, b, tuple(self.shape), self.dtype.numpy))

    def normal_(self, mean: float = 0.0, std: float = 1.0, *, generator=None) -> "Tensor":
        return self._set(resolve(generator).normal(mean, std, tuple(self.shape),
                                                   self.dtype.numpy))


autograd._register_tensor_type(Tensor)


def zero_grads(tensors, set_to_none: bool = True) -> None:
    """Clear the ``.grad`` of each tensor: None (torch's default), or zeros in place."""
    for t in tensors:
        if t._grad is None:
            continue
        if set_to_none:
            t._grad = None
        else:
            with autograd.no_grad():
                t._grad.zero_()


def _key(key, data):
    """An index key with Tensors replaced by arrays of ``data``'s family."""
    if isinstance(key, tuple):
        return tuple(_key(k, data) for k in key)
    if isinstance(key, Tensor):
        key = key._data
    if isinstance(key, (list, np.ndarray)) or is_torch(key):
        if is_torch(data) and not is_torch(key):
            key = place(np.asarray(key), as_device(data.device))
        elif not is_torch(data) and is_torch(key):
            key = key.detach().cpu().numpy()
    return key


def _to_args(args, kwargs):
    """(device or None, dtype or None, copy) from ``Tensor.to``/``Module.to`` arguments."""
    dev = kwargs.pop("device", None)
    dt = kwargs.pop("dtype", None)
    copy = bool(kwargs.pop("copy", False))
    kwargs.pop("non_blocking", None)
    kwargs.pop("memory_format", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, Tensor):
            dev, dt = a.device, a.dtype
        elif isinstance(a, (str, device, int)) and not isinstance(a, bool) or \
                type(a).__name__ == "device":
            dev = a
        elif isinstance(a, bool):
            continue  # non_blocking given by position
        else:
            dt = a
    return (None if dev is None else as_device(dev), None if dt is None else as_dtype(dt),
            copy)


def _format(t: Tensor) -> str:
    """torch's repr: ``tensor([[1.5000, 2.0000]], requires_grad=True)``."""
    a = ns(t._data).to_host(t._data)
    if a.dtype.kind == "f":
        finite = a[np.isfinite(a)]
        integral = finite.size == 0 or bool(np.all(finite == np.round(finite)))
        text = np.array2string(a, separator=", ", prefix="tensor(",
                               precision=4, floatmode="maxprec" if integral else "fixed",
                               threshold=1000, edgeitems=3)
    else:
        text = np.array2string(a, separator=", ", prefix="tensor(", threshold=1000,
                               edgeitems=3)
    extras = []
    if t.device != CPU:
        extras.append(f"device='{t.device}'")
    if t.dtype.name not in ("float32", "int64", "bool") or (
            t.dtype.name == "float32" and get_default_dtype().name != "float32"):
        extras.append(f"dtype={t.dtype}")
    if t._node is not None:
        extras.append(f"grad_fn=<{t._node.name()}>")
    elif t._requires_grad:
        extras.append("requires_grad=True")
    return "tensor(" + text + "".join(", " + e for e in extras) + ")"


# --------------------------------------------------------------------------- from data


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor (a copy) with ``data``'s values: nested lists, numbers, a NumPy array, a
    torch tensor or a Tensor. Python floats become the default dtype (float32), ints int64,
    bools bool; arrays keep their dtype."""
    if isinstance(data, Tensor):
        data = data._data
    if is_torch(data):
        arr = data.detach().clone()
        dev = as_device(device) if device is not None else as_device(arr.device)
    else:
        arr = np.array(data, copy=True)
        if not isinstance(data, (np.ndarray, np.generic)):
            arr = _default_kind(arr)
        if arr.dtype == np.float16 or arr.dtype.kind not in "fiub":
            raise TypeError(f"can't convert {arr.dtype} data to a cnnlab tensor")
        dev = CPU if device is None else as_device(device)
    out = Tensor._make(place(arr, dev, dtype))
    if requires_grad:
        out.requires_grad = True
    return out


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """``data`` as a tensor, sharing memory where the dtype and device already fit."""
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype) if (device or dtype) else data
    if isinstance(data, np.ndarray) or is_torch(data):
        dev = (CPU if isinstance(data, np.ndarray) else as_device(data.device)) \
            if device is None else as_device(device)
        return Tensor._make(place(data, dev, dtype))
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array: np.ndarray) -> Tensor:
    """A "cpu" tensor sharing ``array``'s memory (and dtype)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(array).__name__})")
    as_dtype(array.dtype)  # refuses dtypes cnnlab has not
    return Tensor._make(array)
