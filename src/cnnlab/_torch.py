"""The torch twin: the kernel contract (see ``_fallback``) on torch tensors, on any device.

Each function delegates to ``torch.nn.functional`` / ATen on the tensors' own device, so
the same code runs on the CPU and on a GPU. Specs with the usual symmetric padding map onto
torch's arguments directly; the asymmetric ones (``padding='same'`` with an even effective
kernel, or a transposed convolution whose output_padding reaches past the stride) pad or
crop explicitly with ``F.pad`` so that every window sits at padding 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import first_taps, window_extent

__all__ = ["conv2d", "conv2d_grad_input", "conv2d_grad_weight", "bias_grad",
           "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward", "matmul"]


def _pads(spec):
    """F.pad arguments (left, right, top, bottom) turning the input into exactly the span
    of the windows; a negative entry crops rows no window reads."""
    (eh, ew), (ph, pw), (h, w) = window_extent(spec), spec.padding, spec.in_size
    return (pw, ew - pw - w, ph, eh - ph - h)


def conv2d(x, weight, bias, spec):
    if spec.symmetric:
        return F.conv2d(x, weight, bias, spec.stride, spec.padding, spec.dilation, spec.groups)
    return F.conv2d(F.pad(x, _pads(spec)), weight, bias, spec.stride, 0, spec.dilation,
                    spec.groups)


def conv2d_grad_input(grad_output, weight, spec):
    if spec.symmetric:
        # output_padding restores the rows the forward's floor division dropped.
        out_pad = tuple(i - (e - 2 * p) for i, e, p in
                        zip(spec.in_size, window_extent(spec), spec.padding))
        return F.conv_transpose2d(grad_output, weight, None, spec.stride, spec.padding,
                                  out_pad, spec.groups, spec.dilation)
    g = F.conv_transpose2d(grad_output, weight, None, spec.stride, 0, 0, spec.groups,
                           spec.dilation)
    return F.pad(g, tuple(-p for p in _pads(spec))).contiguous()


def conv2d_grad_weight(grad_output, x, spec):
    c_out, c_in = grad_output.shape[1], x.shape[1]
    size = (c_out, c_in // spec.groups) + tuple(spec.kernel_size)
    padding = spec.padding
    if not spec.symmetric:
        x, padding = F.pad(x, _pads(spec)), (0, 0)
    return torch.nn.grad.conv2d_weight(x, size, grad_output, spec.stride, padding,
                                       spec.dilation, spec.groups)


def bias_grad(grad_output):
    return grad_output.sum(dim=(0, 2, 3))


def matmul(a, b, trans_a, trans_b):
    return torch.matmul(a.T if trans_a else a, b.T if trans_b else b)


def max_pool2d(x, spec):
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
    return F.avg_pool2d(x, spec.kernel_size, spec.stride, spec.padding, spec.ceil_mode,
                        spec.count_include_pad, spec.divisor_override)


def avg_pool2d_backward(grad_output, spec):
    # ATen's kernel reads only the shape of `self`, never its values.
    shape = tuple(grad_output.shape[:2]) + tuple(spec.in_size)
    return torch.ops.aten.avg_pool2d_backward(
        grad_output, grad_output.new_empty(shape), list(spec.kernel_size), list(spec.stride),
        list(spec.padding), spec.ceil_mode, spec.count_include_pad, spec.divisor_override)
