"""The oracle itself: ``cnnlab.reference`` against the values the convolution lab publishes
and against PyTorch. If these fail, every agreement test downstream means nothing.

The lab (deeplearning.ai, "Convolutional Model: step by step") works in NHWC with weights
(f, f, C_in, C_out); the tests transpose to NCHW / (C_out, C_in, f, f). Its expected
outputs are quoted from the notebook, not computed by cnnlab.
"""
from __future__ import annotations

import numpy as np
import pytest

import cnnlab
from cnnlab import reference as R

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # pragma: no cover - torch is in the test extra
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")


def nchw(a):
    return a.transpose(0, 3, 1, 2)


def nhwc(a):
    return a.transpose(0, 2, 3, 1)


def lab_weights(w):
    """(f, f, C_in, C_out) -> (C_out, C_in, f, f)."""
    return w.transpose(3, 2, 0, 1)


# --------------------------------------------------------------------------- the lab's values


def test_zero_pad_lab():
    np.random.seed(1)
    x = np.random.randn(4, 3, 3, 2)
    x_pad = nhwc(R.zero_pad(nchw(x), 3))
    assert x_pad.shape == (4, 9, 9, 2)
    np.testing.assert_allclose(x[1, 1], [[0.90085595, -0.68372786],
                                         [-0.12289023, -0.93576943],
                                         [-0.26788808, 0.53035547]], rtol=1e-7)
    np.testing.assert_array_equal(x_pad[1, 1], np.zeros((9, 2)))
    np.testing.assert_array_equal(x_pad[:, 3:6, 3:6], x)


def test_zero_pad_asymmetric():
    x = np.arange(6.0).reshape(1, 2, 3)
    p = R.zero_pad(x, (1, 0, 2, 1))                  # top, bottom, left, right
    assert p.shape == (1, 3, 6)
    np.testing.assert_array_equal(p[0], [[0, 0, 0, 0, 0, 0],
                                         [0, 0, 0, 1, 2, 0],
                                         [0, 0, 3, 4, 5, 0]])


def test_conv_single_step_lab():
    np.random.seed(1)
    a_slice_prev = np.random.randn(4, 4, 3)
    W = np.random.randn(4, 4, 3)
    b = np.random.randn(1, 1, 1)
    assert R.conv_single_step(a_slice_prev, W, b) == pytest.approx(-6.99908945068, abs=1e-10)


def test_conv_forward_lab():
    np.random.seed(1)
    A_prev = np.random.randn(2, 5, 7, 4)
    W = np.random.randn(3, 3, 4, 8)
    b = np.random.randn(1, 1, 1, 8)
    Z = nhwc(R.conv2d(nchw(A_prev), lab_weights(W), b.ravel(), stride=2, padding=1))
    assert Z.mean() == pytest.approx(0.5511276474566768, abs=1e-12)
    np.testing.assert_allclose(Z[0, 2, 1], [-2.17796037, 8.07171329, -0.5772704, 3.36286738,
                                            4.48113645, -2.89198428, 10.99288867, 3.03171932],
                               rtol=1e-7)


def test_conv_backward_lab():
    """The lab's earlier edition: pad 2, stride 2, dZ = Z."""
    np.random.seed(1)
    A_prev = np.random.randn(10, 4, 4, 3)
    W = np.random.randn(2, 2, 3, 8)
    b = np.random.randn(1, 1, 1, 8)
    x, w = nchw(A_prev), lab_weights(W)
    Z = R.conv2d(x, w, b.ravel(), stride=2, padding=2)
    assert Z.mean() == pytest.approx(0.0489952035289, abs=1e-12)
    np.testing.assert_allclose(nhwc(Z)[3, 2, 1],
                               [-0.61490741, -6.7439236, -2.55153897, 1.75698377, 3.56208902,
                                0.53036437, 5.18531798, 8.75898442], rtol=1e-7)
    dA, dW, db = R.conv2d_backward(Z, x, w, stride=2, padding=2)
    assert dA.mean() == pytest.approx(1.45243777754, abs=1e-10)
    assert dW.mean() == pytest.approx(1.72699145831, abs=1e-10)
    assert db.mean() == pytest.approx(7.83923256462, abs=1e-10)


def test_max_pool_forward_lab():
    np.random.seed(1)
    A_prev = np.random.randn(2, 5, 5, 3)
    A = nhwc(R.max_pool2d(nchw(A_prev), 3, stride=1))
    assert A.shape == (2, 3, 3, 3)
    np.testing.assert_allclose(A[1, 1], [[1.96710175, 0.84616065, 1.27375593],
                                         [1.96710175, 0.84616065, 1.23616403],
                                         [1.62765075, 1.12141771, 1.2245077]], rtol=1e-7)


def test_pool_backward_lab():
    np.random.seed(1)
    A_prev = np.random.randn(5, 5, 3, 2)
    dA = np.random.randn(5, 4, 2, 2)
    assert dA.mean() == pytest.approx(0.145713902729, abs=1e-10)
    x, g = nchw(A_prev), nchw(dA)
    d_max = nhwc(R.max_pool2d_backward(g, x, 2, stride=1))
    np.testing.assert_allclose(d_max[1, 1], [[0.0, 0.0], [5.05844394, -1.68282702], [0.0, 0.0]],
                               rtol=1e-7)
    d_avg = nhwc(R.avg_pool2d_backward(g, x, 2, stride=1))
    np.testing.assert_allclose(d_avg[1, 1], [[0.08485462, 0.2787552],
                                             [1.26461098, -0.25749373],
                                             [1.17975636, -0.53624893]], rtol=1e-7)


def test_distribute_value_lab():
    np.testing.assert_array_equal(R.distribute_value(2.0, (2, 2), 4), np.full((2, 2), 0.5))


# --------------------------------------------------------------------------- against torch


def _t(a):
    return torch.from_numpy(np.array(a)).requires_grad_()


CONV = [dict(), dict(stride=2, padding=1), dict(padding="same", dilation=(1, 2)),
        dict(padding="same"), dict(stride=(3, 1), dilation=2, groups=2), dict(groups=4)]


@needs_torch
@pytest.mark.parametrize("kw", CONV, ids=str)
@pytest.mark.parametrize("unbatched", [False, True])
def test_conv2d_vs_torch(rng, kw, unbatched):
    x = rng.standard_normal((2, 4, 7, 6))
    w = rng.standard_normal((4, 4 // kw.get("groups", 1), 2, 3))   # even kernel height
    b = rng.standard_normal(4)
    if unbatched:
        x = x[0]
    xt, wt, bt = _t(x), _t(w), _t(b)
    yt = TF.conv2d(xt, wt, bt, **kw)
    y = R.conv2d(x, w, b, **kw)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(g))
    for got, t in zip(R.conv2d_backward(g, x, w, **kw), (xt, wt, bt)):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-12, atol=1e-12)


TRANSPOSED = [dict(), dict(stride=2, padding=1, output_padding=1),
              dict(stride=(2, 3), dilation=(2, 1), output_padding=(1, 2), groups=2),
              dict(padding=(0, 1), groups=4)]


@needs_torch
@pytest.mark.parametrize("kw", TRANSPOSED, ids=str)
def test_conv_transpose2d_vs_torch(rng, kw):
    x = rng.standard_normal((2, 4, 4, 5))
    w = rng.standard_normal((4, 3, 3, 2))                 # (C_in, C_out/groups, kH, kW)
    c_out = w.shape[1] * kw.get("groups", 1)
    b = rng.standard_normal(c_out)
    xt, wt, bt = _t(x), _t(w), _t(b)
    yt = TF.conv_transpose2d(xt, wt, bt, **kw)
    y = R.conv_transpose2d(x, w, b, **kw)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(g))
    for got, t in zip(R.conv_transpose2d_backward(g, x, w, **kw), (xt, wt, bt)):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-12, atol=1e-12)


POOL = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
        dict(kernel_size=(2, 3), stride=(3, 1), padding=(1, 1)),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        dict(kernel_size=2, stride=1, divisor_override=3)]


@needs_torch
@pytest.mark.parametrize("kw", POOL, ids=str)
def test_pooling_vs_torch(rng, kw):
    x = rng.permutation(2 * 3 * 7 * 6).reshape(2, 3, 7, 6) / 10.0      # no ties
    avg_only = {k: kw[k] for k in ("count_include_pad", "divisor_override") if k in kw}
    mkw = {k: v for k, v in kw.items() if k not in avg_only}
    xt = _t(x)
    yt, it = TF.max_pool2d(xt, return_indices=True, **mkw)
    y, idx = R.max_pool2d(x, return_indices=True, **mkw)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(idx, it.numpy())
    g = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(R.max_pool2d_backward(g, x, **mkw), xt.grad.numpy(), atol=1e-14)
    np.testing.assert_allclose(R.max_pool2d_backward(g, x, indices=idx, **mkw),
                               xt.grad.numpy(), atol=1e-14)

    xt = _t(x)
    yt = TF.avg_pool2d(xt, **kw)
    y = R.avg_pool2d(x, **kw)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12)
    g = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(R.avg_pool2d_backward(g, x, **kw), xt.grad.numpy(), rtol=1e-12,
                               atol=1e-14)


def test_float32_in_float32_out(rng):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    assert R.conv2d(x, w).dtype == np.float32
    assert R.max_pool2d(x, 2).dtype == np.float32
    assert R.avg_pool2d(x, 2).dtype == np.float32
    assert all(g.dtype == np.float32 for g in R.conv2d_backward(np.ones((1, 3, 3, 3),
                                                                        np.float32), x, w))


def test_reference_shares_the_argument_checks():
    x = np.zeros((1, 2, 5, 5))
    with pytest.raises(cnnlab.ArgumentError, match="non-positive stride is not supported"):
        R.conv2d(x, np.zeros((3, 2, 3, 3)), stride=0)
    with pytest.raises(cnnlab.DtypeError):
        R.avg_pool2d(x.astype(np.int32), 2)


OPS = ["conv2d", "conv2d_backward", "conv_transpose2d", "conv_transpose2d_backward",
       "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward"]


@pytest.mark.parametrize("name", OPS)
def test_signatures_are_those_of_functional(name):
    import inspect

    from cnnlab import functional
    assert inspect.signature(getattr(R, name)) == inspect.signature(getattr(functional, name))


def test_reference_computes_without_the_fast_code():
    """Only NumPy and the shared argument checks: never a twin or cnnlab.functional."""
    import ast
    import inspect
    imported = set()
    for node in ast.walk(ast.parse(inspect.getsource(R))):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported |= {f"{node.module or ''}:{a.name}" for a in node.names}
    assert imported == {"numpy", "__future__:annotations", ":_checks"}
