"""Ops that move values without computing: reshape, permute, expand, indexing, cat, stack.

Reshape serves view, flatten, squeeze and unsqueeze (NumPy and torch both give a view when
the layout allows, else a copy); permute serves t and transpose. Indexing takes any key the
family takes (ints, slices, None, Ellipsis, bool masks, int64 index arrays); its gradient is
written back into zeros of the input's shape, accumulating repeated indices.
"""
from __future__ import annotations

from .._array import ns
from ..autograd import Function
from .pointwise import unbroadcast

__all__ = ["Reshape", "Permute", "Expand", "Index", "Cat", "Stack", "is_basic_key"]


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = tuple(a.shape)
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape)


class Permute(Function):
    @staticmethod
    def forward(ctx, a, dims):
        ctx.dims = dims
        return ns(a).transpose(a, dims)

    @staticmethod
    def backward(ctx, g):
        inverse = [0] * len(ctx.dims)
        for i, d in enumerate(ctx.dims):
            inverse[d] = i
        return ns(g).transpose(g, tuple(inverse))


class Expand(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = tuple(a.shape)
        return ns(a).broadcast_to(a, shape)

    @staticmethod
    def backward(ctx, g):
        return unbroadcast(g, ctx.shape)


def is_basic_key(key) -> bool:
    """True for ints, slices, None and Ellipsis (a view, each element at most once)."""
    parts = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, (int, slice)) and
               not isinstance(k, bool) for k in parts)


class Index(Function):
    @staticmethod
    def forward(ctx, a, key):
        ctx.key, ctx.shape = key, tuple(a.shape)
        ctx.basic = is_basic_key(key)
        return a[key]

    @staticmethod
    def backward(ctx, g):
        xp = ns(g)
        if ctx.basic:
            out = xp.zeros(ctx.shape, g)
            out[ctx.key] = g
            return out
        return xp.index_add(ctx.shape, ctx.key, g)


class Cat(Function):
    """Concatenate along ``dim``; the gradient is cut back into the inputs' sizes."""

    @staticmethod
    def forward(ctx, *arrays, dim=0):
        ctx.dim = dim
        ctx.sizes = [a.shape[dim] for a in arrays]
        return ns(arrays[0]).concatenate(arrays, dim)

    @staticmethod
    def backward(ctx, g):
        out, start = [], 0
        index = [slice(None)] * g.ndim
        for size in ctx.sizes:
            index[ctx.dim] = slice(start, start + size)
            out.append(g[tuple(index)])
            start += size
        return tuple(out)


class Stack(Function):
    """Stack along a new ``dim``; each input's gradient is its slice."""

    @staticmethod
    def forward(ctx, *arrays, dim=0):
        ctx.dim = dim
        return ns(arrays[0]).stack(arrays, dim)

    @staticmethod
    def backward(ctx, g):
        index = [slice(None)] * g.ndim
        out = []
        for i in range(g.shape[ctx.dim]):
            index[ctx.dim] = i
            out.append(g[tuple(index)])
        return tuple(out)
