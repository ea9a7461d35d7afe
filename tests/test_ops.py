"""Every op, forward and backward, on every twin, against two independent oracles:
the naive loops of ``cnnlab.reference`` and PyTorch (``torch.nn.functional`` + autograd,
computed in float64). The cases cover the awkward corners: odd sizes, stride > kernel,
dilation, groups (depthwise too), 'same' with even kernels, 'valid', ceil_mode,
count_include_pad=False, divisor_override, output_padding, unbatched input, batch 0;
then memory layouts (strided, reversed, Fortran, read-only) and NaN/Inf.
"""
from __future__ import annotations

import contextlib
import types

import numpy as np
import pytest

import cnnlab
from cnnlab import _checks
from cnnlab import functional as F
from cnnlab import reference as R

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # pragma: no cover - torch is in the test extra
    torch = None


# --------------------------------------------------------------------------- torch oracle


def _t(a):
    return None if a is None else torch.from_numpy(np.array(a, dtype=np.float64))


def _grads(fn, grad_output, *inputs):
    """Autograd in float64: the gradients of sum(fn(*inputs) * grad_output)."""
    leaves = [None if a is None else _t(a).requires_grad_() for a in inputs]
    out = fn(*leaves)
    out = out[0] if isinstance(out, tuple) else out
    out.backward(_t(grad_output))
    return tuple(None if t is None else t.grad.numpy() for t in leaves)


def _torch_oracle():
    """``torch.nn.functional`` behind cnnlab.functional's signatures (float64, NumPy out)."""
    ns = types.SimpleNamespace()
    ns.conv2d = lambda x, w, b=None, **kw: TF.conv2d(_t(x), _t(w), _t(b), **kw).numpy()
    ns.conv_transpose2d = lambda x, w, b=None, **kw: \
        TF.conv_transpose2d(_t(x), _t(w), _t(b), **kw).numpy()

    def conv2d_backward(g, x, w, **kw):
        bias = np.zeros(w.shape[0])
        return _grads(lambda x, w, b: TF.conv2d(x, w, b, **kw), g, x, w, bias)

    def conv_transpose2d_backward(g, x, w, **kw):
        bias = np.zeros(w.shape[1] * kw.get("groups", 1))
        return _grads(lambda x, w, b: TF.conv_transpose2d(x, w, b, **kw), g, x, w, bias)

    def max_pool2d(x, *args, return_indices=False, **kw):
        y, idx = TF.max_pool2d(_t(x), *args, return_indices=True, **kw)
        return (y.numpy(), idx.numpy()) if return_indices else y.numpy()

    def max_pool2d_backward(g, x, *args, indices=None, **kw):
        return _grads(lambda x: TF.max_pool2d(x, *args, **kw), g, x)[0]

    ns.conv2d_backward = conv2d_backward
    ns.conv_transpose2d_backward = conv_transpose2d_backward
    ns.max_pool2d = max_pool2d
    ns.max_pool2d_backward = max_pool2d_backward
    ns.avg_pool2d = lambda x, *args, **kw: TF.avg_pool2d(_t(x), *args, **kw).numpy()
    ns.avg_pool2d_backward = lambda g, x, *args, **kw: \
        _grads(lambda x: TF.avg_pool2d(x, *args, **kw), g, x)[0]
    return ns


ORACLES = [
    pytest.param("reference", id="vs-reference"),
    pytest.param("torch", id="vs-torch",
                 marks=pytest.mark.skipif(torch is None, reason="torch not installed")),
]


@pytest.fixture(params=ORACLES)
def oracle(request):
    return R if request.param == "reference" else _torch_oracle()


DTYPES = [pytest.param(np.float64, id="f64"), pytest.param(np.float32, id="f32")]


def case(id, *shapes, **kwargs):
    """A test case: operand shapes and keyword arguments of the op."""
    return pytest.param(shapes, kwargs, id=id)


def _bias(rng, shapes, n, dtype):
    """A bias of n values, except for cases without one (every third, by input shape)."""
    return None if sum(shapes[0]) % 3 == 0 else rng.standard_normal(n).astype(dtype)


# --------------------------------------------------------------------------- conv2d

CONV_CASES = [
    # id, input shape, weight shape, keyword arguments
    case("odd-pad1", (2, 3, 7, 5), (4, 3, 3, 3), padding=1),
    case("stride>kernel", (2, 2, 9, 8), (3, 2, 2, 2), stride=3),
    case("stride-pair", (1, 2, 8, 9), (2, 2, 3, 2), stride=(2, 3), padding=(1, 0)),
    case("dilation", (1, 2, 9, 9), (2, 2, 3, 2), dilation=(2, 3), padding=(2, 1)),
    case("groups", (2, 4, 6, 6), (6, 2, 3, 3), groups=2, stride=(2, 1), padding=1),
    case("depthwise", (2, 3, 6, 5), (6, 1, 3, 3), groups=3, padding=1),
    case("same-even", (1, 2, 6, 7), (3, 2, 4, 2), padding="same"),
    case("same-even-dilated", (1, 2, 7, 6), (2, 2, 2, 4), padding="same", dilation=(3, 1)),
    case("valid", (2, 2, 5, 6), (3, 2, 3, 2), padding="valid"),
    case("1x1", (2, 3, 4, 5), (5, 3, 1, 1)),
    case("kernel=input", (1, 2, 4, 4), (3, 2, 4, 4)),
    case("unbatched", (3, 6, 5), (2, 3, 3, 3), padding=1),
    case("batch0", (0, 3, 5, 5), (2, 3, 3, 3), padding=1),
    # windows that tile the input (kernel = stride; more than 4 input channels, which the
    # direct kernel would take): the compiled twin's _patches paths, float32 W_out = 8 on
    # its own GEMM, the input gradient writing each cell from one window
    case("windows-tile", (2, 6, 8, 16), (4, 6, 2, 2), stride=2),
    case("windows-tile-rest", (1, 4, 7, 11), (4, 2, 2, 3), stride=(2, 3), groups=2),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes, kw", CONV_CASES)
def test_conv2d(twin, oracle, assert_close, rng, shapes, kw, dtype):
    x_shape, w_shape = shapes
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = _bias(rng, shapes, w_shape[0], dtype)
    T = twin.to_twin

    y = twin.to_numpy(F.conv2d(T(x), T(w), T(b), **kw))
    assert_close(y, oracle.conv2d(x, w, b, **kw), dtype)

    g = rng.standard_normal(y.shape).astype(dtype)
    got = twin.to_numpy(F.conv2d_backward(T(g), T(x), T(w), **kw))
    for a, e in zip(got, oracle.conv2d_backward(g, x, w, **kw)):
        assert_close(a, e, dtype)


@pytest.mark.parametrize("layout", ["flat, per image", "windowed, one GEMM"])
@pytest.mark.parametrize("shapes, kw", CONV_CASES)
def test_numpy_twin_im2col_layouts(monkeypatch, assert_close, rng, shapes, kw, layout):
    """The NumPy twin picks its layouts by size (the input gradient flat for stride 1,
    windowed otherwise; a GEMM per image on large planes, one for the batch otherwise);
    forced either way, every case agrees with the reference."""
    from cnnlab import _fallback
    flat = layout.startswith("flat")
    monkeypatch.setattr(_fallback, "_FLAT_GRAD_INPUT", np.inf if flat else 0.0)
    monkeypatch.setattr(_fallback, "_IMAGE_PLANE", 0 if flat else np.inf)
    monkeypatch.setattr(_fallback, "_PRODUCTS", 0)
    x_shape, w_shape = shapes
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = _bias(rng, shapes, w_shape[0], np.float64)
    with cnnlab.use_backend("numpy"):
        y = F.conv2d(x, w, b, **kw)
        assert_close(y, R.conv2d(x, w, b, **kw), np.float64)
        g = rng.standard_normal(y.shape)
        got = F.conv2d_backward(g, x, w, **kw)
    for a, e in zip(got, R.conv2d_backward(g, x, w, **kw)):
        assert_close(a, e, np.float64)


def test_conv2d_on_the_numpy_twins_large_planes(twin, assert_close, rng):
    """A 3x3 layer on 44x44 planes (the NumPy twin's forward and weight gradient take a GEMM
    per image, its input gradient the flat layout), also with a wider, dilated padding;
    float64 against the reference."""
    from cnnlab import _fallback
    x = rng.standard_normal((2, 3, 44, 44))
    w = rng.standard_normal((5, 3, 3, 3))
    b = rng.standard_normal(5)
    spec = _checks.conv2d_spec(x.shape, w.shape, b.shape, 1, 1)
    assert _fallback._per_image(spec, rows=w.shape[0])
    assert _fallback._flat_ok(x, spec, _fallback._FLAT_GRAD_INPUT)
    T = twin.to_twin
    for kw in ({"padding": 1}, {"padding": 2, "dilation": 2}):
        y = twin.to_numpy(F.conv2d(T(x), T(w), T(b), **kw))
        assert_close(y, R.conv2d(x, w, b, **kw), np.float64)
        g = rng.standard_normal(y.shape)
        got = twin.to_numpy(F.conv2d_backward(T(g), T(x), T(w), **kw))
        for a, e in zip(got, R.conv2d_backward(g, x, w, **kw)):
            assert_close(a, e, np.float64)


# --------------------------------------------------------------------------- conv_transpose2d

TRANSPOSE_CASES = [
    case("stride2-outpad", (2, 4, 4, 5), (4, 3, 3, 3), stride=2, padding=1, output_padding=1),
    case("groups-dilation", (1, 4, 3, 4), (4, 2, 2, 3), groups=2, dilation=(2, 1),
         stride=(1, 3), output_padding=(1, 2)),
    case("depthwise", (2, 3, 4, 4), (3, 1, 3, 3), groups=3, padding=1),
    case("stride>kernel", (1, 2, 3, 3), (2, 2, 2, 2), stride=3),
    case("pad-asym", (1, 2, 5, 4), (2, 3, 3, 2), padding=(2, 0), stride=(1, 2)),
    case("unbatched", (2, 3, 4), (2, 3, 3, 3), stride=2, output_padding=1),
    case("batch0", (0, 2, 3, 3), (2, 2, 3, 3), stride=2),
    # kernel = stride: each output cell from one input pixel's window (see CONV_CASES)
    case("windows-tile", (2, 8, 3, 8), (8, 6, 2, 2), stride=2),
    case("windows-tile-outpad", (1, 16, 2, 16), (16, 5, 3, 3), stride=3, output_padding=2),
    case("windows-tile-groups", (2, 4, 3, 5), (4, 3, 2, 3), groups=2, stride=(2, 3),
         output_padding=(1, 2)),
    # with a bias, which the compiled twin adds as it writes each cell, on each of its
    # paths: the tile path on its own GEMM (W = 8), the direct kernel (into 3 channels),
    # 1x1 (no columns); Winograd's: test_winograd.py (float32 there has its own bound)
    case("windows-tile-bias", (2, 8, 4, 8), (8, 6, 2, 2), stride=2),
    case("direct-bias", (2, 16, 9, 10), (16, 3, 3, 3), padding=1),
    case("1x1-bias", (2, 5, 4, 5), (5, 3, 1, 1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes, kw", TRANSPOSE_CASES)
def test_conv_transpose2d(twin, oracle, assert_close, rng, shapes, kw, dtype):
    x_shape, w_shape = shapes
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = _bias(rng, shapes, w_shape[1] * kw.get("groups", 1), dtype)
    T = twin.to_twin

    y = twin.to_numpy(F.conv_transpose2d(T(x), T(w), T(b), **kw))
    assert_close(y, oracle.conv_transpose2d(x, w, b, **kw), dtype)

    g = rng.standard_normal(y.shape).astype(dtype)
    got = twin.to_numpy(F.conv_transpose2d_backward(T(g), T(x), T(w), **kw))
    for a, e in zip(got, oracle.conv_transpose2d_backward(g, x, w, **kw)):
        assert_close(a, e, dtype)


def test_conv_transpose2d_bias_cases_reach_their_paths():
    """The compiled twin computes the bias cases above as they say (its input gradient's
    algorithm), so that each path's bias is tested."""
    core = pytest.importorskip("cnnlab._core")
    want = {"direct-bias": "direct" if core._DIRECT_AVAILABLE else "im2col",
            "windows-tile-bias": "im2col", "1x1-bias": "im2col"}
    for param in TRANSPOSE_CASES:
        if param.id not in want:
            continue
        (x_shape, w_shape), kw = param.values
        assert sum(x_shape) % 3, f"{param.id}: _bias gives no bias for this shape"
        groups = kw.get("groups", 1)
        spec = _checks.conv_transpose2d_spec(
            x_shape, w_shape, (w_shape[1] * groups,), kw.get("stride", 1),
            kw.get("padding", 0), kw.get("output_padding", 0), groups, kw.get("dilation", 1))
        conv_x = (x_shape[0], w_shape[1] * groups) + tuple(spec.in_size)
        assert core._grad_input_algorithm(conv_x, w_shape[0], spec) == want[param.id]


# --------------------------------------------------------------------------- pooling

# windows that tile the input exactly (the compiled twin's average pooling writes each cell
# of its backward once; the NumPy twin's max pooling reads a tap-major copy)
TILED_POOL_CASES = [
    case("tiled-k3", (2, 3, 9, 12), kernel_size=3),
    case("tiled-rect", (1, 2, 12, 8), kernel_size=(3, 2)),
]

MAX_POOL_CASES = [
    case("k2", (2, 3, 6, 6), kernel_size=2),
    case("k3-s2-p1-ceil", (1, 2, 7, 8), kernel_size=3, stride=2, padding=1, ceil_mode=True),
    case("ceil-last-window-dropped", (1, 1, 5, 5), kernel_size=2, stride=2, padding=1,
         ceil_mode=True),
    case("stride>kernel", (2, 2, 7, 8), kernel_size=2, stride=3),
    case("dilation", (1, 2, 7, 6), kernel_size=(2, 3), dilation=(2, 1), padding=(1, 1)),
    case("rect-stride", (1, 2, 5, 9), kernel_size=(3, 2), stride=(1, 2)),
    case("stride-empty", (1, 2, 6, 6), kernel_size=3, stride=[]),
    case("unbatched", (3, 6, 5), kernel_size=2, stride=1),
    case("batch0", (0, 2, 4, 4), kernel_size=2),
    # 2x2 windows on odd planes leave the last row and column out: not tiled
    case("k2-odd", (1, 2, 7, 9), kernel_size=2),
    # rows of 17 and 32 windows: the compiled twin's float32 backward writes each cell once
    case("k2-wide", (2, 3, 4, 34), kernel_size=2),
    case("k2-wide-32", (1, 2, 6, 64), kernel_size=2),
] + TILED_POOL_CASES

AVG_POOL_CASES = MAX_POOL_CASES[:4] + [
    case("no-count-pad", (2, 2, 7, 6), kernel_size=3, stride=2, padding=1,
         count_include_pad=False),
    case("ceil-no-count-pad", (1, 2, 6, 7), kernel_size=3, stride=2, padding=1,
         ceil_mode=True, count_include_pad=False),
    case("ceil-window-past-pad", (1, 2, 6, 6), kernel_size=3, stride=2, padding=1,
         ceil_mode=True),
    case("divisor-override", (1, 2, 6, 5), kernel_size=(2, 3), stride=(3, 1), padding=1,
         divisor_override=5),
    case("divisor-negative", (1, 1, 4, 4), kernel_size=2, divisor_override=-3),
] + TILED_POOL_CASES + [
    case("tiled-1x4-divisor", (1, 2, 5, 8), kernel_size=(1, 4), divisor_override=3),
    case("unbatched", (3, 6, 5), kernel_size=2, stride=1),
    case("batch0", (0, 2, 4, 4), kernel_size=2),
]


def _distinct(rng, shape, dtype):
    """Values with no ties (max pooling's gradient is ambiguous on ties)."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) / max(n, 1) - 0.5).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes, kw", MAX_POOL_CASES)
def test_max_pool2d(twin, oracle, assert_close, rng, shapes, kw, dtype):
    x = _distinct(rng, shapes[0], dtype)
    T = twin.to_twin
    y, idx = twin.to_numpy(F.max_pool2d(T(x), return_indices=True, **kw))
    y_exp, idx_exp = oracle.max_pool2d(x, return_indices=True, **kw)
    assert_close(y, y_exp, dtype)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, idx_exp)
    assert_close(twin.to_numpy(F.max_pool2d(T(x), **kw)), y_exp, dtype)

    g = rng.standard_normal(y.shape).astype(dtype)
    expected = oracle.max_pool2d_backward(g, x, **kw)
    assert_close(twin.to_numpy(F.max_pool2d_backward(T(g), T(x), **kw)), expected, dtype)
    with_idx = F.max_pool2d_backward(T(g), T(x), indices=T(idx_exp), **kw)
    assert_close(twin.to_numpy(with_idx), expected, dtype)


@contextlib.contextmanager
def _each_build():
    """The compiled twin's kernels built twice (_pool.h): ``for _ in builds`` runs its body
    on the build for any CPU (``_core._isa(0)``), then on the AVX2 build where this CPU has
    it (level 1; AVX-512 CPUs run it at level 2 too); the level is set back on leaving,
    whatever the body raised."""
    core = pytest.importorskip("cnnlab._core")
    was = core._isa()

    def builds():
        for level in (0, 1):
            assert core._isa(level) == min(level, core._CPU_ISA)
            yield level

    try:
        yield builds()
    finally:
        core._isa(was)
    assert core._isa() == was


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_rows_built_for_any_cpu(rng, dtype):
    """The compiled twin's 2x2 stride-2 max rows are built twice (_pool.h): for AVX2, which
    this CPU may run, and for any CPU. Each gives the naive loops' maxima and indices, bit
    for bit, on rows of 1 to 26 windows (a vector's body and its tail), with ties, NaN and
    +-inf, with border windows beside them (padding, ceil_mode), and on planes the windows
    tile (even sides: a plane at a time)."""
    kws = [dict(kernel_size=2), dict(kernel_size=2, padding=1),
           dict(kernel_size=2, ceil_mode=True)]
    with _each_build() as builds:
        for _ in builds:
            for h, w in [(h, w) for h in (5, 6) for w in range(2, 54, 3)]:
                x = rng.integers(0, 3, (2, 2, h, w)).astype(dtype)
                x[rng.random(x.shape) < 0.05] = np.nan
                x[rng.random(x.shape) < 0.05] = np.inf
                x[rng.random(x.shape) < 0.05] = -np.inf
                for kw in kws:
                    with cnnlab.use_backend("cython"):
                        y, idx = F.max_pool2d(x, return_indices=True, **kw)
                    y_exp, idx_exp = R.max_pool2d(x, return_indices=True, **kw)
                    np.testing.assert_array_equal(y, y_exp)
                    np.testing.assert_array_equal(idx, idx_exp)


def test_max_pool2d_backward_rows_built_for_any_cpu(rng):
    """The compiled twin's float32 backward of 2x2 stride-2 windows that tile the plane, on
    rows of 16 windows or more, writes each cell once (_pool.h), built for AVX2 and for any
    CPU. Each build gives, bit for bit, the naive loops' indices' gradient: each gradient
    added into zeros at its index (as torch; NumPy's add.at here), on rows of 16 to 29
    windows (a vector's body and tail), with ties, NaN and +-inf in the input and NaN, +inf
    and -0.0 in the gradient, from max_pool2d's indices and given explicitly."""
    with _each_build() as builds:
        for _ in builds:
            for w in range(32, 60, 2):
                x = rng.integers(0, 3, (2, 3, 6, w)).astype(np.float32)
                for v in (np.nan, np.inf, -np.inf):
                    x[rng.random(x.shape) < 0.05] = v
                _, idx = R.max_pool2d(x, 2, return_indices=True)
                # calls in turn with other gradients: a cell left unwritten would keep the
                # last call's value (NumPy hands the freed buffer back)
                for _ in range(2):
                    g = rng.standard_normal((2, 3, 3, w // 2)).astype(np.float32)
                    for v in (np.nan, np.inf, -0.0):
                        g[rng.random(g.shape) < 0.05] = v
                    expected = np.zeros((6, 6 * w), np.float32)
                    np.add.at(expected, (np.arange(6)[:, None], idx.reshape(6, -1)),
                              g.reshape(6, -1))
                    expected = expected.reshape(x.shape)
                    with cnnlab.use_backend("cython"):
                        for got in (F.max_pool2d_backward(g, x, 2),
                                    F.max_pool2d_backward(g, x, 2, indices=idx)):
                            np.testing.assert_array_equal(got, expected)
                            assert not np.signbit(got[got == 0]).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool2d_tiled_planes_built_for_any_cpu(rng, dtype):
    """The compiled twin's 2x2 stride-2 average pooling of planes its windows tile runs a
    plane at a time in C (_pool.h), built for AVX2, which this CPU may run, and for any
    CPU. Each build gives the naive loops' means and gradients bit for bit on planes of 1
    to 27 windows a row (a vector's body and tail), on integers (sums exact in any order),
    with the window's size and with divisors 2 and 3, and +0.0 for a -0.0 gradient."""
    with _each_build() as builds:
        for _ in builds:
            for w in range(2, 56, 2):
                x = rng.integers(-8, 9, (2, 3, 6, w)).astype(dtype)
                g = rng.integers(-8, 9, (2, 3, 3, w // 2)).astype(dtype)
                g[rng.random(g.shape) < 0.1] = -0.0
                for kw in (dict(), dict(divisor_override=2), dict(divisor_override=3)):
                    with cnnlab.use_backend("cython"):
                        y = F.avg_pool2d(x, 2, **kw)
                        gx = F.avg_pool2d_backward(g, x, 2, **kw)
                    np.testing.assert_array_equal(y, R.avg_pool2d(x, 2, **kw))
                    np.testing.assert_array_equal(gx, R.avg_pool2d_backward(g, x, 2, **kw))
                    assert not np.signbit(gx[gx == 0]).any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [12, 34, 64], ids=["6-windows", "17-windows", "32-windows"])
def test_max_pool2d_backward_indices_outside_their_windows(twin, assert_close, rng, width,
                                                          dtype):
    """Indices need not name a tap of their own window: as in torch, each gradient is added
    at its index, anywhere in its plane, and two may meet in one cell (the compiled twin's
    write-once rows must notice and fall back to adding)."""
    x = rng.standard_normal((2, 3, 4, width)).astype(dtype)
    _, idx = R.max_pool2d(x, 2, return_indices=True)
    idx = idx.copy()
    idx[0, 1, 1, 3] = 0                                   # another window's cell
    idx[1, 2, 0, 0] = idx[1, 2, 0, 1]                     # two gradients into one cell
    idx[1, 0, 1, -1] = 4 * width - 1                      # the plane's last cell
    g = rng.standard_normal(idx.shape).astype(dtype)
    expected = np.zeros((6, 4 * width))
    np.add.at(expected, (np.arange(6)[:, None], idx.reshape(6, -1)),
              g.reshape(6, -1).astype(np.float64))
    T = twin.to_twin
    got = twin.to_numpy(F.max_pool2d_backward(T(g), T(x), 2, indices=T(idx)))
    assert_close(got, expected.reshape(x.shape).astype(dtype), dtype)


@pytest.mark.parametrize("width", [8, 40], ids=["4-windows", "20-windows"])
def test_max_pool2d_backward_of_negative_zero_is_positive_zero(twin, width):
    """As average pooling's: a sum into zeros, -0.0 in, +0.0 out, on every twin (the
    compiled twin's float32 write-once rows add 0 to match)."""
    x = np.arange(2 * 4 * width, dtype=np.float32).reshape(1, 2, 4, width)
    g = np.full((1, 2, 2, width // 2), -0.0, np.float32)
    got = twin.to_numpy(F.max_pool2d_backward(twin.to_twin(g), twin.to_twin(x), 2))
    assert (got == 0).all() and not np.signbit(got).any()


@pytest.mark.parametrize("kw", [dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 1)),
                                dict(kernel_size=2)], ids=["padded", "tiled"])
def test_max_pool2d_ties_go_to_first_maximum(twin, oracle, assert_close, kw):
    """Constant windows: the first position (row-major) wins, as in torch."""
    x = np.ones((1, 1, 4, 6))
    x[0, 0, 2:, 3:] = 2.0
    x[0, 0, 3, 5] = 3.0                       # a window whose maximum is its last cell
    T = twin.to_twin
    y, idx = twin.to_numpy(F.max_pool2d(T(x), return_indices=True, **kw))
    np.testing.assert_array_equal(idx, oracle.max_pool2d(x, return_indices=True, **kw)[1])
    g = np.arange(1.0, 1 + y.size).reshape(y.shape)
    assert_close(twin.to_numpy(F.max_pool2d_backward(T(g), T(x), **kw)),
                 oracle.max_pool2d_backward(g, x, **kw))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes, kw", AVG_POOL_CASES)
def test_avg_pool2d(twin, oracle, assert_close, rng, shapes, kw, dtype):
    x = rng.standard_normal(shapes[0]).astype(dtype)
    T = twin.to_twin
    y = twin.to_numpy(F.avg_pool2d(T(x), **kw))
    assert_close(y, oracle.avg_pool2d(x, **kw), dtype)
    g = rng.standard_normal(y.shape).astype(dtype)
    assert_close(twin.to_numpy(F.avg_pool2d_backward(T(g), T(x), **kw)),
                 oracle.avg_pool2d_backward(g, x, **kw), dtype)


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)],
                         ids=["tiled", "overlapping"])
def test_avg_pool2d_backward_of_negative_zero_is_positive_zero(twin, kw):
    """A gradient is a sum into zeros, in torch and in the naive loops: -0.0 in, +0.0 out
    (the compiled twin writes tiled windows' cells once, and adds 0 to match)."""
    x = np.zeros((1, 2, 6, 6))
    g = np.full(R.avg_pool2d(x, **kw).shape, -0.0)
    got = twin.to_numpy(F.avg_pool2d_backward(twin.to_twin(g), twin.to_twin(x), **kw))
    assert (got == 0).all() and not np.signbit(got).any()
    assert not np.signbit(R.avg_pool2d_backward(g, x, **kw)).any()


# --------------------------------------------------------------------------- memory layouts


def _layout(a, kind):
    """The same values as ``a`` in another memory layout (a view where possible)."""
    if kind == "strided":           # every other row/column of a bigger buffer
        big = np.full(a.shape[:-2] + (2 * a.shape[-2], 2 * a.shape[-1]), np.nan, a.dtype)
        big[..., ::2, ::2] = a
        out = big[..., ::2, ::2]
    elif kind == "reversed":        # negative strides
        out = np.ascontiguousarray(a[..., ::-1, ::-1])[..., ::-1, ::-1]
    elif kind == "fortran":
        out = np.asfortranarray(a)
    elif kind == "readonly":
        out = a.copy()
        out.flags.writeable = False
    else:
        raise AssertionError(kind)
    np.testing.assert_array_equal(out, a)
    return out


LAYOUTS = ["strided", "reversed", "fortran", "readonly"]


def _all_ops(api, x, w, wt, g_conv, g_tconv, g_max, g_avg):
    """Every op of ``api`` (cnnlab.functional or cnnlab.reference) on these operands."""
    return [api.conv2d(x, w, None, padding=1, groups=2),
            *api.conv2d_backward(g_conv, x, w, padding=1, groups=2),
            api.conv_transpose2d(x, wt, None, stride=2, groups=2),
            *api.conv_transpose2d_backward(g_tconv, x, wt, stride=2, groups=2),
            *api.max_pool2d(x, 2, return_indices=True),
            api.max_pool2d_backward(g_max, x, 2),
            api.avg_pool2d(x, 2, padding=1, count_include_pad=False),
            api.avg_pool2d_backward(g_avg, x, 2, padding=1, count_include_pad=False)]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts(twin, assert_close, rng, layout):
    """Strided views, negative strides, Fortran order and read-only arrays work, and the
    operands are left untouched."""
    ops = [_distinct(rng, (2, 4, 6, 6), np.float64),      # x
           rng.standard_normal((6, 2, 3, 3)),              # conv weight, groups=2
           rng.standard_normal((4, 2, 2, 2)),              # transposed conv weight
           rng.standard_normal((2, 6, 6, 6)),              # grad of conv2d
           rng.standard_normal((2, 4, 12, 12)),            # grad of conv_transpose2d
           rng.standard_normal((2, 4, 3, 3)),              # grad of max_pool2d
           rng.standard_normal((2, 4, 4, 4))]              # grad of avg_pool2d
    expected = _all_ops(R, *ops)
    moved = [_layout(a, layout) for a in ops]
    got = twin.to_numpy(tuple(_all_ops(F, *[twin.to_twin(a) for a in moved])))
    assert len(got) == len(expected)
    for a, e in zip(got, expected):
        if e.dtype == np.int64:
            np.testing.assert_array_equal(a, e)
        else:
            assert_close(a, e)
    for a, original in zip(moved, ops):
        np.testing.assert_array_equal(a, original)


# --------------------------------------------------------------------------- NaN and Inf


def test_max_pool2d_nan_and_inf(twin, oracle, assert_close):
    """A NaN wins its window (the last NaN if several); -inf windows report their first
    position; +inf is an ordinary maximum."""
    x = np.arange(48, dtype=np.float64).reshape(1, 3, 4, 4) % 7
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 1, 0] = np.nan                    # two NaNs in one window: the last wins
    x[0, 1, :2, :2] = -np.inf                 # a window of -inf only
    x[0, 2, 3, 3] = np.inf
    T = twin.to_twin
    kw = dict(kernel_size=2, stride=2)
    y, idx = twin.to_numpy(F.max_pool2d(T(x), return_indices=True, **kw))
    y_exp, idx_exp = oracle.max_pool2d(x, return_indices=True, **kw)
    assert_close(y, y_exp)
    np.testing.assert_array_equal(idx, idx_exp)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 4
    g = np.arange(1.0, 1 + y.size).reshape(y.shape)
    assert_close(twin.to_numpy(F.max_pool2d_backward(T(g), T(x), **kw)),
                 oracle.max_pool2d_backward(g, x, **kw))


def test_nan_propagates_through_conv_and_avg_pool(twin, oracle):
    x = np.ones((1, 2, 6, 6))
    x[0, 0, 2, 3] = np.nan
    x[0, 1, 5, 0] = np.inf
    w = np.ones((2, 2, 3, 3))
    T = twin.to_twin
    for got, exp in [(F.conv2d(T(x), T(w), padding=1), oracle.conv2d(x, w, padding=1)),
                     (F.avg_pool2d(T(x), 2), oracle.avg_pool2d(x, 2))]:
        got = twin.to_numpy(got)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(exp))
        np.testing.assert_array_equal(np.isposinf(got), np.isposinf(exp))


# --------------------------------------------------------------------------- output sizes


@pytest.mark.skipif(torch is None, reason="torch not installed")
@pytest.mark.parametrize("size, k, s, p, d", [(28, 3, 1, 1, 1), (7, 2, 3, 0, 1),
                                              (9, (3, 2), (2, 1), (1, 0), (2, 3))])
def test_output_shape_helpers_match_torch(size, k, s, p, d):
    x = torch.zeros(1, 1, size, size)
    w = torch.zeros((1, 1) + ((k, k) if isinstance(k, int) else k))
    assert cnnlab.conv2d_output_shape(size, k, s, p, d) == \
        tuple(TF.conv2d(x, w, stride=s, padding=p, dilation=d).shape[2:])
    assert cnnlab.pool2d_output_shape(size, k, s, p, d, True) == \
        tuple(TF.max_pool2d(x, k, s, p, d, ceil_mode=True).shape[2:])
    assert cnnlab.conv_transpose2d_output_shape(size, k, s, p, 0, d) == \
        tuple(TF.conv_transpose2d(x, w, stride=s, padding=p, dilation=d).shape[2:])


# --------------------------------------------------------------------------- relu


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0,), (7,), (3, 5), (2, 3, 4, 5), (2, 3, 1, 70000),
                                   (1, 2, 3, 4, 5)])
def test_relu_and_its_backward_against_torch(twin, dtype, shape, rng):
    """Any shape (one of them spans several of the compiled twin's thread chunks); the
    gradient of torch.relu from autograd."""
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    T = twin.to_twin
    y = twin.to_numpy(F.relu(T(x)))
    want_y, want_gx = _relu_oracle(x, g)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_array_equal(y, want_y)
    gx = twin.to_numpy(F.relu_backward(T(g), T(y)))
    assert gx.dtype == dtype
    np.testing.assert_array_equal(gx, want_gx)


def _relu_oracle(x, g):
    """torch.relu and its autograd gradient; without torch, their definitions (torch's
    clamp_min keeps NaN, threshold_backward is 0 where the result is <= 0)."""
    if torch is None:
        y = np.where(x < 0, np.zeros((), x.dtype), x)
        return y, np.where(y <= 0, np.zeros((), g.dtype), g)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    yt = torch.relu(xt)
    yt.backward(torch.from_numpy(g))
    return yt.detach().numpy(), xt.grad.numpy()


def test_relu_nan_inf_and_signed_zero_as_torch(twin):
    """The forward keeps NaN and +-inf; the backward is 0 where the output is <= 0, even for
    an infinite or NaN gradient, and passes the gradient where the output is NaN
    (torch's threshold_backward)."""
    x = np.array([-1.0, 0.0, -0.0, 2.0, np.nan, np.inf, -np.inf])
    g = np.array([np.inf, 1.0, np.nan, 3.0, 4.0, -np.inf, np.nan])
    T = twin.to_twin
    y = twin.to_numpy(F.relu(T(x)))
    np.testing.assert_array_equal(y, [0, 0, 0, 2, np.nan, np.inf, 0])
    gx = twin.to_numpy(F.relu_backward(T(g), T(y)))
    np.testing.assert_array_equal(gx, [0, 0, 0, 3, 4, -np.inf, 0])
    if torch is not None:
        expected = torch.relu(torch.from_numpy(x)).numpy()
        np.testing.assert_array_equal(y, expected)
        gx_t = torch.ops.aten.threshold_backward(torch.from_numpy(g),
                                                 torch.from_numpy(expected), 0).numpy()
        np.testing.assert_array_equal(gx, gx_t)


def test_relu_layouts_and_errors(twin):
    """Strided and read-only inputs give the same values and leave the input alone; a
    mismatched gradient and an integer input are refused with torch-like messages."""
    x = np.linspace(-3, 3, 60).reshape(6, 10)
    ro = x.copy()
    ro.flags.writeable = False
    T = twin.to_twin
    for a in (x[:, ::2], x.T, ro):
        before = np.array(a)
        np.testing.assert_array_equal(twin.to_numpy(F.relu(T(a))), np.maximum(before, 0))
        np.testing.assert_array_equal(a, before)
    with pytest.raises(cnnlab.ArgumentError, match="expected grad_output of size"):
        F.relu_backward(T(np.ones((6, 9))), T(x))
    with pytest.raises(cnnlab.DtypeError, match="float32 or float64"):
        F.relu(T(np.arange(5)))
