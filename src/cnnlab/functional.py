"""The public operations, with ``torch.nn.functional``'s names, arguments and defaults.

Each function (1) checks its arguments in ``_checks`` (same error on every backend),
(2) picks a twin in ``_dispatch``, (3) makes the operands 4-D and contiguous, (4) calls the
twin's kernel, (5) gives the result back in the caller's form (unbatched if the input was,
NumPy or torch as it came). Layout is NCHW; an unbatched input is (C, H, W).

Backward functions take ``grad_output`` first, then exactly the forward's arguments
(without ``bias`` and ``return_indices``), and return the gradients of the forward's inputs.
conv_transpose2d is computed as the adjoint of conv2d, with the same three conv kernels;
linear is the twins' ``matmul`` kernel (on the compiled twin: cnnlab's own OpenMP threads,
never BLAS's pool) plus the bias.
"""
from __future__ import annotations

import numpy as np

from . import _checks
from ._checks import (ArgumentError, check_floating, check_grad_output, check_rank,
                      conv2d_output_shape, conv_transpose2d_output_shape, pool2d_output_shape)
from ._dispatch import is_tensor, twin_for
from ._malloc import keep_freed_memory

__all__ = [
    "conv2d", "conv2d_backward",
    "conv_transpose2d", "conv_transpose2d_backward",
    "max_pool2d", "max_pool2d_backward",
    "avg_pool2d", "avg_pool2d_backward",
    "linear", "linear_backward",
    "relu", "relu_backward",
    "conv2d_output_shape", "conv_transpose2d_output_shape", "pool2d_output_shape",
]


# --------------------------------------------------------------------------- plumbing


def zeros_like(a):
    """Zeros of ``a``'s shape, dtype, family (NumPy or torch) and device."""
    return a.new_zeros(a.shape) if is_tensor(a) else np.zeros_like(a)


class _Call:
    """Operands of one call, converted for the chosen twin, and the way back."""

    def __init__(self, op, *arrays):
        keep_freed_memory()          # once per process: see _malloc (a loop over these
        self.twin, self.kind = twin_for(op, *arrays)   # calls frees and reallocates MBs)
        self.arrays = [self._in(a) for a in arrays]

    def _in(self, a):
        if a is None:
            return None
        if self.kind == "torch":
            return _default_strides(a.contiguous())
        a = np.ascontiguousarray(a)
        if self.kind == "numpy->torch":
            import torch
            # NumPy calls a size-1 axis with a negative stride contiguous; torch refuses it.
            if not a.flags.writeable or min(a.strides, default=0) < 0:
                a = a.copy()
            return _default_strides(torch.from_numpy(a))
        return a

    def out(self, a, batched=True):
        if a is None:
            return None
        if not batched:
            a = a[0]
        if self.kind == "numpy->torch":
            return a.numpy()
        return a


def _default_strides(t):
    """A contiguous tensor viewed with the default strides. A size-1 axis may carry any
    stride (NumPy's often do), and torch may then take an NCHW tensor with one channel for
    channels-last, where oneDNN's float32 weight gradient of a strided convolution is wrong
    (torch 2.13: a 1x1 stride-2 convolution of 8x8 planes, off by 9)."""
    strides, step = [], 1
    for size in reversed(t.shape):
        strides.append(step)
        step *= max(int(size), 1)
    strides = tuple(reversed(strides))
    return t if tuple(t.stride()) == strides else t.as_strided(t.shape, strides)


def _batch(a, batched):
    return a if batched else a[None]


def _empty(x, w) -> bool:
    """A convolution with an operand without elements (an empty batch, whose planes may
    have no rows; no input channels): every sum is over nothing, so the outputs are the
    bias and the gradients zeros, without a kernel (torch returns no channels at all for
    no input channels, and oneDNN fails there)."""
    return _checks.prod(x.shape) == 0 or _checks.prod(w.shape) == 0


def _zeros(like, shape):
    """Zeros of ``shape`` in the family, device and dtype of ``like``."""
    return like.new_zeros(shape) if is_tensor(like) else np.zeros(shape, like.dtype)


def _grad_output(op, grad_output, batched, shape):
    """grad_output must have the forward output's shape (unbatched if the input was)."""
    check_grad_output(op, grad_output, shape if batched else shape[1:])
    return _batch(grad_output, batched)


# --------------------------------------------------------------------------- convolution


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation, as ``torch.nn.functional.conv2d``.

    input (N, C_in, H, W) or (C_in, H, W); weight (C_out, C_in/groups, kH, kW);
    bias (C_out,) or None; padding an int, a pair, 'valid' or 'same'.
    Returns (N, C_out, H_out, W_out) (or (C_out, H_out, W_out)), with
    ``H_out = (H + 2*padding - dilation*(kH - 1) - 1) // stride + 1``.
    """
    op = "conv2d"
    batched = check_rank(op, input)
    check_floating(op, input=input, weight=weight, bias=bias)
    spec = _checks.conv2d_spec(_batch(input, batched).shape, weight.shape,
                               None if bias is None else bias.shape,
                               stride, padding, dilation, groups)
    call = _Call(op, _batch(input, batched), weight, bias)
    x, w, b = call.arrays
    if _empty(x, w):
        y = _zeros(w, (x.shape[0], w.shape[0]) + spec.out_size)
        return call.out(y if b is None else y + b.reshape(1, -1, 1, 1), batched)
    return call.out(call.twin.conv2d(x, w, b, spec), batched)


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1,
                    *, output_mask=(True, True, True)):
    """Gradients of :func:`conv2d`: ``(grad_input, grad_weight, grad_bias)``.

    grad_output has conv2d's output shape; grad_input has input's, grad_weight weight's,
    grad_bias is (C_out,) (the gradient of a bias, whether or not the forward had one).
    ``output_mask`` (as torch's ``convolution_backward``) skips the gradients marked False,
    which are then None: a network's first layer needs no input gradient.
    """
    op = "conv2d_backward"
    batched = check_rank("conv2d", input)
    check_floating(op, input=input, weight=weight, grad_output=grad_output)
    x4 = _batch(input, batched)
    spec = _checks.conv2d_spec(x4.shape, weight.shape, None, stride, padding, dilation, groups)
    g4 = _grad_output(op, grad_output, batched, (x4.shape[0], weight.shape[0]) + spec.out_size)
    call = _Call(op, g4, x4, weight)
    g, x, w = call.arrays
    t = call.twin
    want_input, want_weight, want_bias = output_mask
    if _empty(x, w):
        gx, gw = zeros_like(x), zeros_like(w)
    else:
        gx = t.conv2d_grad_input(g, w, spec) if want_input else None
        gw = t.conv2d_grad_weight(g, x, spec) if want_weight else None
    return (call.out(gx, batched) if want_input else None,
            call.out(gw) if want_weight else None,
            call.out(t.bias_grad(g)) if want_bias else None)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):
    """2-D transposed convolution, as ``torch.nn.functional.conv_transpose2d``.

    input (N, C_in, H, W) or (C_in, H, W); weight (C_in, C_out/groups, kH, kW);
    bias (C_out,) or None. Returns (N, C_out, H_out, W_out) with
    ``H_out = (H - 1)*stride - 2*padding + dilation*(kH - 1) + output_padding + 1``.
    It is the adjoint (input gradient) of conv2d with the same weight.
    """
    op = "conv_transpose2d"
    batched = check_rank(op, input)
    check_floating(op, input=input, weight=weight, bias=bias)
    spec = _checks.conv_transpose2d_spec(_batch(input, batched).shape, weight.shape,
                                         None if bias is None else bias.shape, stride,
                                         padding, output_padding, groups, dilation)
    c_out = weight.shape[1] * spec.groups
    call = _Call(op, _batch(input, batched), weight, bias)
    x, w, b = call.arrays
    if _empty(x, w):
        y = _zeros(w, (x.shape[0], c_out) + spec.in_size)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
    else:                                   # the twin adds the bias as it writes y
        y = call.twin.conv2d_grad_input(x, w, spec, b)
    return call.out(y, batched)


def conv_transpose2d_backward(grad_output, input, weight, stride=1, padding=0,
                              output_padding=0, groups=1, dilation=1):
    """Gradients of :func:`conv_transpose2d`: ``(grad_input, grad_weight, grad_bias)``."""
    op = "conv_transpose2d_backward"
    batched = check_rank("conv_transpose2d", input)
    check_floating(op, input=input, weight=weight, grad_output=grad_output)
    x4 = _batch(input, batched)
    spec = _checks.conv_transpose2d_spec(x4.shape, weight.shape, None, stride, padding,
                                         output_padding, groups, dilation)
    c_out = weight.shape[1] * spec.groups
    g4 = _grad_output(op, grad_output, batched, (x4.shape[0], c_out) + spec.in_size)
    call = _Call(op, g4, x4, weight)
    g, x, w = call.arrays
    t = call.twin
    if _empty(x, w):
        return (call.out(zeros_like(x), batched), call.out(zeros_like(w)),
                call.out(t.bias_grad(g)))
    # y = A^T x where A is conv2d(., w, spec): dx = A g, dw is conv2d's weight gradient
    # with the roles of input and grad_output swapped.
    return (call.out(t.conv2d(g, w, None, spec), batched),
            call.out(t.conv2d_grad_weight(x, g, spec)),
            call.out(t.bias_grad(g)))


# --------------------------------------------------------------------------- pooling


def _pool_spec(op, input, kernel_size, stride, padding, dilation, ceil_mode,
               count_include_pad=True, divisor_override=None):
    batched = check_rank(op, input)
    check_floating(op, input=input)
    spec = _checks.pool2d_spec(_batch(input, batched).shape, kernel_size, stride, padding,
                               dilation, ceil_mode, count_include_pad, divisor_override, op)
    return batched, spec


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-D max pooling, as ``torch.nn.functional.max_pool2d``.

    input (N, C, H, W) or (C, H, W); padding counts as -inf. With ``return_indices`` also
    returns int64 indices of the same shape as the output: the flat position ``h*W + w`` of
    each maximum in its (H, W) input plane (the first maximum of the window; a NaN wins).
    """
    op = "max_pool2d"
    batched, spec = _pool_spec(op, input, kernel_size, stride, padding, dilation, ceil_mode)
    call = _Call(op, _batch(input, batched))
    y, idx = call.twin.max_pool2d(call.arrays[0], spec)
    if return_indices:
        return call.out(y, batched), call.out(idx, batched)
    return call.out(y, batched)


def _indices_in(indices, plane) -> bool:
    """Every index in [0, plane). NumPy's int64 in one pass: read as unsigned, a negative
    index is larger than any plane."""
    if is_tensor(indices):
        return int(indices.min()) >= 0 and int(indices.max()) < plane
    return int(indices.view(np.uint64).max()) < plane


_INT64 = np.dtype(np.int64)     # in native byte order, as the kernels read it ('>i8' is not)


def _check_indices(op, indices, shape):
    """Shape and dtype; the range is checked against the plane by _check_range."""
    if tuple(indices.shape) != tuple(shape):
        raise ArgumentError(f"{op}: expected indices of size {_checks._size(shape)}, but got "
                            f"indices of size {_checks._size(indices.shape)}")
    if not (indices.dtype == _INT64 if isinstance(indices, np.ndarray)   # str(dtype): 3 us
            else _checks.dtype_name(indices) == "int64"):
        raise _checks.DtypeError(f"{op}: indices must be int64, got "
                                 f"{_checks.dtype_name(indices)}")


def _check_range(op, twin, indices, plane):
    """Every index inside its plane, unless the twin's kernel compares each one as it
    scatters (``CHECKS_POOL_INDICES``: the compiled twin, which then raises the same error;
    the pass here, a NumPy max, takes 15 us for 100x3x16x16 indices, 80 us for 32x16x32x32,
    on the master thread between two kernels)."""
    if getattr(twin, "CHECKS_POOL_INDICES", False):
        return
    if (indices.numel() if is_tensor(indices) else indices.size) and \
            not _indices_in(indices, plane):
        raise _checks.indices_out_of_range(op, plane)


def max_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, indices=None):
    """Gradient of :func:`max_pool2d` with respect to its input, shape of ``input``.

    Each output gradient goes to the first maximum of its window (row-major), as in torch.
    ``indices`` from ``max_pool2d(..., return_indices=True)`` skips the search for the maxima.
    """
    op = "max_pool2d_backward"
    batched, spec = _pool_spec("max_pool2d", input, kernel_size, stride, padding, dilation,
                               ceil_mode)
    check_floating(op, input=input, grad_output=grad_output)
    x4 = _batch(input, batched)
    out_shape = tuple(x4.shape[:2]) + spec.out_size
    g4 = _grad_output(op, grad_output, batched, out_shape)
    if indices is not None:
        _check_indices(op, indices, out_shape if batched else out_shape[1:])
        indices = _batch(indices, batched)
    call = _Call(op, g4, x4, indices)
    g, x, idx = call.arrays
    if idx is None:
        idx = call.twin.max_pool2d(x, spec)[1]
    else:
        _check_range(op, call.twin, idx, spec.in_size[0] * spec.in_size[1])
    return call.out(call.twin.max_pool2d_backward(g, idx, spec), batched)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """2-D average pooling, as ``torch.nn.functional.avg_pool2d``.

    input (N, C, H, W) or (C, H, W). The divisor is ``divisor_override`` if given, else the
    window's size counting padding (``count_include_pad=True``) or only the input's cells.
    """
    op = "avg_pool2d"
    batched, spec = _pool_spec(op, input, kernel_size, stride, padding, 1, ceil_mode,
                               count_include_pad, divisor_override)
    call = _Call(op, _batch(input, batched))
    return call.out(call.twin.avg_pool2d(call.arrays[0], spec), batched)


def avg_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True, divisor_override=None):
    """Gradient of :func:`avg_pool2d` with respect to its input, shape of ``input``."""
    op = "avg_pool2d_backward"
    batched, spec = _pool_spec("avg_pool2d", input, kernel_size, stride, padding, 1,
                               ceil_mode, count_include_pad, divisor_override)
    check_floating(op, input=input, grad_output=grad_output)
    x4 = _batch(input, batched)
    g4 = _grad_output(op, grad_output, batched, tuple(x4.shape[:2]) + spec.out_size)
    call = _Call(op, g4, x4)  # input only decides the twin (and must match grad_output's kind)
    return call.out(call.twin.avg_pool2d_backward(call.arrays[0], spec), batched)


# --------------------------------------------------------------------------- linear


def linear(input, weight, bias=None):
    """``input @ weight.T + bias``, as ``torch.nn.functional.linear``.

    input (*, in_features), weight (out_features, in_features), bias (out_features,) or
    None. Returns (*, out_features).
    """
    op = "linear"
    check_floating(op, input=input, weight=weight, bias=bias)
    lead = _checks.linear_shapes(input.shape, weight.shape,
                                 None if bias is None else bias.shape)
    rows = _checks.prod(lead)
    call = _Call(op, input.reshape(rows, input.shape[-1]), weight, bias)
    x, w, b = call.arrays
    y = call.twin.matmul(x, w, False, True)
    if b is not None:
        y += b
    return call.out(y.reshape(lead + (w.shape[0],)))


def linear_backward(grad_output, input, weight):
    """Gradients of :func:`linear`: ``(grad_input, grad_weight, grad_bias)``.

    grad_output (*, out_features); grad_input has input's shape, grad_weight weight's,
    grad_bias is (out_features,) (the gradient of a bias, whether or not the forward had one).
    """
    op = "linear_backward"
    check_floating(op, input=input, weight=weight, grad_output=grad_output)
    lead = _checks.linear_shapes(input.shape, weight.shape, None)
    out_f = int(weight.shape[0])
    check_grad_output(op, grad_output, lead + (out_f,))
    rows = _checks.prod(lead)
    call = _Call(op, grad_output.reshape(rows, out_f), input.reshape(rows, input.shape[-1]),
                 weight)
    g, x, w = call.arrays
    t = call.twin
    return (call.out(t.matmul(g, w, False, False).reshape(tuple(input.shape))),
            call.out(t.matmul(g, x, True, False)),
            call.out(t.bias_grad(g.reshape(rows, out_f, 1, 1))))


# --------------------------------------------------------------------------- relu


def relu(input):
    """``max(input, 0)`` element-wise, as ``torch.relu``; any shape. NaN stays NaN."""
    op = "relu"
    check_floating(op, input=input)
    call = _Call(op, input)
    return call.out(call.twin.relu(call.arrays[0]))


def relu_backward(grad_output, output):
    """Gradient of :func:`relu` from its result ``output``: 0 where ``output <= 0``, else
    ``grad_output`` (torch's ``threshold_backward``: a NaN output passes its gradient)."""
    op = "relu_backward"
    check_floating(op, output=output, grad_output=grad_output)
    check_grad_output(op, grad_output, tuple(output.shape))
    call = _Call(op, grad_output, output)
    return call.out(call.twin.relu_backward(*call.arrays))
