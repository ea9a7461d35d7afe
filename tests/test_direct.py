"""Convolutions in the shapes the compiled twin computes with its direct kernels (forward and
weight gradient; float32 and float64, at most 4 input channels, any stride, no dilation, one
group, at least 4 output channels and 8 output columns; the input gradient of such layers
with 3 or 4 input channels, at most 16 output channels and stride 1; AVX2+FMA CPUs): rows in
blocks of 3, 2 and 1 registers of columns (partial blocks at the right edge), 1 to 4 input
channels, kernels 1 to 7 (square, even, 1xk and kx1), paddings from 0 to wider than the
kernel, 'same' (uneven for even kernels), 3x3 windows at stride 1 (which the kernels
compile apart) with unequal paddings and row strides, output channels not a multiple of 4,
and a wide image whose rows a work item copies in several blocks. Every twin runs them
against the naive loops (``cnnlab.reference``) or SciPy, within the suite's tolerance of
each dtype.
"""
from __future__ import annotations

import numpy as np
import pytest

from cnnlab import _checks
from cnnlab import functional as F
from cnnlab import reference as R

# (N, C_in, C_out, H, W, kernel, padding[, stride])
CASES = [
    (2, 3, 16, 12, 16, 3, 1),
    (1, 1, 5, 9, 13, 3, 0),
    (2, 3, 7, 6, 30, 5, 2),
    (1, 4, 8, 7, 8, 3, 4),
    (3, 2, 9, 5, 17, (3, 1), "same"),
    (0, 3, 4, 8, 8, 3, 1),
    (2, 1, 4, 5, 8, 1, 0),
    (1, 2, 6, 6, 9, 2, 0),
    (2, 3, 13, 7, 25, 3, 1),
    (1, 4, 12, 5, 40, 5, 2),
    (2, 3, 10, 8, 47, 7, 3),
    (1, 1, 5, 6, 20, (1, 7), (0, 3)),
    (1, 2, 4, 9, 17, (7, 1), (3, 0)),
    (1, 3, 6, 4, 64, 4, 3),
    (2, 3, 25, 31, 31, 3, 1, 2),
    (1, 2, 5, 9, 40, 5, 2, 2),
    (1, 4, 6, 10, 60, 7, 3, 3),
    (2, 1, 4, 7, 50, (3, 4), (1, 0), (2, 3)),
    (1, 3, 8, 8, 20, 1, 0, 2),
    (1, 3, 4, 9, 33, 2, 0, 2),
    (1, 2, 4, 6, 30, 3, 4, 2),
    (1, 3, 5, 6, 20, 4, "same"),
    (2, 4, 16, 9, 21, (2, 5), "same"),
    (1, 3, 6, 5, 11, (1, 3), (0, 2)),
    (2, 3, 8, 9, 27, 3, (1, 0)),
    (1, 4, 5, 6, 19, 3, (0, 2)),
    (1, 3, 6, 9, 26, 3, 1, (2, 1)),
]

DTYPES = [np.float32, np.float64]


def _ids(case):
    return "x".join(str(v) for v in case)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_direct_shapes_match_reference(twin, case, dtype, assert_close, rng):
    n, c, k, h, w, kernel, padding, *stride = case
    stride = stride[0] if stride else 1
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((k, c, kh, kw)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    y = twin.to_numpy(F.conv2d(twin.to_twin(x), twin.to_twin(wt), twin.to_twin(b),
                               stride=stride, padding=padding))
    want = R.conv2d(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64),
                    stride=stride, padding=padding)
    assert_close(y, want.astype(dtype), dtype)
    assert_close(twin.to_numpy(F.conv2d(twin.to_twin(x), twin.to_twin(wt), None,
                                        stride=stride, padding=padding)),
                 (want - b.astype(np.float64)[:, None, None]).astype(dtype), dtype)


# Layers whose weight gradient alone takes the direct kernel (up to 32 input channels, rows
# of at least 32 outputs): row tails, output channels not a multiple of 4, strides, 1xk.
WIDE_GW_CASES = [
    (2, 16, 9, 5, 37, 3, 1),
    (1, 20, 5, 6, 70, 3, 1, 2),
    (1, 8, 6, 5, 40, 5, 2),
    (1, 32, 4, 4, 33, (1, 3), (0, 1)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES + WIDE_GW_CASES, ids=_ids)
def test_direct_shapes_gradients_match_reference(twin, case, dtype, rng):
    """The same layers' gradients (the weight gradient has a direct kernel of its own on
    the compiled twin, with masked loads for the last columns of a row; the input gradient
    of 3 or 4 channels is the direct forward of the flipped kernel) against the naive loops
    in float64: within 1e-5 (float32) or 1e-10 (float64) of the largest magnitude of each."""
    n, c, k, h, w, kernel, padding, *stride = case
    stride = stride[0] if stride else 1
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((k, c, kh, kw))
    gy = rng.standard_normal(R.conv2d(x, wt, stride=stride, padding=padding).shape)
    want = R.conv2d_backward(gy, x, wt, stride=stride, padding=padding)
    T = lambda a: twin.to_twin(a.astype(dtype))  # noqa: E731
    got = F.conv2d_backward(T(gy), T(x), T(wt), stride=stride, padding=padding)
    bound = 1e-5 if dtype == np.float32 else 1e-10
    for name, a, e in zip(("grad_input", "grad_weight", "grad_bias"), got, want, strict=True):
        a = twin.to_numpy(a)
        assert a.dtype == dtype and a.shape == e.shape
        scale = max(np.abs(e).max(initial=0), 1e-30)      # an empty batch: all zeros
        err = np.abs(a.astype(np.float64) - e).max(initial=0) / scale
        assert err <= bound, f"{name}: normwise error {err:.2e}"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("stride", [1, 2])
def test_direct_wide_image_matches_scipy(twin, stride, dtype, assert_close, rng):
    """(1, 4, 20, 5000), 3x3: a thread's padded rows (256 KiB at most) hold the inputs of
    one output row only, so a work item is one row."""
    signal = pytest.importorskip("scipy.signal")
    x = rng.standard_normal((1, 4, 20, 5000)).astype(dtype)
    wt = rng.standard_normal((5, 4, 3, 3)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    y = twin.to_numpy(F.conv2d(twin.to_twin(x), twin.to_twin(wt), twin.to_twin(b),
                               stride=stride, padding=1))
    xp = np.pad(x[0].astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    want = np.stack([signal.correlate(xp, wt[k].astype(np.float64), mode="valid")[0] + b[k]
                     for k in range(5)])[None, :, ::stride, ::stride]
    assert_close(y, want.astype(dtype), dtype)


def test_compiled_twin_takes_the_direct_kernel_for_these_shapes():
    core = pytest.importorskip("cnnlab._core")
    if not core._DIRECT_AVAILABLE:
        pytest.skip("this CPU or compiler has no AVX2+FMA: the layers stay on im2col")
    for n, c, k, h, w, kernel, padding, *stride in CASES + [(1, 4, 5, 20, 5000, 3, 1, 2)]:
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        spec = _checks.conv2d_spec((n, c, h, w), (k, c, kh, kw), None,
                                   stride[0] if stride else 1, padding, 1, 1)
        for dtype in DTYPES:
            assert core._algorithm((n, c, h, w), k, spec, dtype) == "direct"
            gi = core._grad_input_algorithm((n, c, h, w), k, spec, dtype)
            takes = (not stride or stride[0] == 1) and c >= 3 and k <= 16 and \
                spec.padding[0] < kh and spec.padding[1] < kw and w >= 8
            assert gi == ("direct" if takes else "im2col"), (n, c, k, h, w, kernel, padding)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_direct_weight_gradient_row_tail_adds_nothing_past_the_row(twin, dtype, rng):
    """wo = 9 (full registers of 8 floats or 4 doubles, then 1 column under a mask): an
    infinite input in the last column reaches the weights that read it (tap 2 of the last
    output), as in the naive loops, and no other (an unmasked load would add inf * 0 = NaN
    to taps 0 and 1)."""
    x = rng.standard_normal((1, 3, 5, 11))
    x[:, :, :, -1] = np.inf
    wt = rng.standard_normal((4, 3, 3, 3))
    gy = np.abs(rng.standard_normal((1, 4, 3, 9))) + 0.5         # no inf * 0 in the sum
    with np.errstate(invalid="ignore"):
        want = R.conv2d_backward(gy, x, wt)[1]
    T = lambda a: twin.to_twin(a.astype(dtype))  # noqa: E731
    got = twin.to_numpy(F.conv2d_backward(T(gy), T(x), T(wt))[1]).astype(np.float64)
    assert np.isposinf(want[:, :, :, 2]).all() and np.isfinite(want[:, :, :, :2]).all()
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    np.testing.assert_allclose(got[:, :, :, :2], want[:, :, :, :2], rtol=1e-5, atol=1e-5)
