"""Reductions: sum and mean over dims, max/min over a dim (values and int64 indices) or over
everything. ``dim`` is None (all), an int or a tuple of ints; negative dims count from the
end, as in torch."""
from __future__ import annotations

from .._array import ns
from ..autograd import Function

__all__ = ["axes", "Sum", "Mean", "ExtremumDim", "ExtremumAll"]


def axes(dim, ndim: int):
    """``dim`` as a tuple of non-negative axes (None stays None: every axis)."""
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    n = max(ndim, 1)
    out = []
    for d in dims:
        if not -n <= d < n:
            raise IndexError(f"Dimension out of range (expected to be in range of "
                             f"[{-n}, {n - 1}], but got {d})")
        out.append(d % n)
    return tuple(out)


def _spread(g, shape, ax, keepdim):
    """The gradient of a reduction over ``ax`` back at the input's ``shape``."""
    if ax is not None and not keepdim and len(shape):
        kept = list(shape)
        for a in ax:
            kept[a] = 1
        g = g.reshape(kept)
    return ns(g).broadcast_to(g, tuple(shape))


class Sum(Function):
    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False):
        ctx.shape, ctx.ax, ctx.keepdim = tuple(a.shape), axes(dim, a.ndim), keepdim
        return ns(a).sum(a, ctx.ax, keepdim)

    @staticmethod
    def backward(ctx, g):
        return _spread(g, ctx.shape, ctx.ax, ctx.keepdim)


class Mean(Function):
    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False):
        ctx.shape, ctx.ax, ctx.keepdim = tuple(a.shape), axes(dim, a.ndim), keepdim
        n = 1
        for i, s in enumerate(ctx.shape):
            if ctx.ax is None or i in ctx.ax:
                n *= s
        ctx.count = n
        return ns(a).mean(a, ctx.ax, keepdim)

    @staticmethod
    def backward(ctx, g):
        return _spread(g / ctx.count, ctx.shape, ctx.ax, ctx.keepdim)


class ExtremumDim(Function):
    """(values, indices) of the max (``largest``) or min along ``dim``; the first one at ties
    (a NaN counts as the extremum). The gradient goes to the chosen index."""

    @staticmethod
    def forward(ctx, a, dim, keepdim=False, largest=True):
        xp = ns(a)
        (d,) = axes(dim, a.ndim)
        ctx.shape, ctx.dim, ctx.keepdim = tuple(a.shape), d, keepdim
        if a.ndim == 0:
            return a, xp.asarray(0, a)
        idx = (xp.argmax if largest else xp.argmin)(a, d, True)
        values = xp.take_along_axis(a, idx, d)
        ctx.save_for_backward(idx)
        if not keepdim:
            values, idx = values.squeeze(d), idx.squeeze(d)
        return values, idx

    @staticmethod
    def backward(ctx, g):
        if not ctx.shape:
            return g
        (idx,) = ctx.saved_tensors
        if not ctx.keepdim:
            g = g.reshape(tuple(idx.shape))
        return ns(g).scatter_along_axis(ctx.shape, idx, g, ctx.dim)


class ExtremumAll(Function):
    """The max (``largest``) or min of all elements; at ties the gradient is shared evenly
    among the tied elements, as torch's."""

    @staticmethod
    def forward(ctx, a, largest=True):
        xp = ns(a)
        if xp.numel(a) == 0:
            raise RuntimeError("max(): Expected reduction dim to be specified for input.numel() "
                               "== 0. Specify the reduction dim with the 'dim' argument.")
        out = (xp.amax if largest else xp.amin)(a)
        ctx.save_for_backward(a, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved_tensors
        mask = (a == out) | ((a != a) & (out != out))
        return g * mask / mask.sum()
