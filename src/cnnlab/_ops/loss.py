"""Losses, each one node: cross-entropy (log-softmax and NLL fused), NLL, mean squared
error, binary cross-entropy on logits. Reductions "mean", "sum", "none" as torch's.

Cross-entropy and NLL with class-index targets are written with one coefficient matrix
``A`` (rows, classes): the loss is ``-sum(A * log p)`` (per row for "none"), where ``A``
holds ``(1 - label_smoothing) * weight[target]`` at each row's target, plus
``label_smoothing / C * weight[c]`` everywhere, zero rows for ``ignore_index``, all divided by
the sum of the target weights for "mean" (torch's normalisation). The logits' gradient is
then ``softmax * rowsum(A) - A``: no one-hot loop, one formula for every option.
Probability targets (same shape as the input) use ``A = q * weight`` and divide by the
number of rows.
"""
from __future__ import annotations

from .._array import NumPy, ns
from ..autograd import Function
from .nn import log_softmax
from .pointwise import unbroadcast

__all__ = ["CrossEntropy", "NLL", "MSE", "BCEWithLogits", "rows", "unrows"]


def rows(x):
    """(N, C, d1, ...) -> (N*d1*..., C) with the classes last; (C,) -> (1, C)."""
    if x.ndim == 1:
        return x.reshape(1, -1)
    if x.ndim == 2:
        return x
    moved = ns(x).transpose(x, (0,) + tuple(range(2, x.ndim)) + (1,))
    return moved.reshape(-1, x.shape[1])


def unrows(r, shape):
    """The inverse of :func:`rows` for an input of ``shape``."""
    if len(shape) <= 2:
        return r.reshape(shape)
    moved = r.reshape((shape[0],) + tuple(shape[2:]) + (shape[1],))
    n = len(shape)
    return ns(r).transpose(moved, (0, n - 1) + tuple(range(1, n - 1)))


def _coefficients(x_rows, target, weight, ignore_index, reduction, smoothing, probs):
    """(A, divisor) for class indices (``target`` int64 of the rows' count) or class
    probabilities (``target`` like ``x_rows``)."""
    xp = ns(x_rows)
    n_rows, n_classes = x_rows.shape
    if probs:
        q = target if not smoothing else target * (1 - smoothing) + smoothing / n_classes
        a = q if weight is None else q * weight.reshape(1, -1)
        return a, (n_rows if reduction == "mean" else 1)
    t = target.reshape(-1)
    valid = t != ignore_index
    safe = xp.where(valid, t, 0)
    if xp is NumPy and safe.size and (int(safe.min()) < 0 or int(safe.max()) >= n_classes):
        bad = t[valid & ((t < 0) | (t >= n_classes))][0]
        raise IndexError(f"Target {int(bad)} is out of bounds.")
    valid_f = xp.astype(valid, x_rows.dtype)
    w_t = valid_f
    if weight is not None:
        w_t = w_t * weight[safe]
    a = xp.scatter_along_axis(tuple(x_rows.shape), safe.reshape(-1, 1),
                              (w_t * (1 - smoothing)).reshape(-1, 1), 1)
    if smoothing:
        per_class = (smoothing / n_classes) * (1 if weight is None else weight.reshape(1, -1))
        a = a + valid_f.reshape(-1, 1) * per_class
    return a, (xp.sum(w_t) if reduction == "mean" else 1)


def _reduce(per_row, reduction, divisor, target_shape):
    xp = ns(per_row)
    if reduction == "none":
        return per_row.reshape(target_shape)
    total = xp.sum(per_row)
    return total if reduction == "sum" else total / divisor


def _row_grad(g, reduction, divisor, n_rows):
    """The loss gradient per row, shaped (rows, 1), from the output gradient ``g``."""
    if reduction == "none":
        return g.reshape(n_rows, 1)
    return (g / divisor if reduction == "mean" else g).reshape(1, 1)


class CrossEntropy(Function):
    """cross_entropy(input (N, C, ...) or (C,), target, weight) -> loss; see the module
    docstring. ``probs``: target holds class probabilities."""

    @staticmethod
    def forward(ctx, x, target, weight=None, ignore_index=-100, reduction="mean",
                label_smoothing=0.0, probs=False):
        xr = rows(x)
        logp = log_softmax(xr, 1)
        tr = rows(target) if probs else target
        a, divisor = _coefficients(xr, tr, weight, ignore_index, reduction, label_smoothing,
                                   probs)
        per_row = -ns(x).sum(a * logp, 1)
        ctx.reduction, ctx.divisor, ctx.shape = reduction, divisor, tuple(x.shape)
        ctx.probs, ctx.smoothing = probs, label_smoothing
        ctx.save_for_backward(logp, a, weight)
        target_shape = tuple(target.shape)
        if probs:
            target_shape = (x.shape[0],) + tuple(x.shape[2:]) if x.ndim > 1 else ()
        return _reduce(per_row, reduction, divisor, target_shape)

    @staticmethod
    def backward(ctx, g):
        logp, a, weight = ctx.saved_tensors
        xp = ns(g)
        scale = _row_grad(g, ctx.reduction, ctx.divisor, logp.shape[0])
        gx = unrows((xp.exp(logp) * xp.sum(a, 1, True) - a) * scale, ctx.shape) \
            if ctx.needs_input_grad[0] else None
        gt = None
        if ctx.probs and ctx.needs_input_grad[1]:
            w = 1 if weight is None else weight.reshape(1, -1)
            gt = unrows(-(1 - ctx.smoothing) * w * logp * scale, ctx.shape)
        return gx, gt


class NLL(Function):
    """nll_loss(input log-probabilities (N, C, ...) or (C,), target class indices)."""

    @staticmethod
    def forward(ctx, x, target, weight=None, ignore_index=-100, reduction="mean"):
        xr = rows(x)
        a, divisor = _coefficients(xr, target, weight, ignore_index, reduction, 0.0, False)
        per_row = -ns(x).sum(a * xr, 1)
        ctx.reduction, ctx.divisor, ctx.shape = reduction, divisor, tuple(x.shape)
        ctx.save_for_backward(a)
        return _reduce(per_row, reduction, divisor, tuple(target.shape))

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        scale = _row_grad(g, ctx.reduction, ctx.divisor, a.shape[0])
        return unrows(-a * scale, ctx.shape), None


def _reduce_elements(loss, reduction):
    xp = ns(loss)
    return loss if reduction == "none" else xp.sum(loss) if reduction == "sum" \
        else xp.mean(loss)


def _element_scale(g, reduction, n):
    return g / n if reduction == "mean" else g


class MSE(Function):
    """mean((input - target) ** 2) (or sum, or none); broadcasting as torch's."""

    @staticmethod
    def forward(ctx, x, y, reduction="mean"):
        diff = x - y
        ctx.reduction, ctx.shapes = reduction, (tuple(x.shape), tuple(y.shape))
        ctx.save_for_backward(diff)
        return _reduce_elements(diff * diff, reduction)

    @staticmethod
    def backward(ctx, g):
        (diff,) = ctx.saved_tensors
        gd = 2 * diff * _element_scale(g, ctx.reduction, ns(diff).numel(diff))
        return (unbroadcast(gd, ctx.shapes[0]) if ctx.needs_input_grad[0] else None,
                unbroadcast(-gd, ctx.shapes[1]) if ctx.needs_input_grad[1] else None)


class BCEWithLogits(Function):
    """Binary cross-entropy on logits, stable for any logit:
    ``(1 - y) * x - (1 + (pos_weight - 1) * y) * log_sigmoid(x)``, times ``weight``."""

    @staticmethod
    def forward(ctx, x, y, weight=None, pos_weight=None, reduction="mean"):
        xp = ns(x)
        ls = xp.log_sigmoid(x)
        lw = 1 if pos_weight is None else 1 + (pos_weight - 1) * y
        loss = (1 - y) * x - lw * ls
        if weight is not None:
            loss = loss * weight
        ctx.reduction, ctx.shapes = reduction, (tuple(x.shape), tuple(y.shape))
        ctx.save_for_backward(x, y, ls, weight, pos_weight)
        return _reduce_elements(loss, reduction)

    @staticmethod
    def backward(ctx, g):
        x, y, ls, weight, pos_weight = ctx.saved_tensors
        xp = ns(x)
        lw = 1 if pos_weight is None else 1 + (pos_weight - 1) * y
        scale = _element_scale(g, ctx.reduction, xp.numel(ls))
        if weight is not None:
            scale = scale * weight
        gx = gy = None
        if ctx.needs_input_grad[0]:
            gx = unbroadcast(((1 - y) - lw * (1 - xp.exp(ls))) * scale, ctx.shapes[0])
        if ctx.needs_input_grad[1]:
            dy = -x if pos_weight is None else -x - (pos_weight - 1) * ls
            gy = unbroadcast(dy * scale, ctx.shapes[1])
        return gx, gy
