"""Element-wise ops with NumPy/torch broadcasting: arithmetic, activations, casts, copies.

A binary op's operand may be a plain number or a constant array (no gradient). Its
gradient is summed over the axes that broadcasting added or stretched (``unbroadcast``) and
cast back to the operand's dtype, so float32 parameters get float32 gradients even when
they met a float64 tensor.
"""
from __future__ import annotations

from .. import functional as F
from .._array import dtype_name, ns, place
from .._types import as_device
from ..autograd import Function

__all__ = ["unbroadcast", "Add", "Sub", "Mul", "Div", "Pow", "Neg", "Exp", "Log", "Sqrt",
           "Abs", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clamp", "Maximum", "Minimum",
           "Where", "Copy", "Clone"]


def _floating(a) -> bool:
    return dtype_name(a) in ("float32", "float64")


def unbroadcast(g, shape):
    """``g`` summed down to ``shape``: over leading axes and axes where shape has 1."""
    if tuple(g.shape) == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape)
                                      if s == 1 and g.shape[lead + i] != 1)
    return ns(g).sum(g, axis=axes).reshape(shape)


def _record(ctx, out, *operands) -> None:
    """Keep each operand's shape and dtype (None for a plain number) for ``_fit``."""
    if ctx.needs_input_grad:
        ctx.meta = [(tuple(a.shape), a.dtype) if hasattr(a, "shape") else None
                    for a in operands]


def _fit(ctx, i, g):
    """The gradient ``g`` of the output, as operand i's gradient (None if not needed)."""
    if not ctx.needs_input_grad[i] or ctx.meta[i] is None:
        return None
    shape, dtype = ctx.meta[i]
    g = unbroadcast(g, shape)
    return g if g.dtype == dtype else ns(g).astype(g, dtype)


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        out = a + b
        _record(ctx, out, a, b)
        return out

    @staticmethod
    def backward(ctx, g):
        return _fit(ctx, 0, g), _fit(ctx, 1, g)


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        out = a - b
        _record(ctx, out, a, b)
        return out

    @staticmethod
    def backward(ctx, g):
        return _fit(ctx, 0, g), (_fit(ctx, 1, -g) if ctx.needs_input_grad[1] else None)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        out = a * b
        _record(ctx, out, a, b)
        ctx.save_for_backward(a if ctx.needs_input_grad[1:] == (True,) else None,
                              b if ctx.needs_input_grad[:1] == (True,) else None)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        return (_fit(ctx, 0, g * b) if na else None, _fit(ctx, 1, g * a) if nb else None)


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        out = a / b
        _record(ctx, out, a, b)
        ctx.save_for_backward(a, b)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        return (_fit(ctx, 0, g / b) if na else None,
                _fit(ctx, 1, -g * a / (b * b)) if nb else None)


class Pow(Function):
    """a ** b for a tensor and a number, a number and a tensor, or two tensors."""

    @staticmethod
    def forward(ctx, a, b):
        out = a ** b
        _record(ctx, out, a, b)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        xp = ns(out)
        ga = gb = None
        if na:
            zero_power = not hasattr(b, "shape") and b == 0
            ga = _fit(ctx, 0, xp.zeros_like(g) if zero_power else g * b * a ** (b - 1))
        if nb:
            a_arr = a if hasattr(a, "shape") else xp.full((), a, out)
            # 0 ** b with b >= 0 has gradient 0 in b (torch masks the 0 * -inf)
            gb = _fit(ctx, 1, xp.where((a_arr == 0) & (b >= 0), 0, g * out * xp.log(a_arr)))
        return ga, gb


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        out = ns(a).exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        return g * ctx.saved_tensors[0]


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return ns(a).log(a)

    @staticmethod
    def backward(ctx, g):
        return g / ctx.saved_tensors[0]


class Sqrt(Function):
    @staticmethod
    def forward(ctx, a):
        out = ns(a).sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        return g / (2 * ctx.saved_tensors[0])


class Abs(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return ns(a).abs(a)

    @staticmethod
    def backward(ctx, g):
        a = ctx.saved_tensors[0]
        return g * ns(a).sign(a)


class Relu(Function):
    """Float arrays go to the twins' relu kernels (one pass, cnnlab's threads); integer
    ones (torch allows them) stay element-wise here."""

    @staticmethod
    def forward(ctx, a):
        out = F.relu(a) if _floating(a) else ns(a).maximum(a, 0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        out = ctx.saved_tensors[0]
        if _floating(out) and g.dtype == out.dtype:
            return F.relu_backward(g, out)
        return g * ~(out <= 0)


class LeakyRelu(Function):
    @staticmethod
    def forward(ctx, a, negative_slope=0.01):
        ctx.slope = negative_slope
        ctx.save_for_backward(a)
        return ns(a).where(a > 0, a, a * negative_slope)

    @staticmethod
    def backward(ctx, g):
        a = ctx.saved_tensors[0]
        return ns(a).where(a > 0, g, g * ctx.slope)


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, a):
        out = ns(a).sigmoid(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        y = ctx.saved_tensors[0]
        return g * (1 - y) * y


class Tanh(Function):
    @staticmethod
    def forward(ctx, a):
        out = ns(a).tanh(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        y = ctx.saved_tensors[0]
        return g * (1 - y * y)


class Clamp(Function):
    """min(max(a, lo), hi); the gradient passes where lo <= a <= hi (None: no bound)."""

    @staticmethod
    def forward(ctx, a, lo=None, hi=None):
        ctx.save_for_backward(a)
        ctx.bounds = lo, hi
        xp = ns(a)
        out = a if lo is None else xp.maximum(a, lo)
        return out if hi is None else xp.minimum(out, hi)

    @staticmethod
    def backward(ctx, g):
        a = ctx.saved_tensors[0]
        lo, hi = ctx.bounds
        keep = None if lo is None else a >= lo
        if hi is not None:
            keep = a <= hi if keep is None else keep & (a <= hi)
        return g if keep is None else g * keep


class _Extremum(Function):
    """Element-wise maximum/minimum of two tensors; at ties each gets half, as torch."""

    @staticmethod
    def pick(xp):
        raise NotImplementedError

    @classmethod
    def forward(cls, ctx, a, b):
        out = cls.pick(ns(a))(a, b)
        _record(ctx, out, a, b)
        ctx.save_for_backward(a, b)
        return out

    @classmethod
    def backward(cls, ctx, g):
        a, b = ctx.saved_tensors
        xp = ns(g)
        wins = a > b if cls is Maximum else a < b
        half = g * (a == b) / 2
        return (_fit(ctx, 0, xp.where(wins, g, half)) if ctx.needs_input_grad[0] else None,
                _fit(ctx, 1, xp.where(wins | (a == b), half, g))
                if ctx.needs_input_grad[1] else None)


class Maximum(_Extremum):
    @staticmethod
    def pick(xp):
        return xp.maximum


class Minimum(_Extremum):
    @staticmethod
    def pick(xp):
        return xp.minimum


class Where(Function):
    """``a`` where ``condition`` (a constant bool array), else ``b``."""

    @staticmethod
    def forward(ctx, condition, a, b):
        xp = ns(condition)
        out = xp.where(condition, a, b)
        _record(ctx, out, condition, a, b)
        ctx.save_for_backward(condition)
        return out

    @staticmethod
    def backward(ctx, g):
        cond = ctx.saved_tensors[0]
        xp = ns(g)
        return (None,
                _fit(ctx, 1, xp.where(cond, g, 0)) if ctx.needs_input_grad[1] else None,
                _fit(ctx, 2, xp.where(cond, 0, g)) if ctx.needs_input_grad[2] else None)


def _device_of(a):
    return as_device("cpu") if ns(a).__name__ == "NumPy" else as_device(a.device)


class Copy(Function):
    """``a`` on another device and/or in another dtype; the gradient goes back."""

    @staticmethod
    def forward(ctx, a, device=None, dtype=None):
        ctx.source = _device_of(a), a.dtype
        return place(a, device if device is not None else ctx.source[0], dtype)

    @staticmethod
    def backward(ctx, g):
        dev, dtype = ctx.source
        return place(g, dev, dtype)


class Clone(Function):
    @staticmethod
    def forward(ctx, a):
        return ns(a).copy(a)

    @staticmethod
    def backward(ctx, g):
        return g
