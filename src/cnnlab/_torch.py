"""The torch twin: the kernel contract (see ``_fallback``) on torch tensors, on any device.

Each function delegates to ``torch.nn.functional`` / ATen on the tensors' own device, so
the same code runs on the CPU and on a GPU. Specs with the usual symmetric padding map onto
torch's arguments directly; the asymmetric ones (``padding='same'`` with an even effective
kernel, or a transposed convolution whose output_padding reaches past the stride) pad or
crop explicitly with ``F.pad`` so that every window sits at padding 0. Windows that lie
wholly in the padding are left out first (``_checks.touching``): their outputs are the bias and
they add nothing to the gradients, and what remains has the small strides and paddings that
torch's transposed convolutions need (and that keep oneDNN away from its large-stride
crash). Pooling refuses output sizes past 2**31 (torch computes them in 32 bits) and
answers an empty batch itself.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from ._checks import (INT_MAX, MODERATE_STRIDE, ArgumentError, first_taps, touching,
                      window_extent)

# oneDNN's CPU deconvolution segfaults or hangs on large strides (stride 30000 with a 2x2
# kernel on a 1x1 input, torch 2.13); torch's own kernel computes them. Past this stride
# the transposed convolutions run without oneDNN.
_ONEDNN_MAX_STRIDE = MODERATE_STRIDE

__all__ = ["conv2d", "conv2d_grad_input", "conv2d_grad_weight", "bias_grad",
           "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward", "matmul",
           "relu", "relu_backward"]


def _pads(spec):
    """F.pad arguments (left, right, top, bottom) turning the input into exactly the span
    of the windows; a negative entry crops rows no window reads."""
    (eh, ew), (ph, pw), (h, w) = window_extent(spec), spec.padding, spec.in_size
    return (pw, ew - pw - w, ph, eh - ph - h)


def conv2d(x, weight, bias, spec):
    windows = touching(spec)
    if windows is not None and windows[1] == spec:
        return _conv2d(x, weight, bias, spec)
    # Some windows read only padding: those outputs are the bias; the others, a smaller
    # convolution.
    y = x.new_zeros((x.shape[0], weight.shape[0]) + tuple(spec.out_size))
    if windows is not None:
        (rows, cols), small = windows
        y[:, :, rows, cols] = _conv2d(x, weight, None, small)
    return y if bias is None else y + bias.reshape(1, -1, 1, 1)


def _conv2d(x, weight, bias, spec):
    if spec.symmetric and min(spec.padding) >= 0:
        return F.conv2d(x, weight, bias, spec.stride, spec.padding, spec.dilation, spec.groups)
    return F.conv2d(F.pad(x, _pads(spec)), weight, bias, spec.stride, 0, spec.dilation,
                    spec.groups)


def _trim(grad_output, spec):
    """(grad_output, spec) restricted to the windows touching the input (the same ones
    when they all do), or None."""
    windows = touching(spec)
    if windows is None:
        return None
    (rows, cols), small = windows
    return (grad_output, spec) if small == spec else (grad_output[:, :, rows, cols], small)


def _conv_transpose2d(grad_output, weight, spec, padding, output_padding, bias=None):
    for name, values in (("stride", spec.stride), ("padding", padding),
                         ("dilation", spec.dilation)):
        if max(abs(v) for v in (values if isinstance(values, tuple) else (values,))) > INT_MAX:
            raise ArgumentError(f"the torch twin's transposed convolution: {name} "
                                f"{list(values)} is too large (torch truncates it to 32 bits)")
    args = (grad_output, weight, bias, spec.stride, padding, output_padding, spec.groups,
            spec.dilation)
    if grad_output.device.type != "cpu" or max(spec.stride) <= _ONEDNN_MAX_STRIDE:
        return F.conv_transpose2d(*args)
    with warnings.catch_warnings():                 # flags() also warns about TF32 on XPUs
        warnings.simplefilter("ignore", UserWarning)
        with torch.backends.mkldnn.flags(enabled=False):
            return F.conv_transpose2d(*args)


def conv2d_grad_input(grad_output, weight, spec, bias=None):
    shape = (grad_output.shape[0], weight.shape[1] * spec.groups) + tuple(spec.in_size)
    trimmed = _trim(grad_output, spec)
    if trimmed is None:
        g = grad_output.new_zeros(shape)
    else:
        grad_output, spec = trimmed
        if spec.symmetric and min(spec.padding) >= 0:
            # output_padding restores the rows the forward's floor division dropped.
            out_pad = tuple(i - (e - 2 * p) for i, e, p in
                            zip(spec.in_size, window_extent(spec), spec.padding))
            return _conv_transpose2d(grad_output, weight, spec, spec.padding, out_pad, bias)
        g = _conv_transpose2d(grad_output, weight, spec, 0, 0)
        g = F.pad(g, tuple(-p for p in _pads(spec))).contiguous()
    if bias is not None:
        g += bias.reshape(1, -1, 1, 1)
    return g


def conv2d_grad_weight(grad_output, x, spec):
    c_out, c_in = grad_output.shape[1], x.shape[1]
    size = (c_out, c_in // spec.groups) + tuple(spec.kernel_size)
    trimmed = _trim(grad_output, spec)
    if trimmed is None:
        return x.new_zeros(size)
    grad_output, spec = trimmed
    padding = spec.padding
    if not spec.symmetric or min(padding) < 0:
        x, padding = F.pad(x, _pads(spec)), (0, 0)
    return torch.nn.grad.conv2d_weight(x, size, grad_output, spec.stride, padding,
                                       spec.dilation, spec.groups)


def bias_grad(grad_output):
    return grad_output.sum(dim=(0, 2, 3))


def matmul(a, b, trans_a, trans_b):
    return torch.matmul(a.T if trans_a else a, b.T if trans_b else b)


def relu(x):
    return torch.relu(x)


def relu_backward(grad_output, output):
    return torch.ops.aten.threshold_backward(grad_output, output, 0)


def _pool_sizes(x, spec):
    """torch's CPU pooling computes output sizes in 32 bits (a 2**32-row input gives a
    negative size, or a wrong one in an empty batch): refuse those sizes by name, and
    answer an empty batch without torch. True when there is nothing to compute."""
    if max(spec.out_size) > INT_MAX:
        raise ArgumentError(f"the torch twin's pooling: output size {list(spec.out_size)} is "
                            f"too large (torch computes it in 32 bits, at most {INT_MAX})")
    return x.shape[0] * x.shape[1] == 0


def max_pool2d(x, spec):
    if _pool_sizes(x, spec):
        shape = tuple(x.shape[:2]) + tuple(spec.out_size)
        return x.new_zeros(shape), torch.zeros(shape, dtype=torch.int64, device=x.device)
    if all(p <= k // 2 for p, k in zip(spec.padding, spec.kernel_size)):
        y, idx = F.max_pool2d(x, spec.kernel_size, spec.stride, spec.padding, spec.dilation,
                              spec.ceil_mode, return_indices=True)
        return y.contiguous(), idx.contiguous()
    # torch's indices path refuses padding over half the (undilated) kernel: pad with -inf
    # ourselves, then map the indices back to the unpadded plane.
    w, pads = spec.in_size[1], _pads(spec)
    xp = F.pad(x, pads, value=float("-inf"))
    y, idx = F.max_pool2d(xp, spec.kernel_size, spec.stride, 0, spec.dilation, False,
                          return_indices=True)
    wp = xp.shape[-1]
    idx = (idx // wp - pads[2]) * w + (idx % wp - pads[0])
    # A window whose input cells are all -inf points at its first tap inside the input.
    rows, cols = (torch.tensor(t, device=x.device) for t in first_taps(spec))
    first = rows[:, None] * w + cols[None, :]
    idx = torch.where(y == float("-inf"), first, idx)
    return y.contiguous(), idx.contiguous()


def max_pool2d_backward(grad_output, indices, spec):
    n, c = grad_output.shape[:2]
    h, w = spec.in_size
    gx = grad_output.new_zeros((n * c, h * w))
    m = grad_output[0, 0].numel() if n * c else 0
    gx.scatter_add_(1, indices.reshape(n * c, m), grad_output.reshape(n * c, m))
    return gx.reshape(n, c, h, w)


def avg_pool2d(x, spec):
    if _pool_sizes(x, spec):
        return x.new_zeros(tuple(x.shape[:2]) + tuple(spec.out_size))
    return F.avg_pool2d(x, spec.kernel_size, spec.stride, spec.padding, spec.ceil_mode,
                        spec.count_include_pad, spec.divisor_override)


def avg_pool2d_backward(grad_output, spec):
    # ATen's kernel reads only the shape of `self`, never its values.
    shape = tuple(grad_output.shape[:2]) + tuple(spec.in_size)
    if _pool_sizes(grad_output, spec):
        return grad_output.new_zeros(shape)
    return torch.ops.aten.avg_pool2d_backward(
        grad_output, grad_output.new_empty(shape), list(spec.kernel_size), list(spec.stride),
        list(spec.padding), spec.ceil_mode, spec.count_include_pad, spec.divisor_override)
