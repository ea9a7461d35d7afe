"""The convolution lab's functions, with the lab's names, layout and results, on fast kernels.

A deep-learning course's "convolution step by step" lab has students write these in NumPy
loops. Here each one has the lab's signature and gives the lab's result (to float64
round-off), but computes with cnnlab's kernels. How the pieces fit::

    conv_forward(A_prev, W, b, hparameters)            lab layout, channels last:
        A_prev (m, n_H_prev, n_W_prev, n_C_prev)       activations
        W (f, f, n_C_prev, n_C), b (1, 1, 1, n_C)      weights and biases
        -> _nchw(A_prev), _oihw(W)                     layout converted once, on the way in
        -> functional.conv2d(x, w, b, stride, pad)     checks + the selected fast twin
        -> _nhwc(Z)                                    and once on the way out

``pool_backward(..., mode="max")`` keeps the lab's rule, which is not PyTorch's: the lab's
mask ``x == max(x)`` marks *every* tie of a window, so a gradient is copied to each tied
cell (PyTorch sends it to the first maximum only). It is computed with one vectorised pass
per window tap (f * f passes over the whole batch), not per pixel.

``convolve2d`` / ``correlate2d`` / ``output_size`` are the single-channel operations the
course draws on the blackboard, matching ``scipy.signal``. A CNN's "convolution" is a
cross-correlation: ``convolve2d(image, k)`` is ``correlate2d(image, k[::-1, ::-1])``.

Results are float32 when every array argument is float32, else float64 (the lab's
``np.zeros`` default); integer inputs are accepted and cast.
"""
from __future__ import annotations

import numpy as np

from . import functional as F
from ._checks import ArgumentError, DtypeError, _pair, _size, check_buffer

__all__ = [
    "zero_pad", "conv_single_step", "conv_forward", "conv_backward",
    "pool_forward", "create_mask_from_window", "distribute_value", "pool_backward",
    "convolve2d", "correlate2d", "output_size",
]

_MODES = ("max", "average")


# --------------------------------------------------------------------------- plumbing


def _floats(op, *arrays):
    """The arrays as NumPy arrays of one float dtype: float32 if all are, else float64."""
    arrays = [np.asarray(a) for a in arrays]
    for a in arrays:
        if a.dtype.kind not in "biuf":
            raise DtypeError(f"{op}: expected real numbers, but got an array of dtype {a.dtype}")
    dtype = np.float32 if all(a.dtype == np.float32 for a in arrays) else np.float64
    return [a.astype(dtype, copy=False) for a in arrays]


def _check_nhwc(op, a, name, shape_name="(m, n_H_prev, n_W_prev, n_C_prev)"):
    if a.ndim != 4:
        raise ArgumentError(f"{op}: expected {name} of shape {shape_name}, but got {name} "
                            f"of size {_size(a.shape)}")


def _nchw(a):
    """(m, n_H, n_W, n_C) -> contiguous (m, n_C, n_H, n_W)."""
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def _nhwc(a):
    """(m, n_C, n_H, n_W) -> contiguous (m, n_H, n_W, n_C)."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def _oihw(W):
    """Lab weights (f, f, n_C_prev, n_C) -> torch weights (n_C, n_C_prev, f, f)."""
    return np.ascontiguousarray(W.transpose(3, 2, 0, 1))


def _hparams(op, hparameters, *keys):
    missing = [k for k in keys if k not in hparameters]
    if missing:
        raise ArgumentError(f"{op}: hparameters must have the keys {list(keys)}, but "
                            f"{missing} missing from {sorted(hparameters)}")
    return [hparameters[k] for k in keys]


def _conv_operands(op, A_prev, W, b):
    """Checked lab operands of a convolution, of one float dtype."""
    A_prev, W, b = _floats(op, A_prev, W, b)
    _check_nhwc(op, A_prev, "A_prev")
    if W.ndim != 4:
        raise ArgumentError(f"{op}: expected W of shape (f, f, n_C_prev, n_C), but got W of "
                            f"size {_size(W.shape)}")
    if W.shape[2] != A_prev.shape[3]:
        raise ArgumentError(f"{op}: W of size {_size(W.shape)} expects n_C_prev = "
                            f"{W.shape[2]} channels, but A_prev of size {_size(A_prev.shape)} "
                            f"has {A_prev.shape[3]}")
    if b.size != W.shape[3]:
        raise ArgumentError(f"{op}: expected b of shape (1, 1, 1, {W.shape[3]}), but got b of "
                            f"size {_size(b.shape)}")
    return A_prev, W, b


def _pool_hparams(op, hparameters, mode):
    if mode not in _MODES:
        raise ArgumentError(f"{op}: mode must be 'max' or 'average', but got {mode!r}")
    f, stride = _hparams(op, hparameters, "f", "stride")
    return f, stride


# --------------------------------------------------------------------------- convolution


def zero_pad(X, pad):
    """X of shape (m, n_H, n_W, n_C) padded with ``pad`` zeros on both sides of both
    spatial axes: (m, n_H + 2*pad, n_W + 2*pad, n_C). ``pad`` may be a pair (pad_H, pad_W)."""
    X = np.asarray(X)
    _check_nhwc("zero_pad", X, "X", "(m, n_H, n_W, n_C)")
    ph, pw = _pair(pad, "pad")
    if min(ph, pw) < 0:
        raise ArgumentError("negative padding is not supported")
    m, h, w, c = X.shape
    shape = (m, h + 2 * ph, w + 2 * pw, c)
    check_buffer("zero_pad: the padded array", shape, X.dtype.itemsize)
    out = np.zeros(shape, X.dtype)
    out[:, ph:ph + h, pw:pw + w, :] = X
    return out


def conv_single_step(a_slice_prev, W, b):
    """One output value of a convolution: ``sum(a_slice_prev * W) + b``, as a float.

    a_slice_prev and W have one shape, (f, f, n_C_prev); b holds one number (shape (1, 1, 1)).
    """
    a, w, b = _floats("conv_single_step", a_slice_prev, W, b)
    if a.shape != w.shape:
        raise ArgumentError(f"conv_single_step: a_slice_prev of size {_size(a.shape)} and W "
                            f"of size {_size(w.shape)} should have the same shape")
    if b.size != 1:
        raise ArgumentError(f"conv_single_step: b must hold one number, but got b of size "
                            f"{_size(b.shape)}")
    return float(np.sum(a * w)) + float(b.reshape(()))


def conv_forward(A_prev, W, b, hparameters):
    """The convolution's forward pass: ``(Z, cache)``.

    A_prev (m, n_H_prev, n_W_prev, n_C_prev), W (f, f, n_C_prev, n_C), b (1, 1, 1, n_C),
    hparameters ``{"stride": s, "pad": p}``. Z is (m, n_H, n_W, n_C) with
    ``n_H = (n_H_prev + 2*p - f) // s + 1``; ``cache = (A_prev, W, b, hparameters)``.
    """
    op = "conv_forward"
    x, w, bb = _conv_operands(op, A_prev, W, b)
    stride, pad = _hparams(op, hparameters, "stride", "pad")
    Z = F.conv2d(_nchw(x), _oihw(w), bb.reshape(-1), stride=stride, padding=pad)
    return _nhwc(Z), (A_prev, W, b, hparameters)


def conv_backward(dZ, cache):
    """The convolution's backward pass: ``(dA_prev, dW, db)``, shaped as A_prev, W and b.

    dZ (m, n_H, n_W, n_C) is the gradient of the cost with respect to conv_forward's Z;
    cache is conv_forward's.
    """
    op = "conv_backward"
    A_prev, W, b, hparameters = cache
    x, w, bb = _conv_operands(op, A_prev, W, b)
    stride, pad = _hparams(op, hparameters, "stride", "pad")
    (dz,) = _floats(op, dZ)
    if dz.dtype != x.dtype:
        dz, x, w = (a.astype(np.float64) for a in (dz, x, w))
    expected = (x.shape[0],) + F.conv2d_output_shape(x.shape[1:3], w.shape[:2], stride, pad) \
        + (w.shape[3],)
    if dz.shape != expected:
        raise ArgumentError(f"{op}: expected dZ of size {_size(expected)} (the shape of Z), "
                            f"but got dZ of size {_size(dz.shape)}")
    gx, gw, gb = F.conv2d_backward(_nchw(dz), _nchw(x), _oihw(w), stride=stride, padding=pad)
    return _nhwc(gx), np.ascontiguousarray(gw.transpose(2, 3, 1, 0)), gb.reshape(np.shape(b))


# --------------------------------------------------------------------------- pooling


def pool_forward(A_prev, hparameters, mode="max"):
    """The pooling layer's forward pass: ``(A, cache)``.

    A_prev (m, n_H_prev, n_W_prev, n_C), hparameters ``{"f": f, "stride": s}``, mode
    ``"max"`` or ``"average"``. A is (m, n_H, n_W, n_C) with ``n_H = (n_H_prev - f) // s + 1``;
    ``cache = (A_prev, hparameters)``.
    """
    op = "pool_forward"
    f, stride = _pool_hparams(op, hparameters, mode)
    (x,) = _floats(op, A_prev)
    _check_nhwc(op, x, "A_prev")
    pool = F.max_pool2d if mode == "max" else F.avg_pool2d
    return _nhwc(pool(_nchw(x), f, stride)), (A_prev, hparameters)


def create_mask_from_window(x):
    """Boolean mask of x's shape, True wherever ``x == max(x)`` (every tie is marked)."""
    x = np.asarray(x)
    return x == np.max(x)


def distribute_value(dz, shape):
    """An array of ``shape`` = (n_H, n_W) filled with ``dz / (n_H * n_W)``: a gradient
    spread evenly over an average-pooling window."""
    n_h, n_w = shape
    return np.full((n_h, n_w), dz / (n_h * n_w), dtype=np.float64)


def _max_pool_backward_all_ties(g, x, f, stride):
    """Lab rule, NCHW: every cell equal to its window's max gets that window's gradient.

    g (m, C, n_H, n_W), x (m, C, H, W). One vectorised pass per window tap (i, j): the taps
    at (i, j) of all windows form the strided slice x[..., i::s, j::s].
    """
    y = F.max_pool2d(x, f, stride)                   # the window maxima, fast twin
    kh, kw = _pair(f, "f")
    sh, sw = _pair(stride, "stride")
    n_h, n_w = y.shape[2:]
    dx = np.zeros_like(x)
    for i in range(kh):
        rows = slice(i, i + (n_h - 1) * sh + 1, sh)
        for j in range(kw):
            cols = slice(j, j + (n_w - 1) * sw + 1, sw)
            # mask * dA, as the lab multiplies (so 0 * inf is NaN there too)
            dx[:, :, rows, cols] += (x[:, :, rows, cols] == y) * g
    return dx


def pool_backward(dA, cache, mode="max"):
    """The pooling layer's backward pass: dA_prev, shaped as A_prev.

    dA (m, n_H, n_W, n_C) is the gradient with respect to pool_forward's A; cache is
    pool_forward's. Max mode adds ``mask * dA`` over each window with the lab's mask
    (every cell equal to the window's max); average mode adds ``dA / (f * f)`` to each cell.
    """
    op = "pool_backward"
    A_prev, hparameters = cache
    f, stride = _pool_hparams(op, hparameters, mode)
    da, x = _floats(op, dA, A_prev)
    _check_nhwc(op, x, "A_prev")
    expected = (x.shape[0],) + F.pool2d_output_shape(x.shape[1:3], f, stride) + (x.shape[3],)
    if da.shape != expected:
        raise ArgumentError(f"{op}: expected dA of size {_size(expected)} (the shape of A), "
                            f"but got dA of size {_size(da.shape)}")
    g, x = _nchw(da), _nchw(x)
    if mode == "max":
        dx = _max_pool_backward_all_ties(g, x, f, stride)
    else:
        dx = F.avg_pool2d_backward(g, x, f, stride)
    return _nhwc(dx)


# --------------------------------------------------------------------------- one channel


def _plane_operands(op, image, kernel, mode):
    if mode not in ("valid", "same", "full"):
        raise ArgumentError("Acceptable mode flags are 'valid', 'same', or 'full'.")
    image, kernel = _floats(op, image, kernel)
    if image.ndim != 2 or kernel.ndim != 2:
        raise ArgumentError(f"{op} inputs must both be 2-D arrays, but got image of size "
                            f"{_size(image.shape)} and kernel of size {_size(kernel.shape)}")
    if image.size == 0 or kernel.size == 0:
        raise ArgumentError(f"{op}: image and kernel must not be empty")
    return image, kernel


def _correlate(image, kernel, before, after):
    """Cross-correlation of 2-D arrays with ``before``/``after`` zero rows and columns
    around the image; one (1, 1, H, W) conv2d on the fast twin."""
    (bh, bw), (ah, aw) = before, after
    h, w = image.shape
    padded = np.zeros((h + bh + ah, w + bw + aw), image.dtype)
    padded[bh:bh + h, bw:bw + w] = image
    # a fresh copy of the (small) kernel: torch refuses the negative strides of a flipped one
    return F.conv2d(padded[None, None], kernel.copy()[None, None])[0, 0]


def _valid_swap(image, kernel):
    """'valid' needs one array at least as large as the other on both axes (SciPy's rule)."""
    if all(i >= k for i, k in zip(image.shape, kernel.shape)):
        return False
    if all(k >= i for i, k in zip(image.shape, kernel.shape)):
        return True
    raise ArgumentError("For 'valid' mode, one must be at least as large as the other in "
                        "every dimension")


def correlate2d(image, kernel, mode="full"):
    """2-D cross-correlation, as ``scipy.signal.correlate2d`` (zero fill):
    ``out[i, j] = sum_{a, b} image[i + a - p_H, j + b - p_W] * kernel[a, b]``.

    This is what a CNN layer computes. image (H, W), kernel (kH, kW); mode 'full' (output
    (H + kH - 1, W + kW - 1), p = k - 1), 'same' (output (H, W), p = (k - 1) // 2, so an
    even kernel reaches one more cell after than before) or 'valid' (output
    (H - kH + 1, W - kW + 1), p = 0; if the kernel is the larger array, SciPy's rule:
    the arrays swap and the output is reversed).
    """
    image, kernel = _plane_operands("correlate2d", image, kernel, mode)
    if mode == "valid":
        if _valid_swap(image, kernel):
            return _correlate(kernel, image, (0, 0), (0, 0))[::-1, ::-1].copy()
        return _correlate(image, kernel, (0, 0), (0, 0))
    k = np.array(kernel.shape) - 1
    if mode == "full":
        return _correlate(image, kernel, tuple(k), tuple(k))
    return _correlate(image, kernel, tuple(k // 2), tuple(k - k // 2))


def convolve2d(image, kernel, mode="full"):
    """2-D convolution, as ``scipy.signal.convolve2d`` (zero fill): the cross-correlation
    with the flipped kernel ``kernel[::-1, ::-1]``,
    ``out[i, j] = sum_{a, b} image[i - a + q_H, j - b + q_W] * kernel[a, b]``.

    image (H, W), kernel (kH, kW); mode 'full' (q = 0), 'same' (output (H, W), q = (k - 1)//2)
    or 'valid' (the arrays swap if the kernel is the larger; convolution commutes). For an
    even kernel, 'same' here is *not* ``correlate2d(image, kernel[::-1, ::-1], 'same')``:
    SciPy centres the two differently, and so does cnnlab.
    """
    image, kernel = _plane_operands("convolve2d", image, kernel, mode)
    if mode == "valid" and _valid_swap(image, kernel):
        image, kernel = kernel, image
    flipped = kernel[::-1, ::-1]
    if mode == "valid":
        return _correlate(image, flipped, (0, 0), (0, 0))
    k = np.array(kernel.shape) - 1
    if mode == "full":
        return _correlate(image, flipped, tuple(k), tuple(k))
    return _correlate(image, flipped, tuple(k - k // 2), tuple(k // 2))


def output_size(n, f, padding=0, stride=1, dilation=1):
    """Output length of a convolution along one axis:
    ``(n + 2*padding - dilation*(f - 1) - 1) // stride + 1``.

    Example: a 5x5 image, 3x3 kernel, no padding -> ``output_size(5, 3) == 3``;
    ``padding`` may also be 'valid' or 'same'.
    """
    return F.conv2d_output_shape(n, f, stride=stride, padding=padding, dilation=dilation)[0]
