"""The naive oracle: every operation as plain Python loops over output positions.

This module is the convolution lab written out step by step, and the thing the tests trust.
It is deliberately slow and deliberately simple; it is not a backend and nothing in the
library calls it. It shares only argument checking and output sizes with the fast code
(``cnnlab._checks``); everything it computes, it computes here.

How the pieces fit::

    zero_pad(x, pad)                    a zero border around the (H, W) plane
    conv_single_step(a_slice, w, b)     one window times one filter: sum(a_slice * w) + b
    conv2d / conv2d_backward            slide the window over the padded input
    conv_transpose2d (+ _backward)      scatter x[n, ci, i, j] * w[ci] into the output
    max_pool2d / max_pool2d_backward    max of each window; backward through a max mask
    avg_pool2d / avg_pool2d_backward    mean of each window; backward distributes the value
    linear / linear_backward            one dot product per (row, output feature)

Signatures are exactly those of ``cnnlab.functional`` (and so of ``torch.nn.functional``):
layout NCHW, input (N, C, H, W) or unbatched (C, H, W), same defaults. Inputs are NumPy
arrays of float32 or float64; the sums are done in float64 and the result has the input's
dtype. Max pooling follows PyTorch's CPU rule: a value wins when it is larger than the
current maximum or is NaN (so the first maximum in row-major order wins a tie, and the last
NaN wins if there are several); padding is -inf; indices are flat ``h * W + w``.
"""
from __future__ import annotations

import numpy as np

from . import _checks

__all__ = [
    "zero_pad", "conv_single_step",
    "conv2d", "conv2d_backward",
    "conv_transpose2d", "conv_transpose2d_backward",
    "max_pool2d", "max_pool2d_backward",
    "avg_pool2d", "avg_pool2d_backward", "distribute_value",
    "linear", "linear_backward",
]


# --------------------------------------------------------------------------- the two steps


def zero_pad(x, pad):
    """Pad the last two axes (H, W) of ``x`` with zeros.

    x: (..., H, W), e.g. (N, C, H, W). pad: an int (every side), a pair (pad_h, pad_w)
    (both sides of each axis) or a 4-tuple (top, bottom, left, right).
    Returns (..., H + top + bottom, W + left + right), of x's dtype.
    """
    if np.ndim(pad) == 0:
        top = bottom = left = right = int(pad)
    elif len(pad) == 2:
        top = bottom = int(pad[0])
        left = right = int(pad[1])
    else:
        top, bottom, left, right = (int(p) for p in pad)
    h, w = x.shape[-2:]
    x_pad = np.zeros(x.shape[:-2] + (top + h + bottom, left + w + right), dtype=x.dtype)
    x_pad[..., top:top + h, left:left + w] = x
    return x_pad


def conv_single_step(a_slice, w, b=0.0):
    """One step of a convolution: the window ``a_slice`` times the filter ``w``, summed,
    plus the bias ``b``. a_slice and w have the same shape, e.g. (C_in, kH, kW).
    Returns a Python float."""
    s = np.sum(np.asarray(a_slice, dtype=np.float64) * np.asarray(w, dtype=np.float64))
    return float(s + float(np.sum(b)))


# --------------------------------------------------------------------------- helpers


def _batch(x):
    """(C, H, W) -> (1, C, H, W); a 4-D array unchanged."""
    return x if x.ndim == 4 else x[None]


def _unbatch(y, batched):
    return y if batched else y[0]


def _window(out_index, stride, dilation, kernel):
    """The slice of the padded input read by output row (or column) ``out_index``."""
    start = out_index * stride
    return slice(start, start + dilation * (kernel - 1) + 1, dilation)


def _conv_padded(x4, spec):
    """Pad x4 with spec.padding before and spec.padding_end after each axis."""
    (top, left), (bottom, right) = spec.padding, spec.padding_end
    return zero_pad(x4, (top, bottom, left, right))


# --------------------------------------------------------------------------- convolution


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Cross-correlation, as ``torch.nn.functional.conv2d``, one output value at a time.

    input (N, C_in, H, W) or (C_in, H, W); weight (C_out, C_in/groups, kH, kW);
    bias (C_out,) or None. Returns (N, C_out, H_out, W_out) (or unbatched).
    """
    batched = _checks.check_rank("conv2d", input)
    _checks.check_floating("conv2d", input=input, weight=weight, bias=bias)
    x = _batch(input)
    spec = _checks.conv2d_spec(x.shape, weight.shape, None if bias is None else bias.shape,
                               stride, padding, dilation, groups)
    n_batch, c_out = x.shape[0], weight.shape[0]
    c_in_g, out_per_group = weight.shape[1], c_out // spec.groups
    (sh, sw), (dh, dw), (kh, kw) = spec.stride, spec.dilation, spec.kernel_size
    h_out, w_out = spec.out_size
    x_pad = _conv_padded(x.astype(np.float64), spec)
    w64 = weight.astype(np.float64)
    b64 = np.zeros(c_out) if bias is None else bias.astype(np.float64)

    y = np.zeros((n_batch, c_out, h_out, w_out))
    for n in range(n_batch):
        for co in range(c_out):
            g = co // out_per_group                     # the group this filter belongs to
            channels = slice(g * c_in_g, (g + 1) * c_in_g)
            for oh in range(h_out):
                for ow in range(w_out):
                    a_slice = x_pad[n, channels, _window(oh, sh, dh, kh), _window(ow, sw, dw, kw)]
                    y[n, co, oh, ow] = conv_single_step(a_slice, w64[co], b64[co])
    return _unbatch(y.astype(input.dtype), batched)


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    output_mask=(True, True, True)):
    """Gradients of :func:`conv2d`: ``(grad_input, grad_weight, grad_bias)``; a gradient whose
    ``output_mask`` entry is False is None (as in ``cnnlab.functional``).

    grad_output has conv2d's output shape. Each output value ``y[n, co, oh, ow]`` came from
    one window and one filter, so its gradient ``dy`` flows back to both: the window's input
    cells get ``w[co] * dy``, the filter gets ``window * dy``, the bias ``b[co]`` gets ``dy``.
    Returns arrays shaped like input, weight and (C_out,).
    """
    batched = _checks.check_rank("conv2d", input)
    _checks.check_floating("conv2d_backward", input=input, weight=weight,
                           grad_output=grad_output)
    x = _batch(input)
    spec = _checks.conv2d_spec(x.shape, weight.shape, None, stride, padding, dilation, groups)
    n_batch, c_out = x.shape[0], weight.shape[0]
    _checks.check_grad_output("conv2d_backward", grad_output,
                              ((n_batch, c_out) if batched else (c_out,)) + spec.out_size)
    dy = _batch(grad_output.astype(np.float64))
    c_in_g, out_per_group = weight.shape[1], c_out // spec.groups
    (sh, sw), (dh, dw), (kh, kw) = spec.stride, spec.dilation, spec.kernel_size
    h_out, w_out = spec.out_size
    x_pad = _conv_padded(x.astype(np.float64), spec)
    w64 = weight.astype(np.float64)

    grad_x_pad = np.zeros_like(x_pad)
    grad_w = np.zeros_like(w64)
    grad_b = np.zeros(c_out)
    for n in range(n_batch):
        for co in range(c_out):
            g = co // out_per_group
            channels = slice(g * c_in_g, (g + 1) * c_in_g)
            for oh in range(h_out):
                for ow in range(w_out):
                    rows, cols = _window(oh, sh, dh, kh), _window(ow, sw, dw, kw)
                    grad = dy[n, co, oh, ow]
                    grad_x_pad[n, channels, rows, cols] += w64[co] * grad
                    grad_w[co] += x_pad[n, channels, rows, cols] * grad
                    grad_b[co] += grad
    (top, left), (h, w) = spec.padding, spec.in_size
    grad_x = grad_x_pad[:, :, top:top + h, left:left + w]
    grads = (_unbatch(grad_x.astype(input.dtype), batched), grad_w.astype(weight.dtype),
             grad_b.astype(weight.dtype))
    return tuple(g if want else None for g, want in zip(grads, output_mask))


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):
    """Transposed convolution, as ``torch.nn.functional.conv_transpose2d``.

    input (N, C_in, H, W) or (C_in, H, W); weight (C_in, C_out/groups, kH, kW);
    bias (C_out,) or None. Returns (N, C_out, H_out, W_out) with
    ``H_out = (H - 1)*stride - 2*padding + dilation*(kH - 1) + output_padding + 1``.

    Written as the lab's "backward pass" view: every input value ``x[n, ci, i, j]`` stamps
    ``x[n, ci, i, j] * w[ci]`` onto the output at ``(i*stride, j*stride)`` (taps spread by
    ``dilation``); the stamps add up, then ``padding`` rows/columns are cut off each side.
    """
    batched = _checks.check_rank("conv_transpose2d", input)
    _checks.check_floating("conv_transpose2d", input=input, weight=weight, bias=bias)
    x = _batch(input)
    spec = _checks.conv_transpose2d_spec(x.shape, weight.shape,
                                         None if bias is None else bias.shape, stride,
                                         padding, output_padding, groups, dilation)
    n_batch, c_in, h, w = x.shape
    out_per_group, in_per_group = weight.shape[1], c_in // spec.groups
    c_out = out_per_group * spec.groups
    (sh, sw), (dh, dw), (kh, kw) = spec.stride, spec.dilation, spec.kernel_size
    (ph, pw), (h_out, w_out) = spec.padding, spec.in_size   # spec.in_size: our output size
    x64, w64 = x.astype(np.float64), weight.astype(np.float64)

    full = np.zeros((n_batch, c_out, h_out + 2 * ph, w_out + 2 * pw))
    for n in range(n_batch):
        for ci in range(c_in):
            g = ci // in_per_group
            channels = slice(g * out_per_group, (g + 1) * out_per_group)
            for i in range(h):
                for j in range(w):
                    full[n, channels, _window(i, sh, dh, kh), _window(j, sw, dw, kw)] += \
                        x64[n, ci, i, j] * w64[ci]
    y = full[:, :, ph:ph + h_out, pw:pw + w_out]
    if bias is not None:
        y = y + bias.astype(np.float64).reshape(1, -1, 1, 1)
    return _unbatch(y.astype(input.dtype), batched)


def conv_transpose2d_backward(grad_output, input, weight, stride=1, padding=0,
                              output_padding=0, groups=1, dilation=1):
    """Gradients of :func:`conv_transpose2d`: ``(grad_input, grad_weight, grad_bias)``.

    The forward stamped ``x[n, ci, i, j] * w[ci]`` onto a patch of the (uncropped) output,
    so ``x[n, ci, i, j]`` gets the patch of the gradient times ``w[ci]``, summed, and
    ``w[ci]`` gets the patch times ``x[n, ci, i, j]``. The cropped border had no effect:
    its gradient is zero.
    """
    batched = _checks.check_rank("conv_transpose2d", input)
    _checks.check_floating("conv_transpose2d_backward", input=input, weight=weight,
                           grad_output=grad_output)
    x = _batch(input)
    spec = _checks.conv_transpose2d_spec(x.shape, weight.shape, None, stride, padding,
                                         output_padding, groups, dilation)
    n_batch, c_in, h, w = x.shape
    out_per_group, in_per_group = weight.shape[1], c_in // spec.groups
    c_out = out_per_group * spec.groups
    _checks.check_grad_output("conv_transpose2d_backward", grad_output,
                              ((n_batch, c_out) if batched else (c_out,)) + spec.in_size)
    (sh, sw), (dh, dw), (kh, kw) = spec.stride, spec.dilation, spec.kernel_size
    ph, pw = spec.padding
    dy = _batch(grad_output.astype(np.float64))
    dy_full = zero_pad(dy, (ph, pw))                 # the cropped border: zero gradient
    x64, w64 = x.astype(np.float64), weight.astype(np.float64)

    grad_x = np.zeros_like(x64)
    grad_w = np.zeros_like(w64)
    for n in range(n_batch):
        for ci in range(c_in):
            g = ci // in_per_group
            channels = slice(g * out_per_group, (g + 1) * out_per_group)
            for i in range(h):
                for j in range(w):
                    patch = dy_full[n, channels, _window(i, sh, dh, kh), _window(j, sw, dw, kw)]
                    grad_x[n, ci, i, j] = conv_single_step(patch, w64[ci])
                    grad_w[ci] += patch * x64[n, ci, i, j]
    grad_b = dy.sum(axis=(0, 2, 3))
    return (_unbatch(grad_x.astype(input.dtype), batched), grad_w.astype(weight.dtype),
            grad_b.astype(weight.dtype))


# --------------------------------------------------------------------------- pooling


def _pool_setup(op, input, kernel_size, stride, padding, dilation, ceil_mode,
                count_include_pad=True, divisor_override=None):
    batched = _checks.check_rank(op, input)
    _checks.check_floating(op, input=input)
    x = _batch(input)
    spec = _checks.pool2d_spec(x.shape, kernel_size, stride, padding, dilation, ceil_mode,
                               count_include_pad, divisor_override, op)
    return x, batched, spec


def _taps(out_index, stride, pad, dilation, kernel, size):
    """Input rows (or columns) of window ``out_index`` that lie inside the input."""
    first = out_index * stride - pad
    return [first + k * dilation for k in range(kernel)
            if 0 <= first + k * dilation < size]


def _window_max(plane, oh, ow, spec):
    """(value, row, col) of the maximum of window (oh, ow) of one (H, W) plane.

    PyTorch's rule, scanning in row-major order: the first tap inside the input starts as
    the maximum; a later tap replaces it when it is larger or is NaN.
    """
    (sh, sw), (ph, pw), (dh, dw) = spec.stride, spec.padding, spec.dilation
    (kh, kw), (h, w) = spec.kernel_size, spec.in_size
    best = None
    for r in _taps(oh, sh, ph, dh, kh, h):
        for c in _taps(ow, sw, pw, dw, kw, w):
            value = plane[r, c]
            if best is None or value > best[0] or np.isnan(value):
                best = (value, r, c)
    return best


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max pooling, as ``torch.nn.functional.max_pool2d``.

    input (N, C, H, W) or (C, H, W). Returns y (N, C, H_out, W_out), and with
    ``return_indices`` also int64 indices of y's shape: the flat ``h * W + w`` of each
    window's maximum in its input plane.
    """
    x, batched, spec = _pool_setup("max_pool2d", input, kernel_size, stride, padding,
                                   dilation, ceil_mode)
    n_batch, channels = x.shape[:2]
    (h_out, w_out), w = spec.out_size, spec.in_size[1]
    y = np.zeros((n_batch, channels, h_out, w_out), dtype=input.dtype)
    indices = np.zeros((n_batch, channels, h_out, w_out), dtype=np.int64)
    for n in range(n_batch):
        for c in range(channels):
            for oh in range(h_out):
                for ow in range(w_out):
                    value, r, col = _window_max(x[n, c], oh, ow, spec)
                    y[n, c, oh, ow] = value
                    indices[n, c, oh, ow] = r * w + col
    if return_indices:
        return _unbatch(y, batched), _unbatch(indices, batched)
    return _unbatch(y, batched)


def max_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, indices=None):
    """Gradient of :func:`max_pool2d` with respect to its input (input's shape).

    Only the maximum of a window influenced the output, so the window's gradient goes
    there: a mask that is 1 at the maximum and 0 elsewhere, times ``dy``. The maximum is
    found again in the window, or read from ``indices`` (flat ``h * W + w``) when given.
    """
    x, batched, spec = _pool_setup("max_pool2d", input, kernel_size, stride, padding,
                                   dilation, ceil_mode)
    _checks.check_floating("max_pool2d_backward", input=input, grad_output=grad_output)
    n_batch, channels = x.shape[:2]
    (h_out, w_out), (h, w) = spec.out_size, spec.in_size
    _checks.check_grad_output("max_pool2d_backward", grad_output,
                              ((n_batch, channels) if batched else (channels,)) + spec.out_size)
    dy = _batch(grad_output.astype(np.float64))
    idx = None if indices is None else _batch(np.asarray(indices))

    grad_x = np.zeros((n_batch, channels, h, w))
    for n in range(n_batch):
        for c in range(channels):
            for oh in range(h_out):
                for ow in range(w_out):
                    if idx is None:
                        _, r, col = _window_max(x[n, c], oh, ow, spec)
                    else:
                        r, col = divmod(int(idx[n, c, oh, ow]), w)
                    mask = np.zeros((h, w))
                    mask[r, col] = 1.0
                    grad_x[n, c] += mask * dy[n, c, oh, ow]
    return _unbatch(grad_x.astype(input.dtype), batched)


def _avg_window(oh, ow, spec):
    """(rows, cols, divisor) of average-pooling window (oh, ow): the slices inside the
    input and what the sum is divided by (PyTorch's rule, see ``_checks.PoolSpec``)."""
    (sh, sw), (ph, pw) = spec.stride, spec.padding
    (kh, kw), (h, w) = spec.kernel_size, spec.in_size
    h0, w0 = oh * sh - ph, ow * sw - pw
    h1, w1 = min(h0 + kh, h + ph), min(w0 + kw, w + pw)   # the window, clipped to the padding
    pool_size = (h1 - h0) * (w1 - w0)
    h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)   # ... to the input
    if spec.divisor_override is not None:
        divisor = spec.divisor_override
    elif spec.count_include_pad:
        divisor = pool_size
    else:
        divisor = (h1 - h0) * (w1 - w0)
    return slice(h0, h1), slice(w0, w1), divisor


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """Average pooling, as ``torch.nn.functional.avg_pool2d``.

    input (N, C, H, W) or (C, H, W). Returns (N, C, H_out, W_out): each window's sum over
    the input cells it covers, divided by ``divisor_override`` or the window's size
    (counting the padding when ``count_include_pad``).
    """
    x, batched, spec = _pool_setup("avg_pool2d", input, kernel_size, stride, padding, 1,
                                   ceil_mode, count_include_pad, divisor_override)
    n_batch, channels = x.shape[:2]
    h_out, w_out = spec.out_size
    x64 = x.astype(np.float64)
    y = np.zeros((n_batch, channels, h_out, w_out))
    for n in range(n_batch):
        for c in range(channels):
            for oh in range(h_out):
                for ow in range(w_out):
                    rows, cols, divisor = _avg_window(oh, ow, spec)
                    y[n, c, oh, ow] = np.sum(x64[n, c, rows, cols]) / divisor
    return _unbatch(y.astype(input.dtype), batched)


def distribute_value(dz, shape, divisor):
    """The lab's helper: spread ``dz`` evenly, ``dz / divisor`` in each cell of ``shape``."""
    return np.full(shape, dz / divisor)


def avg_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True, divisor_override=None):
    """Gradient of :func:`avg_pool2d` with respect to its input (input's shape).

    Every input cell of a window contributed ``1 / divisor`` of itself to the output, so
    each gets ``dy / divisor`` back (the value is distributed over the window).
    """
    x, batched, spec = _pool_setup("avg_pool2d", input, kernel_size, stride, padding, 1,
                                   ceil_mode, count_include_pad, divisor_override)
    _checks.check_floating("avg_pool2d_backward", input=input, grad_output=grad_output)
    n_batch, channels = x.shape[:2]
    (h_out, w_out), (h, w) = spec.out_size, spec.in_size
    _checks.check_grad_output("avg_pool2d_backward", grad_output,
                              ((n_batch, channels) if batched else (channels,)) + spec.out_size)
    dy = _batch(grad_output.astype(np.float64))
    grad_x = np.zeros((n_batch, channels, h, w))
    for n in range(n_batch):
        for c in range(channels):
            for oh in range(h_out):
                for ow in range(w_out):
                    rows, cols, divisor = _avg_window(oh, ow, spec)
                    window = grad_x[n, c, rows, cols]
                    grad_x[n, c, rows, cols] += distribute_value(dy[n, c, oh, ow],
                                                                 window.shape, divisor)
    return _unbatch(grad_x.astype(input.dtype), batched)


# --------------------------------------------------------------------------- linear


def linear(input, weight, bias=None):
    """y[..., o] = sum_i input[..., i] * weight[o, i] + bias[o]; input (*, in_features)."""
    lead = _checks.linear_shapes(input.shape, weight.shape,
                                 None if bias is None else bias.shape)
    out_f, in_f = weight.shape
    x = np.asarray(input, np.float64).reshape(_checks.prod(lead), in_f)
    y = np.zeros((x.shape[0], out_f))
    for r in range(x.shape[0]):
        for o in range(out_f):
            acc = 0.0 if bias is None else float(bias[o])
            for i in range(in_f):
                acc += x[r, i] * float(weight[o, i])
            y[r, o] = acc
    return y.reshape(lead + (out_f,)).astype(input.dtype)


def linear_backward(grad_output, input, weight):
    """(grad_input, grad_weight, grad_bias) of :func:`linear`, one loop per sum."""
    rows = _checks.prod(_checks.linear_shapes(input.shape, weight.shape, None))
    out_f, in_f = weight.shape
    g = np.asarray(grad_output, np.float64).reshape(rows, out_f)
    x = np.asarray(input, np.float64).reshape(rows, in_f)
    gx, gw, gb = np.zeros(x.shape), np.zeros((out_f, in_f)), np.zeros(out_f)
    for r in range(x.shape[0]):
        for o in range(out_f):
            gb[o] += g[r, o]
            for i in range(in_f):
                gx[r, i] += g[r, o] * float(weight[o, i])
                gw[o, i] += g[r, o] * x[r, i]
    dt = input.dtype
    return gx.reshape(input.shape).astype(dt), gw.astype(dt), gb.astype(dt)
