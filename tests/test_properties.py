"""Property tests (hypothesis) over random shapes and hyper-parameters.

Every example: N in 0..3, small C/H/W, kernel 1..4, stride 1..5 (so also > kernel),
padding <= kernel // 2, dilation, groups, ceil_mode; examples whose output would be empty
are rejected (``assume``). Checked: every twin agrees with ``cnnlab.reference`` (forward
and backward), conv2d is linear in its input and its weight, average pooling of a
constant is that constant, and max pooling >= average pooling. Float64 throughout.
The reference is computed once per example; the twins are looped over inside the test.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import cnnlab
from cnnlab import _checks
from cnnlab import functional as F
from cnnlab import reference as R

small = st.integers(1, 3)
values = st.floats(-10, 10, allow_nan=False, width=64)


def _valid(check, *args, **kwargs):
    """True when cnnlab's own argument checks accept the call (the examples to keep)."""
    try:
        check(*args, **kwargs)
    except cnnlab.ArgumentError:
        return False
    return True


@st.composite
def conv_problems(draw, transposed=False):
    """(x, weight, bias or None, keyword arguments) of a conv2d (or conv_transpose2d)."""
    n, groups = draw(st.integers(0, 3)), draw(small)
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    # convolutions take any padding, also wider than the input (pooling is what limits it)
    p = (draw(st.integers(0, k[0])), draw(st.integers(0, k[1])))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    kw = dict(stride=s, dilation=d, groups=groups)
    if transposed:
        out_pad = tuple(draw(st.integers(0, max(si, di) - 1)) for si, di in zip(s, d))
        kw.update(padding=p, output_padding=out_pad)
        w_shape = (c_in, c_out // groups) + k
        assume(_valid(_checks.conv_transpose2d_spec, (n, c_in, h, w), w_shape, None, **kw))
    else:
        if s == (1, 1) and draw(st.booleans()):
            kw["padding"] = draw(st.sampled_from(["same", "valid"]))
            p = (0, 0)
        else:
            kw["padding"] = p
        w_shape = (c_out, c_in // groups) + k
        assume(_valid(_checks.conv2d_spec, (n, c_in, h, w), w_shape, None, **kw))
    x = draw(arrays(np.float64, (n, c_in, h, w), elements=values))
    weight = draw(arrays(np.float64, w_shape, elements=values))
    bias = draw(st.none() | arrays(np.float64, (c_out,), elements=values))
    return x, weight, bias, kw


@st.composite
def pool_problems(draw, dilation=True, padding=True):
    """(x, keyword arguments) of a max_pool2d / avg_pool2d."""
    n, c = draw(st.integers(0, 3)), draw(small)
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if dilation else (1, 1)
    p = (0, 0)
    if padding:
        p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    ceil_mode = draw(st.booleans())
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    assume(_valid(_checks.pool2d_spec, (n, c, h, w), k, s, p, d, ceil_mode))
    x = draw(arrays(np.float64, (n, c, h, w), elements=values))
    kw = dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil_mode)
    if dilation:
        kw["dilation"] = d
    return x, kw


def _close(actual, expected, twin=""):
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-9,
                               err_msg=f"twin {twin!r}")


def _each_twin(twins, compute):
    """(name, compute(T)) for every twin, T wrapping NumPy operands for it; results as
    NumPy. The name says whether tensors went in ("torch-tensors")."""
    for t in twins:
        with cnnlab.use_backend(t):
            yield t + ("-tensors" if t.tensors else ""), t.to_numpy(compute(t.to_twin))


# --------------------------------------------------------------------------- agreement


@given(problem=conv_problems(), seed=st.integers(0, 2**32 - 1))
def test_conv2d_twins_agree_with_reference(twins, problem, seed):
    x, w, b, kw = problem
    y = R.conv2d(x, w, b, **kw)
    g = np.random.default_rng(seed).standard_normal(y.shape)
    grads = R.conv2d_backward(g, x, w, **kw)
    for name, (y_t, *grads_t) in _each_twin(
            twins, lambda T: (F.conv2d(T(x), T(w), T(b), **kw),
                              *F.conv2d_backward(T(g), T(x), T(w), **kw))):
        _close(y_t, y, name)
        for a, e in zip(grads_t, grads):
            _close(a, e, name)


@given(problem=conv_problems(transposed=True), seed=st.integers(0, 2**32 - 1))
def test_conv_transpose2d_twins_agree_with_reference(twins, problem, seed):
    x, w, b, kw = problem
    y = R.conv_transpose2d(x, w, b, **kw)
    g = np.random.default_rng(seed).standard_normal(y.shape)
    grads = R.conv_transpose2d_backward(g, x, w, **kw)
    for name, (y_t, *grads_t) in _each_twin(
            twins, lambda T: (F.conv_transpose2d(T(x), T(w), T(b), **kw),
                              *F.conv_transpose2d_backward(T(g), T(x), T(w), **kw))):
        _close(y_t, y, name)
        for a, e in zip(grads_t, grads):
            _close(a, e, name)


@given(problem=pool_problems(), seed=st.integers(0, 2**32 - 1))
def test_max_pool2d_twins_agree_with_reference(twins, problem, seed):
    """Values, indices (ties included: hypothesis likes repeated values) and gradients."""
    x, kw = problem
    y, idx = R.max_pool2d(x, return_indices=True, **kw)
    g = np.random.default_rng(seed).standard_normal(y.shape)
    gx = R.max_pool2d_backward(g, x, **kw)
    for name, (y_t, idx_t, gx_t) in _each_twin(
            twins, lambda T: (*F.max_pool2d(T(x), return_indices=True, **kw),
                              F.max_pool2d_backward(T(g), T(x), **kw))):
        np.testing.assert_array_equal(y_t, y, err_msg=name)
        np.testing.assert_array_equal(idx_t, idx, err_msg=name)
        _close(gx_t, gx, name)


@given(problem=pool_problems(dilation=False), count_include_pad=st.booleans(),
       divisor=st.none() | st.integers(-5, 9).filter(bool), seed=st.integers(0, 2**32 - 1))
def test_avg_pool2d_twins_agree_with_reference(twins, problem, count_include_pad, divisor,
                                               seed):
    x, kw = problem
    kw.update(count_include_pad=count_include_pad, divisor_override=divisor)
    y = R.avg_pool2d(x, **kw)
    g = np.random.default_rng(seed).standard_normal(y.shape)
    gx = R.avg_pool2d_backward(g, x, **kw)
    for name, (y_t, gx_t) in _each_twin(
            twins, lambda T: (F.avg_pool2d(T(x), **kw),
                              F.avg_pool2d_backward(T(g), T(x), **kw))):
        _close(y_t, y, name)
        _close(gx_t, gx, name)


# --------------------------------------------------------------------------- algebra


@given(problem=conv_problems(), a=values, c=values, seed=st.integers(0, 2**32 - 1))
def test_conv2d_is_linear(twin, problem, a, c, seed):
    """conv(a*x1 + c*x2, w) == a*conv(x1, w) + c*conv(x2, w), and the same in w."""
    x1, w1, _, kw = problem
    rng = np.random.default_rng(seed)
    x2, w2 = rng.standard_normal(x1.shape), rng.standard_normal(w1.shape)
    T, N = twin.to_twin, twin.to_numpy

    def conv(x, w):
        return N(F.conv2d(T(x), T(w), **kw))

    scale = 1 + abs(a) + abs(c)
    np.testing.assert_allclose(conv(a * x1 + c * x2, w1), a * conv(x1, w1) + c * conv(x2, w1),
                               rtol=1e-9, atol=1e-9 * scale * (1 + np.abs(x1).max(initial=0)))
    np.testing.assert_allclose(conv(x1, a * w1 + c * w2), a * conv(x1, w1) + c * conv(x1, w2),
                               rtol=1e-9, atol=1e-9 * scale * (1 + np.abs(w1).max(initial=0)))


@given(problem=pool_problems(dilation=False), value=values, count_include_pad=st.booleans())
def test_avg_pool_of_a_constant_is_the_constant(twin, problem, value, count_include_pad):
    x, kw = problem
    # With count_include_pad the padding's zeros count: only without padding.
    kw["count_include_pad"] = count_include_pad and kw["padding"] == (0, 0)
    y = twin.to_numpy(F.avg_pool2d(twin.to_twin(np.full_like(x, value)), **kw))
    np.testing.assert_allclose(y, np.full_like(y, value), rtol=1e-12, atol=1e-12)


@given(problem=pool_problems(dilation=False, padding=False))
def test_max_pool_is_at_least_avg_pool(twin, problem):
    x, kw = problem
    T, N = twin.to_twin, twin.to_numpy
    big = N(F.max_pool2d(T(x), **kw))
    mean = N(F.avg_pool2d(T(x), **kw))
    assert big.shape == mean.shape
    assert np.all(big >= mean - 1e-12 * (1 + np.abs(mean)))


CORNERS = {
    "conv-batch0": (conv_problems(), lambda pr: pr[0].shape[0] == 0),
    "conv-stride>kernel": (conv_problems(),
                           lambda pr: pr[3]["stride"][0] > pr[1].shape[2]),
    "conv-same": (conv_problems(), lambda pr: pr[3]["padding"] == "same"),
    "conv-groups": (conv_problems(), lambda pr: pr[3]["groups"] > 1),
    "transposed-output-padding": (conv_problems(transposed=True),
                                  lambda pr: max(pr[3]["output_padding"]) > 0),
    "pool-ceil-mode": (pool_problems(), lambda pr: pr[1]["ceil_mode"]),
    "pool-stride>kernel": (pool_problems(),
                           lambda pr: pr[1]["stride"][1] > pr[1]["kernel_size"][1]),
    "pool-dilation": (pool_problems(), lambda pr: max(pr[1]["dilation"]) > 1),
}


@pytest.mark.parametrize("corner", list(CORNERS))
def test_strategies_reach_the_corners(corner):
    """The strategies do draw the corners the docstring promises: a guard against a
    refactor that quietly narrows them."""
    from hypothesis import find, settings
    strategy, predicate = CORNERS[corner]
    assert predicate(find(strategy, predicate,
                          settings=settings(max_examples=2000, database=None)))
