"""Bad input gets a clear error, the same on every twin, worded as PyTorch words it.

One case per bad input: the call, the exception type, a regex of the message. Where
``torch.nn.functional`` has the same function, the same call on torch tensors must raise a
RuntimeError (or the noted type) whose message matches the key phrase too: that is what
"the message mirrors torch" means, checked against the installed torch.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import numpy as np
import pytest

import cnnlab
from cnnlab import functional as F

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # pragma: no cover - torch is in the test extra
    torch = None

ArgumentError, DtypeError = cnnlab.ArgumentError, cnnlab.DtypeError

SAME = "same"      # torch's message matches the same regex


class Bad(NamedTuple):
    call: Callable          # call(api, T): api is cnnlab.functional or torch's; T wraps arrays
    exc: type               # what cnnlab raises
    match: str              # regex of cnnlab's message
    torch_match: Optional[str] = None   # SAME, another regex, or None: torch not compared
    torch_exc: type = RuntimeError
    strict_torch_wording: bool = False  # cnnlab's message should match torch_match as well


def z(*shape, dtype=np.float64):
    return np.zeros(shape, dtype)


X, W, WT = z(1, 2, 5, 5), z(3, 2, 3, 3), z(2, 3, 3, 3)    # input, conv and transposed weights

CASES = {
    # ---------------------------------------------------------------- convolution arguments
    "kernel-larger-than-padded-input": Bad(
        lambda f, T: f.conv2d(T(z(1, 2, 2, 2)), T(z(3, 2, 10, 10))), ArgumentError,
        r"Calculated padded input size per channel: \(2 x 2\)\. Kernel size: \(10 x 10\)\. "
        r"Kernel size can't be greater than actual input size", SAME),
    "stride-zero": Bad(lambda f, T: f.conv2d(T(X), T(W), stride=0), ArgumentError,
                       "non-positive stride is not supported", SAME),
    "stride-negative": Bad(lambda f, T: f.conv2d(T(X), T(W), stride=(1, -2)), ArgumentError,
                           "non-positive stride is not supported", SAME),
    "stride-not-int": Bad(lambda f, T: f.conv2d(T(X), T(W), stride=1.5), TypeError, "stride",
                          "stride", TypeError),
    "stride-three-values": Bad(
        lambda f, T: f.conv2d(T(X), T(W), stride=(1, 2, 3)), ArgumentError,
        r"expected stride to be a single integer value or a list of 2 values", SAME),
    "dilation-zero": Bad(lambda f, T: f.conv2d(T(X), T(W), dilation=0), ArgumentError,
                         "dilation", "dilation should be greater than zero",
                         strict_torch_wording=True),
    "groups-zero": Bad(lambda f, T: f.conv2d(T(X), T(W), groups=0), ArgumentError,
                       "non-positive groups is not supported", SAME),
    "padding-negative": Bad(lambda f, T: f.conv2d(T(X), T(W), padding=-1), ArgumentError,
                            "negative padding is not supported", SAME),
    "padding-same-strided": Bad(
        lambda f, T: f.conv2d(T(X), T(W), padding="same", stride=2), ArgumentError,
        "padding='same' is not supported for strided convolutions", SAME),
    "padding-unknown-string": Bad(lambda f, T: f.conv2d(T(X), T(W), padding="full"),
                                  ArgumentError, "Invalid padding string: 'full'", SAME),
    "channels-mismatch": Bad(
        lambda f, T: f.conv2d(T(X), T(z(3, 3, 3, 3))), ArgumentError,
        r"expected input\[1, 2, 5, 5\] to have 3 channels, but got 2 channels instead", SAME),
    "groups-weight-mismatch": Bad(
        lambda f, T: f.conv2d(T(z(1, 4, 5, 5)), T(W), groups=2), ArgumentError,
        "expected weight to be divisible by 2 at dimension 0", SAME),
    "groups-input-mismatch": Bad(
        lambda f, T: f.conv2d(T(z(1, 3, 5, 5)), T(z(4, 1, 3, 3)), groups=2), ArgumentError,
        r"Given groups=2, .*to have 2 channels, but got 3 channels instead", SAME),
    "bias-wrong-length": Bad(
        lambda f, T: f.conv2d(T(X), T(W), T(z(4))), ArgumentError,
        r"expected bias to be 1-dimensional with 3 elements, but got bias of size \[4\]", SAME),
    "weight-wrong-rank": Bad(lambda f, T: f.conv2d(T(X), T(z(3, 2, 3))), ArgumentError,
                             "weight"),
    # ---------------------------------------------------------------- dtypes and ranks
    "dtype-input-weight": Bad(
        lambda f, T: f.conv2d(T(X.astype(np.float32)), T(W)), DtypeError,
        r"Input type \(float32\) and weight type \(float64\) should be the same",
        r"expected scalar type|should be the same"),
    "dtype-bias": Bad(lambda f, T: f.conv2d(T(X), T(W), T(z(3, dtype=np.float32))),
                      DtypeError, "bias type .* should be the same", "should be the same"),
    "dtype-int": Bad(lambda f, T: f.conv2d(T(X.astype(np.int64)), T(W.astype(np.int64))),
                     DtypeError, "float32 or float64, but input has dtype int64"),
    "dtype-float16": Bad(lambda f, T: f.conv2d(T(X.astype(np.float16)),
                                               T(W.astype(np.float16))),
                         DtypeError, "float32 or float64, but input has dtype float16"),
    "dtype-int-max-pool": Bad(lambda f, T: f.max_pool2d(T(X.astype(np.int32)), 2), DtypeError,
                              "dtype int32"),
    "dtype-int-avg-pool": Bad(lambda f, T: f.avg_pool2d(T(X.astype(np.uint8)), 2), DtypeError,
                              "dtype uint8"),
    "rank-2d": Bad(lambda f, T: f.conv2d(T(z(5, 5)), T(W)), ArgumentError,
                   r"Expected 3D \(unbatched\) or 4D \(batched\) input to conv2d, but got "
                   r"input of size: \[5, 5\]", SAME),
    "rank-5d": Bad(lambda f, T: f.conv2d(T(z(1, 1, 2, 5, 5)), T(W)), ArgumentError,
                   r"input of size: \[1, 1, 2, 5, 5\]", SAME),
    "rank-transposed": Bad(lambda f, T: f.conv_transpose2d(T(z(5, 5)), T(WT)), ArgumentError,
                           r"3D \(unbatched\) or 4D \(batched\) input to conv_transpose2d",
                           SAME),
    "rank-pool": Bad(lambda f, T: f.max_pool2d(T(z(5, 5)), 2), ArgumentError, r"3D.* or 4D",
                     SAME),
    # ---------------------------------------------------------------- pooling arguments
    "pool-pad-over-half-kernel": Bad(
        lambda f, T: f.max_pool2d(T(X), 2, padding=2), ArgumentError,
        "pad should be at most half of effective kernel size, but got pad=2, kernel_size=2 "
        "and dilation=1", SAME),
    "avg-pool-pad-over-half-kernel": Bad(
        lambda f, T: f.avg_pool2d(T(X), 3, padding=2), ArgumentError,
        "pad should be at most half of effective kernel size", SAME),
    "pool-pad-negative": Bad(lambda f, T: f.avg_pool2d(T(X), 2, padding=-1), ArgumentError,
                             "pad must be non-negative, but got pad: -1", SAME),
    "pool-stride-zero": Bad(lambda f, T: f.max_pool2d(T(X), 2, stride=0), ArgumentError,
                            "stride should", "stride should"),
    "pool-kernel-zero": Bad(lambda f, T: f.max_pool2d(T(X), 0, stride=1), ArgumentError,
                            "kernel size should be greater than zero", SAME),
    "pool-dilation-zero": Bad(lambda f, T: f.max_pool2d(T(X), 2, dilation=0), ArgumentError,
                              "dilation should be greater than zero", SAME),
    "divisor-override-zero": Bad(lambda f, T: f.avg_pool2d(T(X), 2, divisor_override=0),
                                 ArgumentError, "divisor must be not zero", SAME),
    "pool-output-too-small": Bad(
        lambda f, T: f.max_pool2d(T(z(1, 2, 2, 2)), 3), ArgumentError,
        r"Given input size: \(2x2x2\)\. Calculated output size: \(2x0x0\)\. "
        r"Output size is too small", SAME),
    "avg-pool-output-too-small": Bad(lambda f, T: f.avg_pool2d(T(z(2, 2, 2)), 3),
                                     ArgumentError, "Output size is too small", SAME),
    # ---------------------------------------------------------------- transposed convolution
    "output-padding-too-large": Bad(
        lambda f, T: f.conv_transpose2d(T(X), T(WT), stride=2, output_padding=2),
        ArgumentError, "output padding must be smaller than either stride or dilation", SAME),
    "output-padding-negative": Bad(
        lambda f, T: f.conv_transpose2d(T(X), T(WT), output_padding=-1), ArgumentError,
        "negative output_padding is not supported", SAME),
    "transposed-output-too-small": Bad(
        lambda f, T: f.conv_transpose2d(T(z(1, 2, 1, 1)), T(z(2, 3, 1, 1)), padding=1),
        ArgumentError, r"Calculated output size per channel: \(-1 x -1\)\. Output size is too "
        "small", SAME),
    "transposed-channels-mismatch": Bad(
        lambda f, T: f.conv_transpose2d(T(X), T(z(3, 3, 3, 3))), ArgumentError,
        r"Given transposed=1, weight of size \[3, 3, 3, 3\], expected input\[1, 2, 5, 5\] to "
        "have 3 channels", SAME),
    "transposed-bias-wrong-length": Bad(
        lambda f, T: f.conv_transpose2d(T(X), T(WT), T(z(2))), ArgumentError,
        "expected bias to be 1-dimensional with 3 elements", SAME),
    "transposed-stride-zero": Bad(lambda f, T: f.conv_transpose2d(T(X), T(WT), stride=0),
                                  ArgumentError, "non-positive stride is not supported", SAME),
    "transposed-groups-zero": Bad(lambda f, T: f.conv_transpose2d(T(X), T(WT), groups=0),
                                  ArgumentError, "non-positive groups is not supported", SAME),
    # ---------------------------------------------------------------- backward operands
    "grad-output-shape-conv": Bad(
        lambda f, T: f.conv2d_backward(T(z(1, 3, 4, 4)), T(X), T(W)), ArgumentError,
        r"expected grad_output of size \[1, 3, 3, 3\], but got grad_output of size "
        r"\[1, 3, 4, 4\]"),
    "grad-output-shape-transposed": Bad(
        lambda f, T: f.conv_transpose2d_backward(T(z(1, 3, 5, 5)), T(X), T(WT)), ArgumentError,
        r"expected grad_output of size \[1, 3, 7, 7\]"),
    "grad-output-shape-max-pool": Bad(
        lambda f, T: f.max_pool2d_backward(T(z(1, 2, 3, 3)), T(X), 2), ArgumentError,
        r"expected grad_output of size \[1, 2, 2, 2\]"),
    "grad-output-shape-avg-pool-unbatched": Bad(
        lambda f, T: f.avg_pool2d_backward(T(z(1, 2, 2, 2)), T(X[0]), 2), ArgumentError,
        r"expected grad_output of size \[2, 2, 2\]"),
    "grad-output-dtype": Bad(
        lambda f, T: f.conv2d_backward(T(z(1, 3, 3, 3, dtype=np.float32)), T(X), T(W)),
        DtypeError, "grad_output type \\(float32\\) should be the same"),
    "indices-out-of-range": Bad(
        lambda f, T: f.max_pool2d_backward(T(z(1, 2, 2, 2)), T(X), 2,
                                           indices=T(np.full((1, 2, 2, 2), 25))),
        ArgumentError, "indices out of range"),
    "indices-negative": Bad(
        lambda f, T: f.max_pool2d_backward(T(z(1, 2, 2, 2)), T(X), 2,
                                           indices=T(np.full((1, 2, 2, 2), -1))),
        ArgumentError, "indices out of range"),
    "indices-wrong-shape": Bad(
        lambda f, T: f.max_pool2d_backward(T(z(1, 2, 2, 2)), T(X), 2,
                                           indices=T(np.zeros((1, 2, 3, 3), np.int64))),
        ArgumentError, r"expected indices of size \[1, 2, 2, 2\]"),
    "indices-wrong-dtype": Bad(
        lambda f, T: f.max_pool2d_backward(T(z(1, 2, 2, 2)), T(X), 2,
                                           indices=T(np.zeros((1, 2, 2, 2), np.int32))),
        DtypeError, "indices must be int64"),
}


def test_indices_in_the_other_byte_order_are_refused(twin):
    """int64 indices in big-endian order are not the kernels' int64: refused by the check
    (NumPy operands: torch cannot hold such an array)."""
    if twin.tensors:
        pytest.skip("torch tensors have the native byte order")
    with pytest.raises(DtypeError, match="indices must be int64, got >i8"):
        F.max_pool2d_backward(z(1, 2, 2, 2), X, 2, indices=np.zeros((1, 2, 2, 2), ">i8"))


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(twin, name):
    case = CASES[name]
    with pytest.raises(case.exc, match=case.match):
        case.call(F, twin.to_twin)


@pytest.mark.skipif(torch is None, reason="torch not installed")
@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.torch_match])
def test_torch_raises_alike(name):
    """torch raises on the same call, and its message has the same key phrase."""
    case = CASES[name]
    pattern = case.match if case.torch_match is SAME else case.torch_match
    with pytest.raises(case.torch_exc, match=pattern):
        case.call(TF, torch.from_numpy)


_wording = [n for n, c in CASES.items() if c.strict_torch_wording]


@pytest.mark.parametrize("name", _wording)
def test_wording_mirrors_torch(name):
    case = CASES[name]
    with pytest.raises(case.exc, match=case.torch_match):
        case.call(F, lambda a: a)


def test_error_classes_catch_both_habits():
    assert issubclass(ArgumentError, ValueError) and issubclass(ArgumentError, RuntimeError)
    assert issubclass(DtypeError, TypeError) and issubclass(DtypeError, RuntimeError)
    with pytest.raises(RuntimeError):
        F.conv2d(X, W, stride=0)
    with pytest.raises(ValueError):
        F.conv2d(X, W, stride=0)


def test_errors_leave_no_state_behind(twin):
    """After a refused call, a good call on the same twin works."""
    T = twin.to_twin
    with pytest.raises(ArgumentError):
        F.conv2d(T(X), T(W), stride=0)
    assert twin.to_numpy(F.conv2d(T(X), T(W))).shape == (1, 3, 3, 3)


@pytest.mark.skipif(torch is None, reason="torch not installed")
def test_mixed_numpy_and_torch_is_a_type_error():
    with pytest.raises(TypeError, match="expected NumPy arrays or torch tensors, all of one "
                                        "kind"):
        F.conv2d(X, torch.from_numpy(W))


@pytest.mark.parametrize("call", [lambda: F.conv2d(X.tolist(), W),
                                  lambda: F.max_pool2d(X.tolist(), 2)], ids=["conv", "pool"])
def test_non_array_is_a_type_error(call):
    with pytest.raises(TypeError, match="input"):
        call()


@pytest.mark.parametrize("call", [lambda f, T: f.conv2d(T(X), T(np.ones((0, 2, 3, 3)))),
                                  lambda f, T: f.conv_transpose2d(T(X),
                                                                  T(np.ones((2, 0, 3, 3))))],
                         ids=["conv2d", "conv_transpose2d"])
def test_empty_weight_is_refused(twin, call):
    """A weight without filters is refused, as torch refuses it in conv2d ("expected weight
    to be at least 1"; its conv_transpose2d fails deeper, in oneDNN)."""
    with pytest.raises(ArgumentError, match="expected weight to be at least 1 at dimension"):
        call(F, twin.to_twin)


@pytest.mark.skipif(torch is None, reason="torch not installed")
def test_torch_refuses_empty_weight_alike():
    with pytest.raises(RuntimeError, match="expected weight to be at least 1 at dimension 0"):
        TF.conv2d(torch.from_numpy(X), torch.zeros((0, 2, 3, 3), dtype=torch.float64))


def test_remembered_spec_checks_keep_refusing_bools():
    """The spec checks remember answers for repeated arguments; a bool never reuses the
    answer for the equal int (True == 1), in a tuple or alone, and a refused call is refused
    again."""
    from cnnlab import _checks
    shape = (1, 1, 4, 4)
    assert _checks.pool2d_spec(shape, (1, 2)).kernel_size == (1, 2)
    assert _checks.pool2d_spec(shape, 1).kernel_size == (1, 1)
    for bad in ((True, 2), True):
        with pytest.raises(TypeError, match="kernel_size must be an int"):
            _checks.pool2d_spec(shape, bad)
    for _ in range(2):
        with pytest.raises(cnnlab.ArgumentError, match="stride should be greater than zero"):
            _checks.pool2d_spec(shape, 2, 0)


# Indices outside the plane, on the paths the compiled kernel takes (float32 rows of 2x2
# windows written once, float64 and other windows zeroed and added into), in the last plane
# of a batch split over 2 threads, and the kernel still right afterwards. The compiled twin
# compares each index as it scatters (the others' callers look first); a miss would write
# outside the array, so the cases run in a child process.
_OUTSIDE = """
rng = np.random.default_rng(0)
result = []
for dtype, shape, kw in [("float32", (3, 5, 8, 64), dict(kernel_size=2)),
                         ("float64", (3, 5, 8, 64), dict(kernel_size=2)),
                         ("float32", (3, 5, 9, 20), dict(kernel_size=3, stride=2, padding=1))]:
    x = rng.standard_normal(shape).astype(dtype)
    y, idx = F.max_pool2d(x, return_indices=True, **kw)
    g = rng.standard_normal(y.shape).astype(dtype)
    plane = shape[2] * shape[3]
    for bad in (plane, -1, 2**62, -2**63):
        wrong = idx.copy()
        wrong[-1, -1, -1, -1] = bad
        try:
            F.max_pool2d_backward(g, x, indices=wrong, **kw)
            result.append("no error")
        except cnnlab.ArgumentError as e:
            result.append(str(e))
    gx = F.max_pool2d_backward(g, x, indices=idx, **kw)
    want = R.max_pool2d_backward(g.astype(np.float64), x.astype(np.float64), **kw)
    result.append(bool(np.allclose(gx, want, rtol=1e-6, atol=1e-6)))
"""


@pytest.mark.parametrize("backend", cnnlab.backends())
def test_indices_outside_the_plane_are_refused_in_a_child(backend):
    from _child import describe, run_code
    out = run_code(backend, _OUTSIDE, env={"OMP_NUM_THREADS": "2"})
    assert out.status == "ok", describe(out)
    for i, plane in enumerate((512, 512, 180)):
        got = list(out.value[5 * i: 5 * i + 5])
        assert got[:4] == [f"max_pool2d_backward: indices out of range for an input plane "
                           f"of {plane} elements"] * 4, got
        assert got[4] is True
