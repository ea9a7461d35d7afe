"""Convolutions in the shapes the compiled twin computes with Winograd F(4x4, 3x3): 3x3,
stride 1, no dilation, one group, at least 8 channels on both sides (forward, and input
gradient as the flipped-kernel convolution; the weight gradient stays on im2col so that its
exact zeros stay zero, tested below).

Every twin runs them, so the twins keep agreeing: float64 within 1e-10 of the naive loops
(``cnnlab.reference``) and of torch's float64 autograd. Float32 Winograd rounds more than a
direct sum: its results are held to a normwise bound against float64,
``max|y32 - y64| <= 1e-5 * max|y64|`` (measured: up to ~4e-6 on 128-channel layers, against
~4e-7 for im2col).
"""
from __future__ import annotations

import numpy as np
import pytest

import cnnlab
from cnnlab import _checks
from cnnlab import functional as F
from cnnlab import reference as R

torch = pytest.importorskip("torch")

# (N, C_in, C_out, H, W, padding): partial tiles (H, W not multiples of 4), 'valid' and
# wide padding (the input gradient's convolution then has padding 2 - p <= 0), 'same',
# and images smaller than one 6x6 patch.
CASES = [
    (2, 8, 8, 9, 7, 1),
    (1, 12, 9, 13, 10, 0),
    (3, 9, 10, 8, 8, "same"),
    (2, 8, 11, 5, 6, 2),
    (1, 8, 8, 4, 4, 3),
    (2, 10, 8, 11, 4, 1),
]


def _ids(case):
    return "x".join(str(v) for v in case)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_winograd_shapes_match_reference_float64(twin, case, assert_close, rng):
    n, c, k, h, w, padding = case
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((k, c, 3, 3))
    b = rng.standard_normal(k)
    y = twin.to_numpy(F.conv2d(twin.to_twin(x), twin.to_twin(wt), twin.to_twin(b),
                               padding=padding))
    assert_close(y, R.conv2d(x, wt, b, padding=padding))
    gy = rng.standard_normal(y.shape)
    got = F.conv2d_backward(twin.to_twin(gy), twin.to_twin(x), twin.to_twin(wt),
                            padding=padding)
    want = R.conv2d_backward(gy, x, wt, padding=padding)
    for a, e in zip(got, want, strict=True):
        assert_close(twin.to_numpy(a), e)


@pytest.mark.parametrize("case", CASES + [(3, 8, 13, 21, 18, 1), (1, 40, 9, 7, 30, 1),
                                  (2, 130, 10, 6, 6, 1)], ids=_ids)
def test_winograd_shapes_float32_normwise_bound(twin, case, rng):
    """The same shapes in float32 (the compiled twin's own GEMM kernel on AVX2 CPUs: output
    channels not a multiple of its 4-row blocks, tile counts not a multiple of its 8-wide
    columns; BLAS past 128 input channels), against the naive loops in float64: within
    1e-5 of the largest magnitude, as below."""
    n, c, k, h, w, padding = case
    x, wt, b = (rng.standard_normal(s) for s in ((n, c, h, w), (k, c, 3, 3), (k,)))
    y64 = R.conv2d(x, wt, b, padding=padding)
    gy = rng.standard_normal(y64.shape)
    want = (y64,) + R.conv2d_backward(gy, x, wt, padding=padding)[:2]
    T = lambda a: twin.to_twin(a.astype(np.float32))  # noqa: E731
    got = (F.conv2d(T(x), T(wt), T(b), padding=padding),) + F.conv2d_backward(
        T(gy), T(x), T(wt), padding=padding)[:2]
    for name, a, e in zip(("y", "grad_input", "grad_weight"), got, want, strict=True):
        a = twin.to_numpy(a)
        assert a.dtype == np.float32
        err = np.abs(a.astype(np.float64) - e).max() / np.abs(e).max()
        assert err <= 1e-5, f"{name}: normwise error {err:.2e}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_conv_transpose2d_with_bias_on_winograd(twin, dtype, rng):
    """A 3x3 stride-1 transposed convolution with 8 and 9 channels is the compiled twin's
    Winograd input gradient, which adds the bias in its output transform: against the
    naive loops in float64, 1e-10 float64, normwise 1e-5 float32."""
    x, wt, b = (rng.standard_normal(s) for s in ((2, 8, 5, 7), (8, 9, 3, 3), (9,)))
    want = R.conv_transpose2d(x, wt, b, padding=1)
    T = lambda a: twin.to_twin(a.astype(dtype))  # noqa: E731
    got = twin.to_numpy(F.conv_transpose2d(T(x), T(wt), T(b), padding=1))
    assert got.dtype == dtype
    err = np.abs(got.astype(np.float64) - want).max() / np.abs(want).max()
    assert err <= (1e-10 if dtype == np.float64 else 1e-5), err
    if "cython" in cnnlab.backends():
        from cnnlab import _core
        spec = _checks.conv_transpose2d_spec(x.shape, wt.shape, b.shape, 1, 1)
        assert _core._grad_input_algorithm((2, 9, 5, 7), 8, spec) == "winograd"


def test_own_gemm_every_column_tail(twin, rng):
    """The compiled twin's float32 products on its own GEMM kernel (_direct.h) take columns
    in registers of 8 (AVX2) or 16 (AVX-512, the last under a mask) in blocks of 24 or 48:
    Winograd blocks of 1 to 50 tiles (one row of 4x4 tiles, 9 output channels: a last
    block of 1 row of 4) and windows that tile the input (kernel = stride 2, W_out = 8,
    1 to 13 rows of 8 columns) agree with the naive loops in float64, normwise 1e-5."""
    def check(got, want):
        got = twin.to_numpy(got)
        assert got.dtype == np.float32
        err = np.abs(got.astype(np.float64) - want).max() / np.abs(want).max()
        assert err <= 1e-5, err

    T = lambda a: twin.to_twin(a.astype(np.float32))  # noqa: E731
    for tiles in range(1, 51):
        x, wt = rng.standard_normal((1, 8, 4, 4 * tiles)), rng.standard_normal((9, 8, 3, 3))
        check(F.conv2d(T(x), T(wt), padding=1), R.conv2d(x, wt, padding=1))
    for rows in range(1, 14):
        x, wt = rng.standard_normal((2, 8, 2 * rows, 16)), rng.standard_normal((9, 8, 2, 2))
        check(F.conv2d(T(x), T(wt), stride=2), R.conv2d(x, wt, stride=2))
        gy = rng.standard_normal((2, 9, rows, 8))
        check(F.conv2d_backward(T(gy), T(x), T(wt), stride=2)[0],
              R.conv2d_backward(gy, x, wt, stride=2)[0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_winograd_transforms_built_for_any_cpu(dtype, rng):
    """The compiled twin's tile transforms are built three times (_wino.h): for AVX-512F
    and for AVX2+FMA, which this CPU may run (the twin fixture's cython and cython-avx2),
    and for any CPU. The last, switched on here, meets the same bounds on the cases above:
    1e-10 float64, 1e-5 normwise float32, against the naive loops."""
    core = pytest.importorskip("cnnlab._core")
    was = core._isa()
    core._isa(0)
    try:
        assert not core._isa()
        with cnnlab.use_backend("cython"):
            for n, c, k, h, w, padding in CASES:
                x, wt, b = (rng.standard_normal(s) for s in ((n, c, h, w), (k, c, 3, 3), (k,)))
                y64 = R.conv2d(x, wt, b, padding=padding)
                gy = rng.standard_normal(y64.shape)
                want = (y64, R.conv2d_backward(gy, x, wt, padding=padding)[0])
                x, wt, b, gy = (a.astype(dtype) for a in (x, wt, b, gy))
                got = (F.conv2d(x, wt, b, padding=padding),
                       F.conv2d_backward(gy, x, wt, padding=padding)[0])
                for a, e in zip(got, want, strict=True):
                    err = np.abs(a.astype(np.float64) - e).max() / np.abs(e).max()
                    assert err <= (1e-10 if dtype == np.float64 else 1e-5), err
    finally:
        core._isa(was)
    assert core._isa() == was


def test_compiled_twin_takes_winograd_for_these_shapes():
    """The cases above do reach the Winograd kernels; few channels or groups do not."""
    core = pytest.importorskip("cnnlab._core")

    def algorithm(n, c, k, h, w, padding, groups=1):
        spec = _checks.conv2d_spec((n, c, h, w), (k, c // groups, 3, 3), None, 1, padding,
                                   1, groups)
        return core._algorithm((n, c, h, w), k, spec, np.float64)
    for case in CASES:
        assert algorithm(*case) == "winograd", case
    assert algorithm(2, 3, 16, 16, 16, 1) != "winograd"
    assert algorithm(2, 16, 16, 16, 16, 1, groups=2) == "im2col"


def _layer(shape, rng):
    """x, weight, bias, grad_output of a padding-1 layer (N, C_in, C_out, size) in float64,
    and torch's float64 results (y, grad_input, grad_weight)."""
    n, c, k, s = shape
    x = rng.standard_normal((n, c, s, s))
    wt = rng.standard_normal((k, c, 3, 3)) / np.sqrt(9 * c)
    b = rng.standard_normal(k)
    gy = rng.standard_normal((n, k, s, s))
    X = torch.from_numpy(x).requires_grad_()
    W = torch.from_numpy(wt).requires_grad_()
    y = torch.nn.functional.conv2d(X, W, torch.from_numpy(b), padding=1)
    y.backward(torch.from_numpy(gy))
    return (x, wt, b, gy), (y.detach().numpy(), X.grad.numpy(), W.grad.numpy())


def _ours(x, wt, b, gy):
    """y, grad_input, grad_weight on the current twin."""
    return (F.conv2d(x, wt, b, padding=1),) + F.conv2d_backward(gy, x, wt, padding=1)[:2]


@pytest.mark.parametrize("shape", [(4, 16, 32, 32), (2, 64, 64, 20), (2, 128, 96, 14)],
                         ids=_ids)
def test_winograd_layers_float64_match_torch(twin, shape, rng):
    operands, want = _layer(shape, rng)
    got = _ours(*(twin.to_twin(a) for a in operands))
    for a, e in zip(got, want, strict=True):
        np.testing.assert_allclose(twin.to_numpy(a), e, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", [(4, 16, 32, 32), (2, 64, 64, 20), (2, 128, 96, 14),
                                   (2, 256, 64, 9)], ids=_ids)
def test_winograd_float32_normwise_bound(twin, shape, rng):
    """float32 results within 1e-5 of float64's largest magnitude, per result."""
    operands, want = _layer(shape, rng)
    got = _ours(*(twin.to_twin(a.astype(np.float32)) for a in operands))
    for name, a, e in zip(("y", "grad_input", "grad_weight"), got, want, strict=True):
        a = twin.to_numpy(a)
        assert a.dtype == np.float32
        err = np.abs(a.astype(np.float64) - e).max() / np.abs(e).max()
        assert err <= 1e-5, f"{name}: normwise error {err:.2e}"


@pytest.mark.parametrize("channels, size", [(8, 16), (3, 16), (16, 32)],
                         ids=["winograd-layer", "direct-layer", "wide-layer"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weight_gradient_keeps_exact_zeros(twin, dtype, channels, size, rng):
    """A weight whose every product x * grad_output is zero gets exactly 0 on every twin, as
    in torch: input channel 0 is nonzero only in row 0, output channel 0's gradient only in
    row 3, further apart than the 3x3 kernel reaches but inside one 4x4 Winograd tile. (Its
    transforms would give rounding noise of ~1e-10 there, which Adam, dividing by the
    gradient's own size, turns into steps of the full learning rate.) With 3 input channels,
    or 16 and rows of 32, the compiled twin's float32 weight gradient is the direct
    kernel's (16 and rows of 32 only on its AVX2 level: cython-avx2 where the CPU runs
    AVX-512); with 8 channels of 16, im2col's."""
    x = rng.standard_normal((2, channels, size, size)).astype(dtype)
    x[:, 0, 1:] = 0
    g = rng.standard_normal((2, 8, size, size)).astype(dtype)
    g[:, 0, :3] = 0
    g[:, 0, 4:] = 0
    w = rng.standard_normal((8, channels, 3, 3)).astype(dtype)
    gw = twin.to_numpy(F.conv2d_backward(twin.to_twin(g), twin.to_twin(x), twin.to_twin(w),
                                         padding=1)[1])
    X = torch.from_numpy(x)
    W = torch.from_numpy(w).requires_grad_()
    torch.nn.functional.conv2d(X, W, padding=1).backward(torch.from_numpy(g))
    assert np.all(W.grad.numpy()[0, 0] == 0)
    assert np.all(gw[0, 0] == 0), gw[0, 0]
    assert np.abs(gw).max() > 0
