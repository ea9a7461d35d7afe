"""cnnlab.lab against the course's own loop code, its published outputs, PyTorch, SciPy and
cnnlab.reference.

``Loops`` below is the lab as the course writes it (channels last, a Python loop per output
value), with one fix: the course's ``dA_prev[i] = da_prev_pad[pad:-pad, pad:-pad, :]`` is
empty for ``pad == 0``; here the slice is ``[pad:pad + n_H_prev]``. Everything in
``cnnlab.lab`` must agree with it to float64 round-off, on every NumPy backend.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import cnnlab
from cnnlab import ArgumentError, DtypeError, lab
from cnnlab import reference as ref

RTOL, ATOL = 1e-10, 1e-12          # float64 round-off: the loops sum in another order


class Loops:
    """The convolution lab, written as the course writes it."""

    @staticmethod
    def zero_pad(X, pad):
        return np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="constant",
                      constant_values=(0, 0))

    @staticmethod
    def conv_single_step(a_slice_prev, W, b):
        s = a_slice_prev * W
        Z = np.sum(s)
        return Z + float(np.asarray(b).reshape(()))

    @staticmethod
    def conv_forward(A_prev, W, b, hparameters):
        (m, n_H_prev, n_W_prev, n_C_prev) = A_prev.shape
        (f, f, n_C_prev, n_C) = W.shape
        stride, pad = hparameters["stride"], hparameters["pad"]
        n_H = int((n_H_prev - f + 2 * pad) / stride) + 1
        n_W = int((n_W_prev - f + 2 * pad) / stride) + 1
        Z = np.zeros((m, n_H, n_W, n_C))
        A_prev_pad = Loops.zero_pad(A_prev, pad)
        for i in range(m):
            a_prev_pad = A_prev_pad[i]
            for h in range(n_H):
                vert_start = h * stride
                vert_end = vert_start + f
                for w in range(n_W):
                    horiz_start = w * stride
                    horiz_end = horiz_start + f
                    for c in range(n_C):
                        a_slice_prev = a_prev_pad[vert_start:vert_end, horiz_start:horiz_end, :]
                        Z[i, h, w, c] = Loops.conv_single_step(a_slice_prev, W[:, :, :, c],
                                                               b[:, :, :, c])
        return Z, (A_prev, W, b, hparameters)

    @staticmethod
    def conv_backward(dZ, cache):
        (A_prev, W, b, hparameters) = cache
        (m, n_H_prev, n_W_prev, n_C_prev) = A_prev.shape
        (f, f, n_C_prev, n_C) = W.shape
        stride, pad = hparameters["stride"], hparameters["pad"]
        (m, n_H, n_W, n_C) = dZ.shape
        dA_prev, dW, db = np.zeros(A_prev.shape), np.zeros(W.shape), np.zeros(b.shape)
        A_prev_pad = Loops.zero_pad(A_prev, pad)
        dA_prev_pad = Loops.zero_pad(dA_prev, pad)
        for i in range(m):
            a_prev_pad = A_prev_pad[i]
            da_prev_pad = dA_prev_pad[i]
            for h in range(n_H):
                for w in range(n_W):
                    for c in range(n_C):
                        vert_start, horiz_start = stride * h, stride * w
                        vert_end, horiz_end = vert_start + f, horiz_start + f
                        a_slice = a_prev_pad[vert_start:vert_end, horiz_start:horiz_end, :]
                        da_prev_pad[vert_start:vert_end, horiz_start:horiz_end, :] += \
                            W[:, :, :, c] * dZ[i, h, w, c]
                        dW[:, :, :, c] += a_slice * dZ[i, h, w, c]
                        db[:, :, :, c] += dZ[i, h, w, c]
            # the course: da_prev_pad[pad:-pad, pad:-pad, :] -- empty when pad == 0
            dA_prev[i, :, :, :] = da_prev_pad[pad:pad + n_H_prev, pad:pad + n_W_prev, :]
        return dA_prev, dW, db

    @staticmethod
    def pool_forward(A_prev, hparameters, mode="max"):
        (m, n_H_prev, n_W_prev, n_C_prev) = A_prev.shape
        f, stride = hparameters["f"], hparameters["stride"]
        n_H = int(1 + (n_H_prev - f) / stride)
        n_W = int(1 + (n_W_prev - f) / stride)
        A = np.zeros((m, n_H, n_W, n_C_prev))
        for i in range(m):
            for h in range(n_H):
                vert_start = h * stride
                vert_end = vert_start + f
                for w in range(n_W):
                    horiz_start = w * stride
                    horiz_end = horiz_start + f
                    for c in range(n_C_prev):
                        a_prev_slice = A_prev[i, vert_start:vert_end, horiz_start:horiz_end, c]
                        if mode == "max":
                            A[i, h, w, c] = np.max(a_prev_slice)
                        elif mode == "average":
                            A[i, h, w, c] = np.mean(a_prev_slice)
        return A, (A_prev, hparameters)

    @staticmethod
    def create_mask_from_window(x):
        return x == np.max(x)

    @staticmethod
    def distribute_value(dz, shape):
        (n_H, n_W) = shape
        return np.ones(shape) * (dz / (n_H * n_W))

    @staticmethod
    def pool_backward(dA, cache, mode="max"):
        (A_prev, hparameters) = cache
        stride, f = hparameters["stride"], hparameters["f"]
        m, n_H, n_W, n_C = dA.shape
        dA_prev = np.zeros(A_prev.shape)
        for i in range(m):
            a_prev = A_prev[i]
            for h in range(n_H):
                for w in range(n_W):
                    for c in range(n_C):
                        vert_start, horiz_start = h * stride, w * stride
                        vert_end, horiz_end = vert_start + f, horiz_start + f
                        if mode == "max":
                            a_prev_slice = a_prev[vert_start:vert_end, horiz_start:horiz_end, c]
                            mask = Loops.create_mask_from_window(a_prev_slice)
                            dA_prev[i, vert_start:vert_end, horiz_start:horiz_end, c] += \
                                np.multiply(mask, dA[i, h, w, c])
                        elif mode == "average":
                            dA_prev[i, vert_start:vert_end, horiz_start:horiz_end, c] += \
                                Loops.distribute_value(dA[i, h, w, c], (f, f))
        return dA_prev


@pytest.fixture(params=cnnlab.backends())
def backend(request):
    """Each backend NumPy arrays can go to ("cython", "numpy", "torch")."""
    with cnnlab.use_backend(request.param):
        yield request.param


def close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)
    assert np.shape(actual) == np.shape(expected)


# (m, n_H_prev, n_W_prev, n_C_prev, n_C, f, stride, pad)
CONV_CASES = [
    (2, 5, 7, 3, 4, 3, 1, 0),      # pad 0: the course's [pad:-pad] slice would be empty
    (2, 6, 5, 2, 3, 2, 3, 1),      # stride larger than the window: rows never read
    (1, 7, 7, 1, 2, 3, 2, 2),      # odd sizes, pad > f // 2
    (3, 4, 4, 3, 8, 2, 2, 2),
    (2, 5, 5, 3, 2, 5, 1, 0),      # the window is the whole image
    (1, 9, 6, 2, 1, 4, 3, 1),      # even window, leftover rows and columns
]

# (m, n_H_prev, n_W_prev, n_C, f, stride)
POOL_CASES = [
    (2, 6, 7, 3, 3, 1),            # overlapping windows: a tie is shared between windows
    (2, 7, 7, 2, 2, 3),            # stride larger than the window
    (1, 5, 6, 2, 5, 1),            # window as tall as the image
    (2, 5, 5, 3, 3, 2),
    (3, 4, 4, 1, 2, 2),
    (1, 9, 8, 2, 4, 3),
]


# --------------------------------------------------------------------------- the course's outputs


def test_published_values_conv(backend):
    """Expected outputs printed in the course's notebook (np.random.seed(1) examples)."""
    np.random.seed(1)
    x = np.random.randn(4, 4, 3)
    W = np.random.randn(4, 4, 3)
    b = np.random.randn(1, 1, 1)
    assert lab.conv_single_step(x, W, b) == pytest.approx(-6.99908945068, abs=1e-10)

    np.random.seed(1)
    A_prev = np.random.randn(10, 4, 4, 3)
    W = np.random.randn(2, 2, 3, 8)
    b = np.random.randn(1, 1, 1, 8)
    Z, cache = lab.conv_forward(A_prev, W, b, {"pad": 2, "stride": 2})
    assert np.mean(Z) == pytest.approx(0.0489952035289, abs=1e-12)
    close(Z[3, 2, 1], [-0.61490741, -6.7439236, -2.55153897, 1.75698377, 3.56208902,
                       0.53036437, 5.18531798, 8.75898442], rtol=0, atol=1e-8)
    dA, dW, db = lab.conv_backward(Z, cache)
    assert np.mean(dA) == pytest.approx(1.45243777754, abs=1e-10)
    assert np.mean(dW) == pytest.approx(1.72699145831, abs=1e-10)
    assert np.mean(db) == pytest.approx(7.83923256462, abs=1e-10)

    np.random.seed(1)
    A_prev = np.random.randn(2, 5, 7, 4)
    W = np.random.randn(3, 3, 4, 8)
    b = np.random.randn(1, 1, 1, 8)
    Z, cache = lab.conv_forward(A_prev, W, b, {"pad": 1, "stride": 2})
    assert np.mean(Z) == pytest.approx(0.5511276474566768, abs=1e-12)
    close(Z[0, 2, 1], [-2.17796037, 8.07171329, -0.5772704, 3.36286738, 4.48113645,
                       -2.89198428, 10.99288867, 3.03171932], rtol=0, atol=1e-8)


def test_published_values_pool(backend):
    np.random.seed(1)
    A_prev = np.random.randn(2, 4, 4, 3)
    hp = {"stride": 2, "f": 3}
    close(lab.pool_forward(A_prev, hp)[0].ravel(),
          [1.74481176, 0.86540763, 1.13376944, 1.13162939, 1.51981682, 2.18557541],
          rtol=0, atol=1e-8)
    close(lab.pool_forward(A_prev, hp, mode="average")[0].ravel(),
          [0.02105773, -0.20328806, -0.40389855, -0.22154621, 0.51716526, 0.48155844],
          rtol=0, atol=1e-8)

    np.random.seed(1)
    A_prev = np.random.randn(2, 5, 5, 3)
    A, _ = lab.pool_forward(A_prev, {"stride": 1, "f": 3})
    close(A[1, 1], [[1.96710175, 0.84616065, 1.27375593], [1.96710175, 0.84616065, 1.23616403],
                    [1.62765075, 1.12141771, 1.2245077]], rtol=0, atol=1e-8)

    np.random.seed(1)
    A_prev = np.random.randn(5, 5, 3, 2)
    _, cache = lab.pool_forward(A_prev, {"stride": 1, "f": 2})
    dA = np.random.randn(5, 4, 2, 2)
    close(lab.pool_backward(dA, cache, mode="max")[1, 1],
          [[0.0, 0.0], [5.05844394, -1.68282702], [0.0, 0.0]], rtol=0, atol=1e-8)
    close(lab.pool_backward(dA, cache, mode="average")[1, 1],
          [[0.08485462, 0.2787552], [1.26461098, -0.25749373], [1.17975636, -0.53624893]],
          rtol=0, atol=1e-8)


def test_published_values_helpers():
    np.random.seed(1)
    x = np.random.randn(2, 3)
    np.testing.assert_array_equal(lab.create_mask_from_window(x),
                                  [[True, False, False], [False, False, False]])
    np.testing.assert_array_equal(lab.distribute_value(2, (2, 2)), [[0.5, 0.5], [0.5, 0.5]])


# --------------------------------------------------------------------------- the loops


def test_zero_pad():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 3, 3, 2))
    for pad in (0, 1, 2):
        out = lab.zero_pad(X, pad)
        np.testing.assert_array_equal(out, Loops.zero_pad(X, pad))
        assert out.dtype == X.dtype
    out = lab.zero_pad(X, (1, 2))
    assert out.shape == (4, 5, 7, 2)
    np.testing.assert_array_equal(out[:, 1:4, 2:5], X)
    assert not out[:, 0].any() and not out[:, :, :2].any() and not out[:, :, -2:].any()
    with pytest.raises(ArgumentError, match="negative padding is not supported"):
        lab.zero_pad(X, -1)
    with pytest.raises(ArgumentError, match=r"expected X of shape \(m, n_H, n_W, n_C\)"):
        lab.zero_pad(X[0], 1)


def test_conv_single_step():
    rng = np.random.default_rng(1)
    a, W, b = rng.standard_normal((3, 3, 4)), rng.standard_normal((3, 3, 4)), np.array([[[0.5]]])
    z = lab.conv_single_step(a, W, b)
    assert type(z) is float
    assert z == pytest.approx(Loops.conv_single_step(a, W, b), rel=1e-12)
    with pytest.raises(ArgumentError, match="should have the same shape"):
        lab.conv_single_step(a, W[:2], b)


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "m{}_{}x{}_c{}-{}_f{}_s{}_p{}".format(*c))
def test_conv_matches_loops(backend, case):
    m, h, w, c_prev, c, f, stride, pad = case
    rng = np.random.default_rng(sum(case))
    A_prev = rng.standard_normal((m, h, w, c_prev))
    W = rng.standard_normal((f, f, c_prev, c))
    b = rng.standard_normal((1, 1, 1, c))
    hp = {"stride": stride, "pad": pad}
    Z, cache = lab.conv_forward(A_prev, W, b, hp)
    Z_loop, _ = Loops.conv_forward(A_prev, W, b, hp)
    close(Z, Z_loop)
    assert cache[0] is A_prev and cache[1] is W and cache[2] is b and cache[3] is hp

    dZ = rng.standard_normal(Z.shape)
    grads = lab.conv_backward(dZ, cache)
    for got, want, like in zip(grads, Loops.conv_backward(dZ, cache), (A_prev, W, b)):
        close(got, want)
        assert got.shape == like.shape and got.dtype == np.float64


@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "m{}_{}x{}_c{}_f{}_s{}".format(*c))
@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("values", ["distinct", "ties"])
def test_pool_matches_loops(backend, case, mode, values):
    m, h, w, c, f, stride = case
    rng = np.random.default_rng(sum(case))
    if values == "ties":       # three values only: most windows have a tied maximum
        A_prev = rng.integers(0, 3, (m, h, w, c)).astype(np.float64)
    else:
        A_prev = rng.permutation(m * h * w * c).reshape(m, h, w, c) / 7.0
    hp = {"f": f, "stride": stride}
    A, cache = lab.pool_forward(A_prev, hp, mode=mode)
    close(A, Loops.pool_forward(A_prev, hp, mode=mode)[0])
    assert cache[0] is A_prev and cache[1] is hp
    dA = rng.standard_normal(A.shape)
    close(lab.pool_backward(dA, cache, mode=mode), Loops.pool_backward(dA, cache, mode=mode))


def test_max_pool_backward_marks_every_tie(backend):
    """Every cell equal to the window's max gets the gradient (PyTorch: only the first)."""
    A_prev = np.array([[1.0, 5.0, 5.0],
                       [5.0, 2.0, 0.0],
                       [3.0, 5.0, 4.0]])[None, :, :, None]
    _, cache = lab.pool_forward(A_prev, {"f": 2, "stride": 1})
    dA = np.array([[1.0, 10.0], [100.0, 1000.0]])[None, :, :, None]
    # windows: top-left max 5 at (0,1),(1,0); top-right 5 at (0,1),(0,2);
    # bottom-left 5 at (1,0),(2,1); bottom-right 5 at (2,1)
    expected = np.array([[0.0, 11.0, 10.0],
                         [101.0, 0.0, 0.0],
                         [0.0, 1100.0, 0.0]])
    np.testing.assert_array_equal(lab.pool_backward(dA, cache)[0, :, :, 0], expected)


@given(m=st.integers(1, 2), h=st.integers(1, 7), w=st.integers(1, 7), c=st.integers(1, 3),
       f=st.integers(1, 4), stride=st.integers(1, 4), levels=st.integers(1, 4),
       seed=st.integers(0, 2**32 - 1))
def test_max_pool_backward_ties_property(m, h, w, c, f, stride, levels, seed):
    """Random small shapes with few distinct values (so many ties): loops == lab."""
    if f > min(h, w):
        f = min(h, w)
    rng = np.random.default_rng(seed)
    A_prev = rng.integers(0, levels, (m, h, w, c)).astype(np.float64)
    hp = {"f": f, "stride": stride}
    A, cache = lab.pool_forward(A_prev, hp)
    dA = rng.standard_normal(A.shape)
    close(lab.pool_backward(dA, cache), Loops.pool_backward(dA, cache))


@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply")
def test_nan_and_inf_as_the_lab(backend):
    """A NaN makes its window's max NaN and its mask all False; mask * inf is NaN where
    the mask is False, as ``np.multiply(mask, dA)`` gives in the course."""
    A_prev = np.arange(16.0).reshape(1, 4, 4, 1)
    A_prev[0, 0, 0, 0] = np.nan
    hp = {"f": 2, "stride": 2}
    A, cache = lab.pool_forward(A_prev, hp)
    close(A, Loops.pool_forward(A_prev, hp)[0])
    dA = np.array([[1.0, np.inf], [2.0, 3.0]])[None, :, :, None]
    got, want = lab.pool_backward(dA, cache), Loops.pool_backward(dA, cache)
    assert np.isnan(got).sum() == 3 and not got[0, :2, :2].any()
    close(got, want)


def test_helpers_match_loops():
    x = np.array([[1.0, 3.0], [3.0, 2.0]])
    np.testing.assert_array_equal(lab.create_mask_from_window(x), [[False, True], [True, False]])
    np.testing.assert_array_equal(lab.create_mask_from_window(x),
                                  Loops.create_mask_from_window(x))
    for dz, shape in [(3.0, (1, 3)), (-2.0, (2, 2)), (1.0, (3, 2))]:
        got = lab.distribute_value(dz, shape)
        np.testing.assert_array_equal(got, Loops.distribute_value(dz, shape))
        assert got.shape == shape and got.sum() == pytest.approx(dz)


# --------------------------------------------------------------------------- dtypes and errors


def test_dtypes(backend):
    rng = np.random.default_rng(3)
    A32 = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
    W32 = rng.standard_normal((3, 3, 3, 2)).astype(np.float32)
    b32 = rng.standard_normal((1, 1, 1, 2)).astype(np.float32)
    hp = {"stride": 1, "pad": 1}
    Z, cache = lab.conv_forward(A32, W32, b32, hp)
    assert Z.dtype == np.float32
    close(Z, Loops.conv_forward(A32.astype(np.float64), W32.astype(np.float64),
                                b32.astype(np.float64), hp)[0], rtol=1e-5, atol=1e-5)
    assert all(g.dtype == np.float32 for g in lab.conv_backward(Z, cache))
    # integers are cast to float64, as the lab's np.zeros results are
    A_int = rng.integers(-3, 4, (1, 4, 4, 2))
    Z, _ = lab.conv_forward(A_int, W32[:, :, :2], b32, hp)
    assert Z.dtype == np.float64
    P, cache = lab.pool_forward(A_int, {"f": 2, "stride": 2})
    assert P.dtype == np.float64
    close(P, Loops.pool_forward(A_int, {"f": 2, "stride": 2})[0])
    with pytest.raises(DtypeError, match="expected real numbers"):
        lab.pool_forward(A_int + 1j, {"f": 2, "stride": 2})


def test_strided_and_read_only_inputs(backend):
    """Fortran-ordered, strided, reversed and read-only arrays give the same results."""
    rng = np.random.default_rng(9)
    A_prev = rng.standard_normal((3, 6, 5, 2))
    W = rng.standard_normal((3, 3, 2, 4))
    b = rng.standard_normal((1, 1, 1, 4))
    hp = {"stride": 1, "pad": 1}
    A_fortran = np.asfortranarray(A_prev)
    W_frozen = W.copy()
    W_frozen.flags.writeable = False
    Z, cache = lab.conv_forward(A_prev, W, b, hp)
    Z2, cache2 = lab.conv_forward(A_fortran, W_frozen, b, hp)
    close(Z2, Z)
    for got, want in zip(lab.conv_backward(Z, cache2), lab.conv_backward(Z, cache)):
        close(got, want)
    strided = A_fortran[:, ::2]                     # (3, 3, 5, 2), not contiguous
    A, pcache = lab.pool_forward(strided, {"f": 2, "stride": 1})
    close(A, Loops.pool_forward(A_prev[:, ::2], {"f": 2, "stride": 1})[0])
    close(lab.pool_backward(np.ones_like(A), pcache),
          Loops.pool_backward(np.ones_like(A), pcache))
    image = rng.standard_normal((5, 6))
    one = np.ones((1, 1))[::-1, ::-1]               # size-1 axes with negative strides
    close(lab.correlate2d(image.T[::-1], one, "same"), image.T[::-1])


def test_errors():
    rng = np.random.default_rng(4)
    A = rng.standard_normal((1, 4, 4, 3))
    W = rng.standard_normal((2, 2, 3, 5))
    b = np.zeros((1, 1, 1, 5))
    with pytest.raises(ArgumentError, match="hparameters must have the keys"):
        lab.conv_forward(A, W, b, {"stride": 1})
    with pytest.raises(ArgumentError, match=r"expected A_prev of shape \(m, n_H_prev"):
        lab.conv_forward(A[0], W, b, {"stride": 1, "pad": 0})
    with pytest.raises(ArgumentError, match="expects n_C_prev = 3 channels"):
        lab.conv_forward(A[..., :2], W, b, {"stride": 1, "pad": 0})
    with pytest.raises(ArgumentError, match=r"expected b of shape \(1, 1, 1, 5\)"):
        lab.conv_forward(A, W, b[..., :4], {"stride": 1, "pad": 0})
    with pytest.raises(ArgumentError, match="non-positive stride is not supported"):
        lab.conv_forward(A, W, b, {"stride": 0, "pad": 0})
    with pytest.raises(ArgumentError, match="Kernel size can't be greater than actual input"):
        lab.conv_forward(A, rng.standard_normal((5, 5, 3, 5)), b, {"stride": 1, "pad": 0})
    _, cache = lab.conv_forward(A, W, b, {"stride": 1, "pad": 0})
    with pytest.raises(ArgumentError, match=r"expected dZ of size \[1, 3, 3, 5\]"):
        lab.conv_backward(np.zeros((1, 4, 4, 5)), cache)
    with pytest.raises(ArgumentError, match="mode must be 'max' or 'average'"):
        lab.pool_forward(A, {"f": 2, "stride": 2}, mode="min")
    with pytest.raises(ArgumentError, match="hparameters must have the keys"):
        lab.pool_forward(A, {"f": 2})
    with pytest.raises(ArgumentError, match="Output size is too small"):
        lab.pool_forward(A, {"f": 5, "stride": 1})
    _, cache = lab.pool_forward(A, {"f": 2, "stride": 2})
    with pytest.raises(ArgumentError, match=r"expected dA of size \[1, 2, 2, 3\]"):
        lab.pool_backward(np.zeros((1, 2, 2, 2)), cache)
    with pytest.raises(ArgumentError, match="mode must be 'max' or 'average'"):
        lab.pool_backward(np.zeros((1, 2, 2, 3)), cache, mode="mean")


# --------------------------------------------------------------------------- independent oracles


def test_conv_matches_torch_autograd(backend):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    A_prev = rng.standard_normal((2, 7, 6, 3))
    W = rng.standard_normal((3, 3, 3, 4))
    b = rng.standard_normal((1, 1, 1, 4))
    hp = {"stride": 2, "pad": 1}
    Z, cache = lab.conv_forward(A_prev, W, b, hp)
    dZ = rng.standard_normal(Z.shape)
    dA_prev, dW, db = lab.conv_backward(dZ, cache)

    x = torch.tensor(A_prev, requires_grad=True)
    w = torch.tensor(W, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    z = torch.nn.functional.conv2d(x.permute(0, 3, 1, 2), w.permute(3, 2, 0, 1),
                                   bt.reshape(-1), stride=2, padding=1).permute(0, 2, 3, 1)
    z.backward(torch.tensor(dZ))
    close(Z, z.detach().numpy(), rtol=1e-7, atol=1e-10)
    for got, t in ((dA_prev, x), (dW, w), (db, bt)):
        close(got, t.grad.numpy(), rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("mode", ["max", "average"])
def test_pool_matches_torch_autograd(backend, mode):
    """Without ties the lab's rule and PyTorch's agree; with ties only the lab's sum is kept."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    A_prev = rng.permutation(2 * 7 * 8 * 3).reshape(2, 7, 8, 3) / 10.0
    hp = {"f": 3, "stride": 2}
    A, cache = lab.pool_forward(A_prev, hp, mode=mode)
    dA = rng.standard_normal(A.shape)
    x = torch.tensor(A_prev, requires_grad=True)
    pool = torch.nn.functional.max_pool2d if mode == "max" else torch.nn.functional.avg_pool2d
    a = pool(x.permute(0, 3, 1, 2), 3, 2).permute(0, 2, 3, 1)
    a.backward(torch.tensor(dA))
    close(A, a.detach().numpy(), rtol=1e-7, atol=1e-10)
    close(lab.pool_backward(dA, cache, mode=mode), x.grad.numpy(), rtol=1e-7, atol=1e-10)


def test_matches_reference_nchw(backend):
    """cnnlab.reference (NCHW, the torch rule) agrees where the semantics do: convolution,
    average pooling, and max pooling without ties."""
    rng = np.random.default_rng(7)
    A_prev = rng.standard_normal((2, 6, 5, 2))
    W = rng.standard_normal((3, 3, 2, 3))
    b = rng.standard_normal((1, 1, 1, 3))
    x, w = A_prev.transpose(0, 3, 1, 2), W.transpose(3, 2, 0, 1)
    Z, cache = lab.conv_forward(A_prev, W, b, {"stride": 1, "pad": 2})
    close(Z.transpose(0, 3, 1, 2), ref.conv2d(x, w, b.ravel(), stride=1, padding=2))
    dZ = rng.standard_normal(Z.shape)
    gx, gw, gb = ref.conv2d_backward(dZ.transpose(0, 3, 1, 2), x, w, stride=1, padding=2)
    dA_prev, dW, db = lab.conv_backward(dZ, cache)
    close(dA_prev.transpose(0, 3, 1, 2), gx)
    close(dW.transpose(3, 2, 0, 1), gw)
    close(db.ravel(), gb)

    A_prev = rng.permutation(2 * 6 * 5 * 2).reshape(2, 6, 5, 2).astype(np.float64)
    x = A_prev.transpose(0, 3, 1, 2)
    for mode, forward, backward in (("max", ref.max_pool2d, ref.max_pool2d_backward),
                                    ("average", ref.avg_pool2d, ref.avg_pool2d_backward)):
        A, cache = lab.pool_forward(A_prev, {"f": 2, "stride": 1}, mode=mode)
        close(A.transpose(0, 3, 1, 2), forward(x, 2, 1))
        dA = rng.standard_normal(A.shape)
        close(lab.pool_backward(dA, cache, mode=mode).transpose(0, 3, 1, 2),
              backward(dA.transpose(0, 3, 1, 2), x, 2, 1))


# --------------------------------------------------------------------------- one channel, SciPy


@pytest.mark.parametrize("image_shape", [(7, 8), (3, 3), (2, 5), (1, 1)])
@pytest.mark.parametrize("kernel_shape", [(3, 3), (2, 2), (4, 3), (1, 2), (6, 9), (2, 5)])
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
def test_convolve_correlate_match_scipy(backend, image_shape, kernel_shape, mode):
    signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(8)
    image, kernel = rng.standard_normal(image_shape), rng.standard_normal(kernel_shape)
    for ours, theirs in ((lab.convolve2d, signal.convolve2d),
                         (lab.correlate2d, signal.correlate2d)):
        try:
            want = theirs(image, kernel, mode)
        except ValueError as e:       # 'valid' with neither array the larger on both axes
            with pytest.raises(ValueError, match="at least as large as the other"):
                ours(image, kernel, mode)
            assert "at least as large" in str(e)
            continue
        close(ours(image, kernel, mode), want)


def test_convolution_is_correlation_with_the_flipped_kernel():
    image = np.arange(20.0).reshape(4, 5)
    kernel = np.array([[1.0, 2.0], [3.0, 4.0]])
    flipped = np.array([[4.0, 3.0], [2.0, 1.0]])
    for mode in ("valid", "full"):
        close(lab.convolve2d(image, kernel, mode), lab.correlate2d(image, flipped, mode))
    # by hand, 'valid' top-left value: correlation sums image * kernel over the window
    assert lab.correlate2d(image, kernel, "valid")[0, 0] == 0 * 1 + 1 * 2 + 5 * 3 + 6 * 4
    assert lab.convolve2d(image, kernel, "valid")[0, 0] == 0 * 4 + 1 * 3 + 5 * 2 + 6 * 1
    # odd kernels: 'same' is centred, so the identity holds for 'same' too
    k3 = np.arange(9.0).reshape(3, 3)
    close(lab.convolve2d(image, k3, "same"), lab.correlate2d(image, k3[::-1, ::-1], "same"))


def test_convolve_errors():
    with pytest.raises(ValueError, match="Acceptable mode flags are 'valid', 'same', or 'full'"):
        lab.convolve2d(np.ones((3, 3)), np.ones((2, 2)), "circular")
    with pytest.raises(ValueError, match="inputs must both be 2-D arrays"):
        lab.correlate2d(np.ones((3, 3, 1)), np.ones((2, 2)))
    with pytest.raises(DtypeError):
        lab.correlate2d(np.ones((3, 3)) * 1j, np.ones((2, 2)))
    out = lab.correlate2d(np.arange(9).reshape(3, 3), np.ones((2, 2), np.int64), "valid")
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[8.0, 12.0], [20.0, 24.0]])


def test_output_size():
    assert lab.output_size(5, 3) == 3
    assert lab.output_size(28, 3, padding=1) == 28
    assert lab.output_size(7, 3, stride=2) == 3
    assert lab.output_size(32, 5, padding=2, stride=2) == 16
    assert lab.output_size(10, 3, dilation=2) == 6
    assert lab.output_size(28, 4, padding="same") == 28
    with pytest.raises(ArgumentError, match="Kernel size can't be greater"):
        lab.output_size(3, 5)
    with pytest.raises(ArgumentError, match="non-positive stride"):
        lab.output_size(5, 3, stride=0)


def test_output_size_matches_torch():
    torch = pytest.importorskip("torch")
    for n in (1, 4, 7, 12):
        for f in (1, 2, 3, 5):
            for padding in (0, 1, 2):
                for stride in (1, 2, 3):
                    for dilation in (1, 2):
                        if n + 2 * padding < dilation * (f - 1) + 1:
                            continue
                        y = torch.nn.functional.conv2d(torch.zeros(1, 1, n, 1),
                                                       torch.zeros(1, 1, f, 1),
                                                       stride=stride, padding=(padding, 0),
                                                       dilation=dilation)
                        assert lab.output_size(n, f, padding, stride, dilation) == y.shape[2]
