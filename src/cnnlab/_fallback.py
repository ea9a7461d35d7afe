"""The NumPy twin: the kernel contract in vectorised NumPy (no Python loop per pixel).

The kernel contract (``_core``, ``_fallback`` and ``_torch`` all export exactly these):

    conv2d(x, weight, bias, spec) -> y
        x (N, C_in, H, W), weight (C_out, C_in/groups, kH, kW), bias (C_out,) or None
        -> y (N, C_out, H_out, W_out);  (H, W) = spec.in_size, (H_out, W_out) = spec.out_size
    conv2d_grad_input(grad_output, weight, spec, bias=None) -> (N, C_in, H, W)
        plus bias (C_in,) where given, in every cell of its channel (conv_transpose2d's)
    conv2d_grad_weight(grad_output, x, spec) -> (C_out, C_in/groups, kH, kW)
    bias_grad(grad_output) -> (C,)                      sum over N, H, W
    max_pool2d(x, spec) -> (y, indices)                 indices int64, flat h*W + w
    max_pool2d_backward(grad_output, indices, spec) -> (N, C, H, W)
    avg_pool2d(x, spec) -> y
    avg_pool2d_backward(grad_output, spec) -> (N, C, H, W)
    matmul(a, b, trans_a, trans_b) -> (M, N)            op(a) @ op(b), op(a) = a.T if trans_a
        a 2-D (M, K) (or (K, M) when trans_a), b 2-D (K, N) (or (N, K) when trans_b)
    relu(x) -> y                                        max(x, 0); NaN stays NaN (-0.0
                                                        stays -0.0 but here, where it is 0.0)
    relu_backward(grad_output, output) -> grad_input    0 where output <= 0, else grad_output
        x, grad_output, output: any shape (one shape per call)

Operands arrive checked (``_checks``), 4-D (but matmul's and relu's), C-contiguous
(possibly read-only), of one dtype (float32 or float64); results are new arrays of that
dtype. ``spec`` is a ``ConvSpec`` / ``PoolSpec``: reads outside the input are zeros (conv)
or skipped (pooling).
Max pooling takes the first maximum of a window in row-major order; a NaN wins, the last
NaN of the window if several (PyTorch's CPU rule: ``val > max or isnan(val)``).

Here the convolutions are im2col with ``sliding_window_view`` and one 2-D GEMM per group,
or on large planes one per image and group (``_per_image``), and pooling and col2im loop
over the kernel taps, each a strided slice of all pixels at once. With stride 1, the input
gradient's col2im uses a flat layout where each tap is one contiguous slice (see "stride 1"
below).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._checks import check_buffer, first_taps, tiles, window_extent

__all__ = ["conv2d", "conv2d_grad_input", "conv2d_grad_weight", "bias_grad",
           "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward", "matmul",
           "relu", "relu_backward"]


def _padded(x, spec, fill=0.0):
    """x with spec.padding before and enough after for every window; (N, C, Hp, Wp)."""
    (ph, pw), (need_h, need_w) = spec.padding, window_extent(spec)
    h, w = x.shape[2:]
    shape = x.shape[:2] + (max(need_h, ph + h), max(need_w, pw + w))
    check_buffer("the NumPy twin's zero-padded input", shape, x.dtype.itemsize)
    xp = np.full(shape, fill, x.dtype)
    xp[:, :, ph:ph + h, pw:pw + w] = x
    return xp


def _windows(xp, spec):
    """Strided view (N, C, H_out, W_out, kH, kW) of the windows of a padded array."""
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    kh, kw = spec.kernel_size
    ho, wo = spec.out_size
    v = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    return v[:, :, :(ho - 1) * sh + 1:sh, :(wo - 1) * sw + 1:sw, ::dh, ::dw]


def _grouped(a, groups):
    """(N, C, ...) -> (N, groups, C/groups, ...)."""
    return a.reshape(a.shape[0], groups, a.shape[1] // groups, *a.shape[2:])


def _columns(x, spec, per_image=False):
    """im2col: a copy of the windows of x, K = C_in/G*kH*kW rows in the weight's (c, i, j)
    order; (G, K, N*H_out*W_out), or per image (N, G, K, H_out*W_out)."""
    g, n = spec.groups, x.shape[0]
    cols = _grouped(_windows(_padded(x, spec), spec), g)        # N,G,Cg,Ho,Wo,kH,kW
    k, p = cols.shape[2] * cols.shape[5] * cols.shape[6], cols.shape[3] * cols.shape[4]
    if per_image:
        return cols.transpose(0, 1, 2, 5, 6, 3, 4).reshape(n, g, k, p)
    return cols.transpose(1, 2, 5, 6, 0, 3, 4).reshape(g, k, n * p)


#: Output planes of at least this many positions take the per-image layout: a GEMM per
#: image (NumPy's batched matmul calls BLAS per image) that writes (N, C_out, H_out*W_out)
#: in place, where the one large GEMM's (C_out, N*H_out*W_out) must be transposed after
#: (the forward) or before (the weight gradient's output gradient). Measured alternately in
#: one process (2 threads, batch 32, float32): 16->32 @32 forward 6.0-7.4 -> 5.2-6.3 ms,
#: weight gradient 5.9-6.0 -> 5.3; 3->16 @64 4.6-5.1 -> 4.1-5.0 and 5.4-5.7 -> 4.7-5.0;
#: even at 16x16 and 56x56; slower on small planes (64->64 @4 weight gradient 1.35 -> 2.14).
_IMAGE_PLANE = 1024
#: The weight gradient's per-image products, (C_out/G, K) each and summed after, may add at
#: most 1/_PRODUCTS of the columns' size (N, K, H_out*W_out): C_out/G <= H_out*W_out/8.
_PRODUCTS = 8


def _per_image(spec, rows: int = 0) -> bool:
    """Take the per-image layout: a large plane, and ``rows`` (the weight gradient's C_out/G)
    small beside it."""
    plane = spec.out_size[0] * spec.out_size[1]
    return plane >= _IMAGE_PLANE and _PRODUCTS * rows <= plane


def _by_group(a, groups):
    """(N, C, H, W) -> (G, C/G, N*H*W) copy: one 2-D operand per group."""
    n, c, h, w = a.shape
    return a.reshape(n, groups, c // groups, h * w).transpose(1, 2, 0, 3).reshape(
        groups, c // groups, n * h * w)


def conv2d(x, weight, bias, spec):
    """im2col, then one 2-D GEMM per group, or per image and group on large planes (NumPy's
    BLAS, its own threads)."""
    g, n = spec.groups, x.shape[0]
    wm = weight.reshape(g, weight.shape[0] // g, -1)             # G,Og,K
    if _per_image(spec):
        y = np.matmul(wm, _columns(x, spec, per_image=True))     # N,G,Og,Ho*Wo
        y = y.reshape(n, weight.shape[0], *spec.out_size)
        if bias is not None:
            y += bias.reshape(-1, 1, 1)
        return y
    cols = _columns(x, spec)                                     # G,K,N*Ho*Wo
    y = np.empty((g, wm.shape[1], cols.shape[2]), x.dtype)
    for i in range(g):
        np.matmul(wm[i], cols[i], out=y[i])
    y = y.reshape(weight.shape[0], n, *spec.out_size)
    if bias is not None:
        y += bias.reshape(-1, 1, 1, 1)
    return np.ascontiguousarray(y.transpose(1, 0, 2, 3))


def conv2d_grad_input(grad_output, weight, spec, bias=None):
    """The columns W^T grad_output (one GEMM per group), scattered back through the
    windows they came from (col2im; for stride 1, in the flat layout below); then bias."""
    gx = _grad_input(grad_output, weight, spec)
    if bias is not None:
        gx += bias.reshape(1, -1, 1, 1)
    return gx


def _grad_input(grad_output, weight, spec):
    g, n = spec.groups, grad_output.shape[0]
    kh, kw = spec.kernel_size
    ho, wo = spec.out_size
    flat = _flat_ok(grad_output, spec, _FLAT_GRAD_INPUT)
    gy = _flat_outputs(grad_output, spec) if flat else _by_group(grad_output, g)  # G,Og,cols
    wm = weight.reshape(g, weight.shape[0] // g, -1)             # G,Og,K
    cols = np.empty((g, wm.shape[2], gy.shape[2]), grad_output.dtype)
    for i in range(g):
        np.matmul(wm[i].T, gy[i], out=cols[i])
    if flat:
        return _flat_col2im(cols, spec)
    cols = cols.reshape(g * weight.shape[1], kh, kw, n, ho, wo).transpose(3, 0, 1, 2, 4, 5)
    return _col2im(cols, spec)


def conv2d_grad_weight(grad_output, x, spec):
    """grad_output times the transposed columns: one GEMM per group, or per image and group
    on large planes (summed over the images)."""
    g, n = spec.groups, x.shape[0]
    if _per_image(spec, rows=grad_output.shape[1] // g):
        gy = grad_output.reshape(n, g, grad_output.shape[1] // g, -1)       # N,G,Og,Ho*Wo
        cols = _columns(x, spec, per_image=True)                           # N,G,K,Ho*Wo
        gw = np.matmul(gy, cols.swapaxes(-1, -2)).sum(axis=0)
    else:
        cols = _columns(x, spec)                                 # G,K,N*Ho*Wo
        gy = _by_group(grad_output, g)                           # G,Og,N*Ho*Wo
        gw = np.empty((g, gy.shape[1], cols.shape[1]), x.dtype)
        for i in range(g):
            np.matmul(gy[i], cols[i].T, out=gw[i])
    return gw.reshape(grad_output.shape[1], x.shape[1] // g, *spec.kernel_size)


def bias_grad(grad_output):
    return grad_output.sum(axis=(0, 2, 3))


def matmul(a, b, trans_a, trans_b):
    return np.matmul(a.T if trans_a else a, b.T if trans_b else b)


def relu(x):
    return np.maximum(x, 0)


def relu_backward(grad_output, output):
    """A product with the mask (masked copies cost a mispredicted branch per element);
    where that made a NaN (an infinite gradient times 0), the exact ``where`` instead."""
    with np.errstate(invalid="ignore"):
        gx = grad_output * ~(output <= 0)
    if gx.size and np.isnan(gx.max()):           # a max propagates NaN: one pass, no mask
        gx = np.where(output <= 0, np.zeros((), gx.dtype), grad_output)
    return gx


# --------------------------------------------------------------------------- stride 1
# With stride 1, output (n, h, w) reads the zero-padded input, laid out channels first as
# (C, N, Hp, Wp) and flattened, at position n*Hp*Wp + h*Wp + w + offset, where tap (i, j)
# adds offset = i*dH*Wp + j*dW: the same for every output. So col2im adds each tap's
# columns to one contiguous slice of each channel's flat row, where the windowed one adds
# W_out elements at a time. The GEMM then runs over every flat position, the padding's
# among them, which read zeros from the output gradient: that share of padded positions is
# the price. Measured, it pays down to 4x4 planes (125% more positions), where the strided
# col2im it replaces is slowest. (The forward took this layout for its im2col on 64x64
# planes until the per-image layout above, measured as fast or faster there: 3->16 @64
# 5.1 -> 5.0 and 4.6 -> 4.1 ms.)

#: The most flat positions per output at which the input gradient takes the flat layout.
_FLAT_GRAD_INPUT = 2.5


def _flat_shape(spec):
    """(Hp, Wp): the zero-padded input's rows and columns."""
    return tuple(s + p + e for s, p, e in zip(spec.in_size, spec.padding, spec.padding_end))


def _flat_ok(a, spec, limit) -> bool:
    """Stride 1, nothing empty, and at most ``limit`` flat positions per output."""
    if spec.stride != (1, 1) or a.size == 0 or 0 in spec.out_size:
        return False
    hp, wp = _flat_shape(spec)
    return hp * wp <= limit * spec.out_size[0] * spec.out_size[1]


def _flat_offsets(spec, wp):
    """Each tap's flat offset, in the weight's row-major (i, j) order; the last is how far a
    tap's slice reaches past the positions."""
    (kh, kw), (dh, dw) = spec.kernel_size, spec.dilation
    return [i * dh * wp + j * dw for i in range(kh) for j in range(kw)]


def _flat_outputs(grad_output, spec):
    """grad_output (N, O, H_out, W_out) at its outputs' flat positions, zeros elsewhere:
    (G, O/G, N*Hp*Wp)."""
    (n, k), (ho, wo), (hp, wp) = grad_output.shape[:2], spec.out_size, _flat_shape(spec)
    check_buffer("the NumPy twin's output gradient", (k, n, hp, wp), grad_output.dtype.itemsize)
    gy = np.zeros((k, n, hp, wp), grad_output.dtype)
    gy[:, :, :ho, :wo] = grad_output.transpose(1, 0, 2, 3)
    return gy.reshape(spec.groups, k // spec.groups, n * hp * wp)


def _flat_col2im(cols, spec):
    """Sum flat columns (G, C/G*kH*kW, N*Hp*Wp) into their taps' input positions:
    (N, C, H, W)."""
    (ph, pw), (h, w), (hp, wp), size = spec.padding, spec.in_size, _flat_shape(spec), cols.shape[2]
    offsets = _flat_offsets(spec, wp)
    n, c = size // (hp * wp), cols.shape[0] * cols.shape[1] // len(offsets)
    cols = cols.reshape(c, len(offsets), size)
    check_buffer("the NumPy twin's zero-padded input gradient", (c, size + offsets[-1]),
                 cols.dtype.itemsize)
    gx = np.zeros((c, size + offsets[-1]), cols.dtype)
    for t, start in enumerate(offsets):
        gx[:, start:start + size] += cols[:, t]
    inside = gx[:, :size].reshape(c, n, hp, wp)[:, :, ph:ph + h, pw:pw + w]
    return np.ascontiguousarray(inside.transpose(1, 0, 2, 3))


def _taps(spec):
    """For each kernel tap (i, j): (i, j, its slice of the padded array over all outputs)."""
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    kh, kw = spec.kernel_size
    ho, wo = spec.out_size
    for i in range(kh):
        for j in range(kw):
            sl = (slice(None), slice(None), slice(i * dh, i * dh + (ho - 1) * sh + 1, sh),
                  slice(j * dw, j * dw + (wo - 1) * sw + 1, sw))
            yield i, j, sl


# --------------------------------------------------------------------------- pooling
# Pooling reads the input in place: per kernel tap, only the block of outputs whose window
# reads that tap inside the input, and only the taps that some window reads inside it. So
# a huge kernel, stride or padding on a small input costs the output plus one block per
# tap, never a padded copy (a 46341-wide window on a 1x1 input is one tap, not 2**31).


class _Tap(NamedTuple):
    """One kernel tap along one axis: outputs [lo, hi) read input rows first, first + s, ..."""

    tap: int
    lo: int
    hi: int
    first: int


def _axis_taps(size, k, s, p, d, out):
    """The taps of one axis that read inside ``[0, size)`` for some output, in order.

    Output o's tap i reads ``o*s - p + i*d``. Candidates are the taps between the last
    window's first in-bounds row and the first window's last one; when those are many
    more than the taps the windows can hold inside the input (a huge kernel or stride),
    the taps come from each window's in-bounds interval instead."""
    i_lo = max(0, -(-(p - (out - 1) * s) // d))
    i_hi = min(k - 1, (size - 1 + p) // d)
    if i_hi < i_lo:
        return []
    per_window = (size - 1) // d + 1
    if i_hi - i_lo + 1 <= 4 * out * per_window:
        taps = np.arange(i_lo, i_hi + 1, dtype=np.int64)
    else:                                  # the union of each window's in-bounds taps
        o = np.arange(out, dtype=np.int64)
        a = np.maximum(-((o * s - p) // d), 0)                      # ceil((p - o*s) / d)
        b = np.minimum((size - 1 + p - o * s) // d, k - 1)
        a, b = a[a <= b], b[a <= b]
        n = b - a + 1
        taps = np.unique(np.repeat(a - np.cumsum(n) + n, n) + np.arange(n.sum()))
    lo = np.maximum(-((taps * d - p) // s), 0)                       # ceil((p - i*d) / s)
    hi = np.minimum((size - 1 + p - taps * d) // s + 1, out)
    keep = lo < hi
    return [_Tap(int(i), int(a), int(b), int(a * s - p + i * d))
            for i, a, b in zip(taps[keep], lo[keep], hi[keep])]


def _blocks(spec):
    """For each 2-D tap inside the input, row-major: (tap_h, tap_w, output block, input
    slice), the block and slice as index tuples over (N, C, rows, columns)."""
    (sh, sw), all_ = spec.stride, slice(None)
    rows, cols = (_axis_taps(*args) for args in zip(
        spec.in_size, spec.kernel_size, spec.stride, spec.padding, spec.dilation,
        spec.out_size))
    for r in rows:
        for c in cols:
            out = (all_, all_, slice(r.lo, r.hi), slice(c.lo, c.hi))
            src = (all_, all_, slice(r.first, r.first + (r.hi - r.lo - 1) * sh + 1, sh),
                   slice(c.first, c.first + (c.hi - c.lo - 1) * sw + 1, sw))
            yield r, c, out, src


def _empty(x, spec):
    """An empty batch: nothing to read (the window geometry may be huge)."""
    return x.shape[0] * x.shape[1] == 0


def max_pool2d(x, spec):
    """PyTorch's scan: taps in row-major order, take a tap when ``val > best or isnan(val)``,
    starting from best = -inf at the window's first in-bounds tap.

    Without NaNs that is a running ``maximum`` and, per window, the last tap that raised it;
    taps come in increasing order, so the winner is a running maximum of ``raised * tap``
    (small integers; masked copies would cost a mispredicted branch per element). A NaN
    anywhere makes some window's maximum NaN; then the exact scan below runs instead.

    Each tap reads a block of the input: a strided view of x, or where the windows tile the
    input, one contiguous plane of a tap-major copy (a strided copy once, then contiguous
    passes: 16@64 4.2 -> 3.3 ms, 64@16 1.14 -> 0.77 ms)."""
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    (ph, pw), (kh, kw), w = spec.padding, spec.kernel_size, spec.in_size[1]
    (ho, wo), shape = spec.out_size, x.shape[:2] + spec.out_size
    if _empty(x, spec):
        return np.full(shape, -np.inf, x.dtype), np.zeros(shape, np.int64)
    if tiles(spec):                                   # (tap, output block, its values)
        by_tap = np.ascontiguousarray(x.reshape(shape[:3] + (kh, wo, kw))
                                      .transpose(3, 5, 0, 1, 2, 4))
        blocks = [(i * kw + j, (slice(None),) * 4, by_tap[i, j])
                  for i in range(kh) for j in range(kw)]
    else:
        blocks = [(r.tap * kw + c.tap, out, x[src]) for r, c, out, src in _blocks(spec)]
    if blocks[0][2].shape == shape:                   # every window's first tap: it raises
        best, blocks = blocks[0][2].copy(), blocks[1:]  # -inf (or not), stays the winner
    else:
        best = np.full(shape, -np.inf, x.dtype)
    r0 = np.arange(ho, dtype=np.int64) * sh - ph      # each window's origin
    c0 = np.arange(wo, dtype=np.int64) * sw - pw
    rows, cols = first_taps(spec)
    kind = np.min_scalar_type(kh * kw - 1)
    tap = np.empty(best.shape, kind)                  # the winning tap, i*kW + j
    tap[...] = ((rows - r0) // dh * kw)[:, None] + ((cols - c0) // dw)[None, :]
    raised, scaled = np.empty(best.shape, bool), np.empty(best.shape, kind)
    for t, out, val in blocks:
        np.greater(val, best[out], out=raised[out])
        np.multiply(raised[out], kind.type(t), out=scaled[out])
        np.maximum(tap[out], scaled[out], out=tap[out])
        np.maximum(best[out], val, out=best[out])
    if np.isnan(best).any():
        return _max_pool2d_scan(x, spec)
    if kh * kw <= 4096:                               # tap -> offset from the origin
        i, j = np.divmod(np.arange(kh * kw, dtype=np.int64), kw)
        idx = (i * dh * w + j * dw).take(tap)
    else:                                             # a huge window: no table
        i, j = np.divmod(tap.astype(np.int64), kw)
        idx = i * (dh * w) + j * dw
    idx += r0[:, None] * w + c0[None, :]
    return best, idx


def _max_pool2d_scan(x, spec):
    """max_pool2d, tap by tap with masked copies: exact with NaNs (x is not empty)."""
    (sh, sw), w = spec.stride, spec.in_size[1]
    best = np.full(x.shape[:2] + spec.out_size, -np.inf, x.dtype)
    rows, cols = first_taps(spec)
    idx = np.empty(best.shape, np.int64)
    idx[...] = rows[:, None] * w + cols[None, :]
    for r, c, out, src in _blocks(spec):
        val, top = x[src], best[out]
        take = (val > top) | np.isnan(val)
        np.copyto(top, val, where=take)
        flat = ((r.first + sh * np.arange(r.hi - r.lo))[:, None] * w
                + (c.first + sw * np.arange(c.hi - c.lo))[None, :])
        np.copyto(idx[out], flat, where=take)
    return best, idx


def max_pool2d_backward(grad_output, indices, spec):
    n, c = grad_output.shape[:2]
    h, w = spec.in_size
    gx = np.zeros((n * c, h * w), grad_output.dtype)
    flat = indices.reshape(n * c, -1 if n * c else 0) + (np.arange(n * c) * (h * w))[:, None]
    np.add.at(gx.reshape(-1), flat.reshape(-1), grad_output.reshape(-1))
    return gx.reshape(n, c, h, w)


def _avg_divisor(spec, dtype):
    """(H_out, W_out) divisors, PyTorch's rule (see PoolSpec)."""
    if spec.divisor_override is not None:
        return np.full(spec.out_size, spec.divisor_override, dtype)
    sizes = []
    for o, s, p, k, i in zip(spec.out_size, spec.stride, spec.padding, spec.kernel_size,
                             spec.in_size):
        start = np.arange(o, dtype=np.int64) * s - p
        end = np.minimum(start + k, i + p)
        if spec.count_include_pad:
            sizes.append(end - start)
        else:
            sizes.append(np.minimum(end, i) - np.maximum(start, 0))
    return np.multiply.outer(sizes[0], sizes[1]).astype(dtype)


def avg_pool2d(x, spec):
    total = np.zeros(x.shape[:2] + spec.out_size, x.dtype)
    if _empty(x, spec):
        return total
    for _, _, out, src in _blocks(spec):
        total[out] += x[src]
    total /= _avg_divisor(spec, x.dtype)
    return total


def avg_pool2d_backward(grad_output, spec):
    n, c = grad_output.shape[:2]
    gx = np.zeros((n, c) + spec.in_size, grad_output.dtype)
    if _empty(grad_output, spec):
        return gx
    g = grad_output / _avg_divisor(spec, grad_output.dtype)
    for _, _, out, src in _blocks(spec):
        gx[src] += g[out]
    return gx


# --------------------------------------------------------------------------- col2im


def _col2im(cols, spec):
    """Sum (N, C, kH, kW, H_out, W_out) tap contributions into (N, C, H, W)."""
    n, c = cols.shape[:2]
    (ph, pw), (h, w) = spec.padding, spec.in_size
    eh, ew = window_extent(spec)
    hp, wp = max(eh, ph + h), max(ew, pw + w)
    gxp = np.zeros((n, c, hp, wp), cols.dtype)
    for i, j, sl in _taps(spec):         # a loop over the kernel taps, not the pixels
        gxp[sl] += cols[:, :, i, j]
    return np.ascontiguousarray(gxp[:, :, ph:ph + h, pw:pw + w])
