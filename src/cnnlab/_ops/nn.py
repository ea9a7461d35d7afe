"""The network ops. Each forward and each backward is one call of ``cnnlab.functional``
(its checks, its twin, its kernels) where the kernel contract has the op: matmul and
linear (the matmul kernel), conv2d, conv_transpose2d, max and average pooling. The rest
(adaptive pooling with uneven windows, batch normalisation, softmax) are a few array
expressions."""
from __future__ import annotations

from .. import functional as F
from .._array import ns
from ..autograd import Function
from .pointwise import unbroadcast

__all__ = ["Matmul", "Linear", "Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d",
           "AdaptiveAvgPool2d", "BatchNormTrain", "BatchNormEval", "Softmax", "LogSoftmax"]


def _kernel_ok(*arrays) -> bool:
    """True when the matmul kernel takes these operands: float32/float64, one dtype."""
    dt = arrays[0].dtype
    return all(a.dtype == dt for a in arrays) and str(dt).rsplit(".", 1)[-1] in (
        "float32", "float64")


class Matmul(Function):
    """``a @ b`` with NumPy/torch semantics. Two 2-D float matrices go to the matmul kernel
    (``functional.linear(a, b.T)``, gradients from one ``linear_backward``); other shapes
    and dtypes to the family's own matmul."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        ctx.kernel = a.ndim == 2 and b.ndim == 2 and _kernel_ok(a, b)
        if ctx.kernel:
            return F.linear(a, b.T)
        # 1-D operands as (1, K) and (K, 1) matrices, the added dims dropped from the result
        out = ns(a).matmul(a.reshape(1, -1) if a.ndim == 1 else a,
                           b.reshape(-1, 1) if b.ndim == 1 else b)
        ctx.full_shape = tuple(out.shape)
        keep = [i for i in range(out.ndim) if not (a.ndim == 1 and i == out.ndim - 2
                                                    or b.ndim == 1 and i == out.ndim - 1)]
        return out.reshape(tuple(out.shape[i] for i in keep))

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        if ctx.kernel:
            ga, gbt, _ = F.linear_backward(g, a, b.T)
            return ga, gbt.T
        xp = ns(g)
        a2 = a.reshape(1, -1) if a.ndim == 1 else a
        b2 = b.reshape(-1, 1) if b.ndim == 1 else b
        g2 = g.reshape(ctx.full_shape)
        na, nb = ctx.needs_input_grad
        ga = unbroadcast(xp.matmul(g2, b2.swapaxes(-1, -2)), a2.shape).reshape(a.shape) \
            if na else None
        gb = unbroadcast(xp.matmul(a2.swapaxes(-1, -2), g2), b2.shape).reshape(b.shape) \
            if nb else None
        return ga, gb


class Linear(Function):
    """x (*, in) @ weight (out, in).T + bias (out,): ``functional.linear``."""

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        ctx.save_for_backward(x, weight)
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gx, gw, gb = F.linear_backward(g, x, w)
        return gx, gw, gb


class Conv2d(Function):
    """``functional.conv2d``; backward: one ``conv2d_backward`` call, computing only the
    gradients needed (no input gradient for a network's first layer)."""

    @staticmethod
    def forward(ctx, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        ctx.args = stride, padding, dilation, groups
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return F.conv2d_backward(g, x, w, *ctx.args, output_mask=ctx.needs_input_grad[:3])


class ConvTranspose2d(Function):
    """``functional.conv_transpose2d``; backward: one ``conv_transpose2d_backward`` call."""

    @staticmethod
    def forward(ctx, x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                dilation=1):
        ctx.args = stride, padding, output_padding, groups, dilation
        ctx.save_for_backward(x, weight)
        return F.conv_transpose2d(x, weight, bias, *ctx.args)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return F.conv_transpose2d_backward(g, x, w, *ctx.args)


class MaxPool2d(Function):
    """(values, int64 indices) of ``functional.max_pool2d``; backward sends each gradient to
    its window's maximum (``max_pool2d_backward`` with the saved indices)."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        ctx.args = kernel_size, stride, padding, dilation, ceil_mode
        y, idx = F.max_pool2d(x, *ctx.args, return_indices=True)
        ctx.save_for_backward(x, idx)
        return y, idx

    @staticmethod
    def backward(ctx, g):
        x, idx = ctx.saved_tensors
        return F.max_pool2d_backward(g, x, *ctx.args, indices=idx)


class AvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                count_include_pad=True, divisor_override=None):
        ctx.args = (kernel_size, stride, padding, ceil_mode, count_include_pad,
                    divisor_override)
        ctx.save_for_backward(x)
        return F.avg_pool2d(x, *ctx.args)

    @staticmethod
    def backward(ctx, g):
        return F.avg_pool2d_backward(g, ctx.saved_tensors[0], *ctx.args)


def adaptive_windows(size: int, out: int):
    """torch's adaptive pooling windows: [floor(i*size/out), ceil((i+1)*size/out))."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


class AdaptiveAvgPool2d(Function):
    """Average over torch's adaptive windows to ``out_size`` = (oh, ow). Windows that tile
    the input evenly are one ``functional.avg_pool2d``; uneven ones a loop over outputs."""

    @staticmethod
    def forward(ctx, x, out_size):
        h, w = x.shape[-2:]
        oh, ow = out_size
        ctx.shape = tuple(x.shape)
        ctx.even = h % oh == 0 and w % ow == 0
        if ctx.even:
            ctx.kernel = (h // oh, w // ow)
            ctx.save_for_backward(x)
            return F.avg_pool2d(x, ctx.kernel, ctx.kernel)
        xp = ns(x)
        ctx.rows, ctx.cols = adaptive_windows(h, oh), adaptive_windows(w, ow)
        rows = [xp.stack([xp.mean(x[..., r0:r1, c0:c1], (-2, -1)) for c0, c1 in ctx.cols], -1)
                for r0, r1 in ctx.rows]
        return xp.stack(rows, -2)

    @staticmethod
    def backward(ctx, g):
        if ctx.even:
            return F.avg_pool2d_backward(g, ctx.saved_tensors[0], ctx.kernel, ctx.kernel)
        out = ns(g).zeros(ctx.shape, g)
        for i, (r0, r1) in enumerate(ctx.rows):
            for j, (c0, c1) in enumerate(ctx.cols):
                out[..., r0:r1, c0:c1] += (g[..., i, j] / ((r1 - r0) * (c1 - c0)))[..., None,
                                                                                   None]
        return out


def _channel_view(ndim: int):
    """(axes reduced per channel, shape that broadcasts a (C,) vector over an input)."""
    axes = (0,) + tuple(range(2, ndim))
    return axes, (1, -1) + (1,) * (ndim - 2)


class BatchNormTrain(Function):
    """Batch normalisation with the batch's statistics, per channel (axis 1):
    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` (biased var). Returns (y, mean,
    biased var); the caller updates running statistics from the extras."""

    @staticmethod
    def forward(ctx, x, weight=None, bias=None, eps=1e-5):
        xp = ns(x)
        axes, view = _channel_view(x.ndim)
        mean = xp.mean(x, axes)
        centred = x - mean.reshape(view)
        var = xp.mean(centred * centred, axes)
        invstd = 1 / xp.sqrt(var + eps)
        xhat = centred * invstd.reshape(view)
        y = xhat if weight is None else xhat * weight.reshape(view)
        if bias is not None:
            y = y + bias.reshape(view)
        ctx.save_for_backward(xhat, invstd, weight)
        return y, mean, var

    @staticmethod
    def backward(ctx, g):
        xhat, invstd, weight = ctx.saved_tensors
        xp = ns(g)
        axes, view = _channel_view(g.ndim)
        gb = xp.sum(g, axes)
        gw = xp.sum(g * xhat, axes)
        gx = None
        if ctx.needs_input_grad[0]:
            n = xp.numel(g) // g.shape[1]
            scale = invstd if weight is None else invstd * weight
            gx = (g - (gb / n).reshape(view) - xhat * (gw / n).reshape(view)) \
                * scale.reshape(view)
        return gx, gw, gb


class BatchNormEval(Function):
    """Batch normalisation with given statistics: ``(x - mean) / sqrt(var + eps) * weight +
    bias``; mean and var are constants."""

    @staticmethod
    def forward(ctx, x, mean, var, weight=None, bias=None, eps=1e-5):
        xp = ns(x)
        axes, view = _channel_view(x.ndim)
        invstd = 1 / xp.sqrt(var + eps)
        xhat = (x - mean.reshape(view)) * invstd.reshape(view)
        y = xhat if weight is None else xhat * weight.reshape(view)
        if bias is not None:
            y = y + bias.reshape(view)
        ctx.save_for_backward(xhat, invstd, weight)
        return y

    @staticmethod
    def backward(ctx, g):
        xhat, invstd, weight = ctx.saved_tensors
        xp = ns(g)
        axes, view = _channel_view(g.ndim)
        scale = invstd if weight is None else invstd * weight
        return (g * scale.reshape(view), None, None, xp.sum(g * xhat, axes), xp.sum(g, axes))


class Softmax(Function):
    @staticmethod
    def forward(ctx, x, dim):
        out = ns(x).exp(log_softmax(x, dim))
        ctx.dim = dim
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return y * (g - ns(g).sum(g * y, ctx.dim, True))


def log_softmax(x, dim):
    """``x - max - log(sum(exp(x - max)))`` along ``dim``: no overflow, no log(0)."""
    xp = ns(x)
    z = x - xp.amax(x, dim, True)
    return z - xp.log(xp.sum(xp.exp(z), dim, True))


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x, dim):
        out = log_softmax(x, dim)
        ctx.dim = dim
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        xp = ns(g)
        return g - xp.exp(y) * xp.sum(g, ctx.dim, True)

