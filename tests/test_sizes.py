"""Sizes at and past the 32-bit limits, empty outputs, overflowing products, huge windows,
strides and paddings, and the layouts torch gets wrong.

What crashed the interpreter (segfault, SIGFPE), hung, or could allocate without bound
runs in a child process with a time and memory limit (``_child``), one per backend; the
rest runs in-process on every twin. Expected values come from the definition of each op,
worked out by hand for the few input cells the windows touch (the inputs are mostly zeros
that are never written, so a plane of 2**31 elements costs only the pages the test fills),
from the naive reference, from enumeration, or from torch's meta tensors where noted.

Backward passes over a plane of 2**31 elements need ~9 GB per array; they run only with
``CNNLAB_TEST_BIGMEM=1`` (and enough free memory).
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, strategies as st

import cnnlab
from cnnlab import _checks
from cnnlab import functional as F
from cnnlab import reference as R
from _child import describe, run_code

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # pragma: no cover - torch is in the test extra
    torch = None

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


@pytest.mark.parametrize("backend", BACKENDS)
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


@pytest.mark.parametrize("backend", BACKENDS)
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


# --------------------------------------------------------------------------- size checks

def test_output_size_helpers_answer_at_once_for_huge_sizes():
    # pool2d_output_shape(10**10, 2) built a Python list per output position (and the check
    # that every dilated window reaches the input looped over them): it never answered.
    out = run_code("numpy", """
import time
t = time.perf_counter()
result = [cnnlab.pool2d_output_shape(10**10, 2),
          cnnlab.pool2d_output_shape((10**15, 7), (3, 2**31 - 1), 1, (1, 2**30 - 1),
                                     (2**31 - 1, 1)),
          cnnlab.conv2d_output_shape(10**12, 3, 2**40, 2**41),
          cnnlab.conv_transpose2d_output_shape(10**9, 3, 2**30, 5),
          time.perf_counter() - t]
""", timeout=30)
    assert out.status == "ok", describe(out)
    *shapes, seconds = out.value
    assert shapes[0] == (5 * 10**9, 5 * 10**9)
    # torch's formula (size + 2*padding - dilation*(kernel - 1) - 1) // stride + 1
    assert shapes[1] == (10**15 + 2 - 2 * (2**31 - 1), 7 + 2 * (2**30 - 1) - (2**31 - 2))
    assert shapes[2] == ((10**12 + 2**42 - 3) // 2**40 + 1,) * 2
    assert shapes[3] == ((10**9 - 1) * 2**30 - 10 + 3,) * 2
    assert seconds < 1.0


@pytest.mark.skipif(torch is None, reason="torch not installed")
@given(size=st.integers(1, 10**12), k=st.integers(1, 2**31 - 1), s=st.integers(1, 2**31 - 1),
       d=st.integers(1, 2**31 - 1), p_frac=st.floats(0, 1), ceil=st.booleans())
def test_pool_output_size_matches_torch_on_huge_sizes(size, k, s, d, p_frac, ceil):
    # torch's meta tensors compute output shapes without memory: the independent oracle.
    p = int(p_frac * (k // 2))                    # torch's max_pool2d: padding <= k/2
    x = torch.empty(1, 1, size, 1, device="meta")
    try:
        want = TF.max_pool2d(x, (k, 1), (s, 1), (p, 0), (d, 1), ceil_mode=ceil).shape[2]
    except RuntimeError:
        want = None                               # torch: output too small
    try:
        got = cnnlab.pool2d_output_shape((size, 1), (k, 1), (s, 1), (p, 0), (d, 1), ceil)[0]
    except cnnlab.ArgumentError as e:
        if "covers no input" in str(e):           # cnnlab refuses what torch computes
            return
        got = None
    assert got == want


@given(size=st.integers(1, 12), k=st.integers(1, 12), s=st.integers(1, 16),
       d=st.integers(1, 40), p_frac=st.floats(0, 1), ceil=st.booleans())
def test_first_uncovered_window_matches_enumeration(size, k, s, d, p_frac, ceil):
    p = int(p_frac * ((d * (k - 1) + 1) // 2))
    out = _checks._pool_out(size, k, s, p, d, ceil)
    if out < 1:
        return
    first_taps = [o * s - p + (-(min(o * s - p, 0) // d)) * d for o in range(out)]
    misses = [o for o, t in enumerate(first_taps) if t >= size]
    assert _checks._first_uncovered(size, s, p, d, out) == (misses[0] if misses else None)


@given(a=st.integers(0, 200), m=st.integers(1, 100), data=st.data())
def test_least_multiple_in_an_interval_matches_enumeration(a, m, data):
    lo = data.draw(st.integers(0, m - 1))
    hi = data.draw(st.integers(lo, m - 1))
    want = next((x for x in range(m + 1) if lo <= a * x % m <= hi), None)   # x mod m repeats
    assert _checks._least_multiple_in(a, m, lo, hi) == want


def _conv1x1(T, size=2, **kw):
    """conv2d of a (1, 1, size, size) input with a 1x1 weight."""
    return F.conv2d(T(np.ones((1, 1, size, size))), T(np.ones((1, 1, 1, 1))), **kw)


LIMIT_CASES = {
    # name: (call, regex of the message)
    "conv2d padding past 2**62-1": (
        lambda T: _conv1x1(T, padding=2**62), r"padding 4611686018427387904 is too large"),
    "conv2d stride past 2**62-1": (
        lambda T: _conv1x1(T, stride=2**63), r"stride 9223372036854775808 is too large"),
    "conv2d padded input past 2**62-1": (
        lambda T: _conv1x1(T, padding=2**61),
        r"padded input size 4611686018427387906 is too large"),
    "conv2d output past 2**63 bytes": (
        lambda T: _conv1x1(T, 1, padding=2**31),
        r"the output would have size \[1, 1, 4294967297, 4294967297\]"),
    "conv_transpose2d output past 2**63 bytes": (
        lambda T: F.conv_transpose2d(T(np.ones((1, 1, 2, 2))), T(np.ones((1, 1, 1, 1))),
                                     stride=2**40),
        r"the output would have size \[1, 1, 1099511627777, 1099511627777\]"),
    "conv_transpose2d output_padding past 2**62-1": (
        lambda T: F.conv_transpose2d(T(np.ones((1, 1, 2, 2))), T(np.ones((1, 1, 1, 1))),
                                     stride=2**62 + 1, output_padding=2**62),
        r"stride 4611686018427387905 is too large"),
    "max_pool2d kernel past 2**31-1": (
        lambda T: F.max_pool2d(T(np.ones((1, 1, 2, 2))), 2**31, padding=2**30), r"kernel size"),
    "avg_pool2d stride past 2**31-1": (
        lambda T: F.avg_pool2d(T(np.ones((1, 1, 2, 2))), 2, stride=2**31), r"stride 2147483648"),
    "avg_pool2d divisor past 2**63-1": (
        lambda T: F.avg_pool2d(T(np.ones((1, 1, 2, 2))), 2, divisor_override=-2**63),
        r"divisor_override -9223372036854775808 is too large"),
    "pooling an empty batch of big planes": (
        lambda T: F.max_pool2d(T(np.zeros((0, 3, 2**20, 2**20))), 2), None),
    "conv_transpose2d output size past 2**62-1": (
        lambda T: F.conv_transpose2d(T(np.ones((0, 1, 10**12, 1))), T(np.ones((1, 1, 3, 1))),
                                     stride=2**30, padding=(5, 0)),
        r"output size 1073741823998926258169 is too large"),
    "conv2d planes without columns": (
        lambda T: F.conv2d(T(np.ones((1, 1, 3, 0))), T(np.ones((1, 1, 1, 1))), padding=1),
        r"Only zero batch or zero channel inputs are supported, but got input shape: "
        r"\[1, 1, 3, 0\]"),
}

@pytest.mark.parametrize("name", list(LIMIT_CASES))
def test_sizes_past_the_limits_are_refused_by_name(twin, name):
    call, match = LIMIT_CASES[name]
    if match is None:                       # legal: an empty result of the right shape
        assert twin.to_numpy(call(twin.to_twin)).shape == (0, 3, 2**19, 2**19)
        return
    with pytest.raises(cnnlab.ArgumentError, match=match):
        call(twin.to_twin)


# --------------------------------------------------------------------------- huge windows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pooling_with_huge_windows_reads_only_the_input(twin, dtype):
    # Every window of 4001 x 4001 at padding 2000 covers the whole 5x5 plane: the average
    # is the plane's sum over 4001**2 (padding counted), the maximum the plane's maximum.
    # The NumPy twin built the padded input (2 x 3 x 4005 x 4005) for this; now it reads
    # one tap per input cell into the 5x5 output.
    import tracemalloc
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5, 5)).astype(dtype)
    tracemalloc.start()
    avg = twin.to_numpy(F.avg_pool2d(twin.to_twin(x), 4001, 1, 2000))
    mx, idx = twin.to_numpy(F.max_pool2d(twin.to_twin(x), 4001, 1, 2000, return_indices=True))
    gx = twin.to_numpy(F.avg_pool2d_backward(twin.to_twin(np.ones_like(avg)), twin.to_twin(x),
                                             4001, 1, 2000))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    sums = x.astype(np.float64).sum(axis=(2, 3))
    np.testing.assert_allclose(avg, np.broadcast_to((sums / 4001**2)[:, :, None, None],
                                                    avg.shape), rtol=1e-5, atol=1e-12)
    np.testing.assert_array_equal(mx, np.broadcast_to(x.max(axis=(2, 3))[:, :, None, None],
                                                      mx.shape))
    np.testing.assert_array_equal(idx, np.broadcast_to(
        x.reshape(2, 3, 25).argmax(axis=2)[:, :, None, None], idx.shape))
    np.testing.assert_allclose(gx, np.full(x.shape, 25 / 4001**2), rtol=1e-5)
    if twin == "numpy":
        assert peak < 2**20, f"the NumPy twin allocated {peak} bytes for 150 outputs"


# --------------------------------------------------------------------------- huge strides


@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_passes_with_huge_strides_and_paddings(backend):
    # torch's transposed convolution (which the torch twin's input gradient is) segfaulted
    # from stride ~30000 (oneDNN), truncated strides past 2**32 to 32 bits, and refused
    # 2**31; padding windows that read no input add nothing and are left out.
    _expect_ok(backend, """
rng = np.random.default_rng(5)
x, w = rng.standard_normal((2, 3, 9, 7)), rng.standard_normal((4, 3, 2, 2))
for s in (30000, 46341, 2**31, 2**32 + 2, 2**40):
    y = F.conv2d(x, w, stride=s)
    np.testing.assert_allclose(y, R.conv2d(x, w, stride=s), rtol=1e-12)
    g = rng.standard_normal(y.shape)
    for ours, ref in zip(F.conv2d_backward(g, x, w, stride=s),
                         R.conv2d_backward(g, x, w, stride=s)):
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
    xt = rng.standard_normal((2, 4, 1, 1))                 # one input cell: output k + 1
    yt = F.conv_transpose2d(xt, w, stride=s, output_padding=1)
    np.testing.assert_allclose(yt, R.conv_transpose2d(xt, w, stride=s, output_padding=1),
                               rtol=1e-12)
# every window in the padding: the input and weight gradients are 0, the output the bias
# (the NumPy twin's convolutions build the zero-padded input: 2**64 cells, refused)
b = rng.standard_normal(4)
try:
    y = F.conv2d(x, w, b, stride=2**40, padding=2**31 + 1)
except cnnlab.ArgumentError as e:
    assert cnnlab.get_backend() == "numpy" and "too large" in str(e), e
    y = None
if y is not None:
    np.testing.assert_array_equal(y, np.broadcast_to(b[None, :, None, None], (2, 4, 1, 1)))
    g = rng.standard_normal(y.shape)
    gx, gw, gb = F.conv2d_backward(g, x, w, stride=2**40, padding=2**31 + 1)
    assert not gx.any() and not gw.any()
    np.testing.assert_allclose(gb, g.sum(axis=(0, 2, 3)))
result = "ok"
""", memory_gb=6)


# --------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("channels", [1, 3])
def test_weight_gradient_of_channels_last_inputs(twin, channels):
    # A C-contiguous NCHW array made from NHWC data can carry any stride on its axis of
    # one channel; torch then took it for channels-last, where oneDNN's float32 weight
    # gradient of a strided 1x1 convolution is wrong (off by 9: the fuzz harness found it
    # through lab.conv_backward). Torch tensors in channels-last go in as they come.
    rng = np.random.default_rng(11)
    nhwc = rng.standard_normal((2, 8, 8, channels)).astype(np.float32)
    x = np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
    w = rng.standard_normal((2, channels, 1, 1)).astype(np.float32)
    g = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    xt = twin.to_twin(x)
    if twin.tensors:
        import torch
        xt = xt.contiguous(memory_format=torch.channels_last)
    got = twin.to_numpy(F.conv2d_backward(twin.to_twin(g), xt, twin.to_twin(w), stride=2))
    want = R.conv2d_backward(g.astype(np.float64), x.astype(np.float64), w.astype(np.float64),
                             stride=2)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@given(size=st.integers(1, 30), k=st.integers(1, 6), s=st.integers(1, 3000),
       p=st.integers(0, 3000), d=st.integers(1, 4))
def test_touching_keeps_exactly_the_windows_that_overlap_the_input(size, k, s, p, d):
    # conv2d's spec along the rows (the columns a plain 1x1 axis); the trimmed spec must
    # read the same input rows as the windows it keeps, and those must be exactly the ones
    # whose span [o*s - p, o*s - p + d*(k-1)] overlaps the input [0, size).
    eff = d * (k - 1) + 1
    if size + 2 * p < eff:
        return
    spec = _checks.conv2d_spec((1, 1, size, 1), (1, 1, k, 1), None, (s, 1), (p, 0), (d, 1))
    out = spec.out_size[0]
    overlap = [o for o in range(out) if o * s - p < size and o * s - p + eff > 0]
    windows = _checks.touching(spec)
    if not overlap:
        assert windows is None
        return
    (rows, _), small = windows
    assert list(range(out))[rows] == overlap and small.out_size[0] == len(overlap)
    for j, o in enumerate(overlap):
        taps = [o * s - p + i * d for i in range(k)]
        assert [j * small.stride[0] - small.padding[0] + i * small.dilation[0]
                for i in range(k)] == taps
