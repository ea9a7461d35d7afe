"""Sizes at and past the 32-bit limits, empty outputs, and overflowing products.

Each case runs in a child process with a time and memory limit (``_child``): before the
fix, these crashed the interpreter (segfault, SIGFPE), hung, or returned wrong numbers.
Expected values come from the definition of each op, worked out by hand for the few input
cells the windows touch (the inputs are mostly zeros that are never written, so a plane of
2**31 elements costs only the pages the test fills), or from torch where noted.

Backward passes over a plane of 2**31 elements need ~9 GB per array; they run only with
``CNNLAB_TEST_BIGMEM=1`` (and enough free memory).
"""
from __future__ import annotations

import os

import pytest

import cnnlab
from _child import describe, run_code

BACKENDS = cnnlab.backends()

# A plane of 65536 x 32769 = 2**31 + 65536 elements: row * W overflows a C int from row
# 65535 on. Stride (65535, 1) with a 1x1 window reads rows 0 and 65535 only.
BIG = """
H, W = 65536, 32769
x = np.zeros((1, 1, H, W), np.float32)            # untouched pages cost nothing
x[0, 0, 0] = np.arange(W) % 251 + 1
x[0, 0, H - 1] = -(np.arange(W) % 241) - 1
rows = np.stack([x[0, 0, 0], x[0, 0, H - 1]])[None, None]     # what the windows read
"""


def _expect_ok(backend, code, timeout=120, memory_gb=14, env=None):
    out = run_code(backend, code, timeout=timeout, memory_gb=memory_gb, env=env)
    assert out.status == "ok", describe(out)
    return out.value


def _bigmem(gb):
    """Skip unless CNNLAB_TEST_BIGMEM=1 and ``gb`` GiB are free."""
    if os.environ.get("CNNLAB_TEST_BIGMEM") != "1":
        pytest.skip("a 2**31-element gradient: set CNNLAB_TEST_BIGMEM=1 to run")
    with open("/proc/meminfo") as f:
        free = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f)}
    if free.get("MemAvailable", 0) < gb * 2**20:
        pytest.skip(f"needs {gb} GiB of free memory")


# --------------------------------------------------------------------------- big planes


# The NumPy twin's pooling builds a padded copy of the input (8 GB here, 16 GB for the
# 46341-wide window below) until it computes only the taps that touch the input.
POOL_BACKENDS = [b for b in BACKENDS if b != "numpy"]


@pytest.mark.parametrize("backend", POOL_BACKENDS)
def test_pooling_a_plane_of_more_than_2_31_elements(backend):
    _expect_ok(backend, BIG + """
y = F.avg_pool2d(x, 1, stride=(65535, 1))
np.testing.assert_array_equal(y, rows)
y, idx = F.max_pool2d(x, 1, stride=(65535, 1), return_indices=True)
np.testing.assert_array_equal(y, rows)
expected = np.stack([np.arange(W), (H - 1) * W + np.arange(W)])[None, None]
np.testing.assert_array_equal(idx, expected)
# a 2x2 window at stride (65534, 2): the vectorised 2x2 path, rows 65534 and 65535
y, idx = F.max_pool2d(x, 2, stride=(65534, 2), return_indices=True)
w2 = (W - 2) // 2 + 1
np.testing.assert_array_equal(y[0, 0, 1], x[0, 0, H - 2:, :2 * w2].reshape(2, w2, 2).max((0, 2)))
np.testing.assert_array_equal(idx[0, 0, 1], (H - 2) * W + 2 * np.arange(w2))
""")


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
def test_conv2d_on_a_plane_of_more_than_2_31_elements(backend):
    # (the NumPy twin's convolution copies the input into a zero-padded array: 8.6 GB here)
    _expect_ok(backend, BIG + """
w = np.full((2, 1, 1, 1), 2.0, np.float32)
y = F.conv2d(x, w, np.array([0.5, -1.0], np.float32), stride=(65535, 1))
np.testing.assert_array_equal(y, np.concatenate([2 * rows + 0.5, 2 * rows - 1.0], axis=1))
""")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ["max_pool2d_backward", "avg_pool2d_backward",
                                "conv2d_backward"])
def test_backward_on_a_plane_of_more_than_2_31_elements(backend, op):
    if op == "conv2d_backward" and backend == "numpy":
        pytest.skip("the NumPy twin's convolution copies the padded input (8.6 GB more)")
    _bigmem(12)
    _expect_ok(backend, BIG + f"""
op = {op!r}
g = np.stack([np.arange(W) % 7 + 1, np.arange(W) % 5 + 1]).astype(np.float32)[None, None]
if op == "conv2d_backward":
    gx, gw, gb = F.conv2d_backward(g, x, np.full((1, 1, 1, 1), 3, np.float32),
                                   stride=(65535, 1))
    np.testing.assert_allclose(gw.ravel(), [(g * rows).sum(dtype=np.float64)], rtol=1e-6)
    g = 3 * g
else:
    gx = getattr(F, op)(g, x, 1, stride=(65535, 1))
np.testing.assert_array_equal(gx[0, 0, 0], g[0, 0, 0])
np.testing.assert_array_equal(gx[0, 0, H - 1], g[0, 0, 1])
gx[0, 0, 0] = 0
gx[0, 0, H - 1] = 0
assert not gx.any()
""", timeout=600, memory_gb=30)


# --------------------------------------------------------------------------- empty outputs


@pytest.mark.parametrize("backend", BACKENDS)
def test_transposed_convolution_of_an_empty_batch_without_rows(backend):
    # An empty batch may have planes without rows (torch's rule): the forward convolution
    # of conv_transpose2d's backward then has an output of 0 rows, which the compiled twin
    # cut into 0 tiles and then divided by (SIGFPE).
    _expect_ok(backend, """
for dtype in (np.float32, np.float64):
    x, w = np.zeros((0, 3, 0, 1), dtype), np.ones((3, 2, 2, 1), dtype)
    y = F.conv_transpose2d(x, w, np.ones(2, dtype))
    assert y.shape == (0, 2, 1, 1), y.shape
    gx, gw, gb = F.conv_transpose2d_backward(np.zeros(y.shape, dtype), x, w)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == (2,)
    assert not gw.any() and not gb.any()
result = "ok"
""", memory_gb=6)


@pytest.mark.skipif("cython" not in BACKENDS, reason="the compiled twin is not built")
def test_compiled_kernels_with_an_output_without_rows_do_not_divide_by_zero():
    # Specs the checks never produce with images in the batch; the kernels must still give
    # the gradient of an empty output (zero), not divide by the number of tiles (0).
    _expect_ok("cython", """
from cnnlab import _core
from cnnlab._checks import ConvSpec
for out_size, in_size, k in [((0, 1), (1, 1), (2, 1)), ((1, 0), (1, 1), (1, 2)),
                             ((0, 0), (3, 4), (4, 5))]:
    spec = ConvSpec((1, 1), (0, 0), (1, 1), 1, k, in_size, out_size)
    for dtype in (np.float32, np.float64):
        w, x = np.ones((2, 3) + k, dtype), np.ones((2, 3) + in_size, dtype)
        gy = np.zeros((2, 2) + out_size, dtype)
        gx = _core.conv2d_grad_input(gy, w, spec)
        assert gx.shape == x.shape and not gx.any(), gx
        gw = _core.conv2d_grad_weight(gy, x, spec)
        assert gw.shape == w.shape and not gw.any(), gw
        assert _core.conv2d(x, w, None, spec).shape == gy.shape
result = "ok"
""", memory_gb=6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_transpose2d_of_an_input_without_rows(backend):
    # The SIGFPE. torch refuses input planes without rows or columns (unless the
    # batch or the channels are empty); every twin says the same.
    _expect_ok(backend, """
try:
    F.conv_transpose2d(np.zeros((1, 1, 0, 1), np.float32), np.ones((1, 1, 2, 1), np.float32))
except cnnlab.ArgumentError as e:
    assert "Only zero batch or zero channel inputs are supported" in str(e), e
else:
    raise AssertionError("no error")
y = F.conv_transpose2d(np.zeros((0, 1, 0, 1), np.float32), np.ones((1, 1, 2, 1), np.float32))
assert y.shape == (0, 1, 1, 1), y.shape
result = "ok"
""", memory_gb=6)


# --------------------------------------------------------------------------- overflow


@pytest.mark.parametrize("backend", POOL_BACKENDS)
def test_avg_pool2d_divisor_past_2_31(backend):
    # 46341**2 = 2147488281 > 2**31 - 1: a 32-bit divisor wrapped to a negative number.
    value = _expect_ok(backend, """
result = F.avg_pool2d(np.ones((1, 1, 1, 1)), 46341, 1, 23170)
""", memory_gb=6)
    assert value.shape == (1, 1, 1, 1)
    assert value[0, 0, 0, 0] == 1.0 / 46341**2      # one input cell, the full window's size


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv2d_with_stride_and_padding_2_31_minus_1(backend):
    # Output 3x3; only window (1, 1) reads the input cell: x*w + b there, b elsewhere.
    value = _expect_ok(backend, """
s = 2**31 - 1
try:
    result = F.conv2d(np.full((1, 1, 1, 1), 3.0), np.full((1, 1, 1, 1), 2.0), np.array([0.5]),
                      stride=s, padding=s)
except (MemoryError, ValueError) as e:
    result = f"{type(e).__name__}: {e}"
""", memory_gb=6)
    if backend == "numpy" and isinstance(value, str):
        # The NumPy twin builds the zero-padded input, (2**32 - 1)**2 cells: a clear refusal
        # is acceptable there, a wrong value is not.
        assert "too big" in value or "allocate" in value or "too large" in value, value
        return
    expected = [[0.5, 0.5, 0.5], [0.5, 6.5, 0.5], [0.5, 0.5, 0.5]]
    assert value.tolist() == [[expected]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_lab_conv_forward_with_pad_2_31_minus_1(backend):
    value = _expect_ok(backend, """
s = 2**31 - 1
try:
    Z, _ = lab.conv_forward(np.full((1, 1, 1, 1), 3.0), np.full((1, 1, 1, 1), 2.0),
                            np.full((1, 1, 1, 1), 0.5), {"stride": s, "pad": s})
    result = Z[0, :, :, 0]
except (MemoryError, ValueError) as e:
    result = f"{type(e).__name__}: {e}"
""", memory_gb=6)
    if backend == "numpy" and isinstance(value, str):
        assert "too big" in value or "allocate" in value or "too large" in value, value
        return
    assert value.tolist() == [[0.5, 0.5, 0.5], [0.5, 6.5, 0.5], [0.5, 0.5, 0.5]]
