"""linear and linear_backward (the twins' ``matmul`` kernel) on every twin, against the
naive loops of ``cnnlab.reference`` and against torch (``F.linear`` and autograd, float64).
Sizes cover the one-block and the multi-threaded paths of the compiled twin (rows or
columns split across threads), empty batches, zero features and leading dimensions.
Finite differences are in test_gradients.py, bad input below and in test_errors.py.
"""
from __future__ import annotations

import numpy as np
import pytest

import cnnlab
from cnnlab import functional as F
from cnnlab import reference as R

torch = pytest.importorskip("torch")

SHAPES = [  # input shape, (out_features, in_features)
    ((4, 5), (3, 5)),
    ((7,), (2, 7)),
    ((2, 3, 6), (4, 6)),
    ((0, 5), (3, 5)),            # empty batch
    ((4, 0), (3, 0)),            # no input features: zeros (plus bias)
    ((3, 4), (0, 4)),            # no output features
    ((300, 257), (130, 257)),    # split by rows on the compiled twin
    ((33, 700), (600, 700)),     # split by columns
]


def _torch_grads(g, x, w, b):
    xt, wt, bt = (torch.from_numpy(a.astype(np.float64)).requires_grad_() for a in (x, w, b))
    torch.nn.functional.linear(xt, wt, bt).backward(torch.from_numpy(g.astype(np.float64)))
    return xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("x_shape,w_shape", SHAPES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_matches_torch(twin, x_shape, w_shape, with_bias, dtype, tol, rng):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[:1]).astype(dtype)
    y = twin.to_numpy(F.linear(twin.to_twin(x), twin.to_twin(w),
                               twin.to_twin(b) if with_bias else None))
    ref = torch.nn.functional.linear(*(torch.from_numpy(a.astype(np.float64)) for a in
                                       (x, w, b if with_bias else None) if a is not None)
                                     ) if with_bias else \
        torch.nn.functional.linear(torch.from_numpy(x.astype(np.float64)),
                                   torch.from_numpy(w.astype(np.float64)))
    assert y.dtype == dtype and y.shape == x_shape[:-1] + w_shape[:1]
    scale = np.sqrt(max(1, w_shape[1]))
    np.testing.assert_allclose(y, ref.numpy(), rtol=tol, atol=tol * scale)

    g = rng.standard_normal(y.shape).astype(dtype)
    got = twin.to_numpy(F.linear_backward(twin.to_twin(g), twin.to_twin(x), twin.to_twin(w)))
    for name, a, e, like in zip(("input", "weight", "bias"), got, _torch_grads(g, x, w, b),
                                (x, w, b)):
        assert a.dtype == dtype and a.shape == like.shape, name
        rows = max(1, int(np.prod(x_shape[:-1])))
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * np.sqrt(rows) * scale,
                                   err_msg=name)


@pytest.mark.parametrize("x_shape,w_shape", SHAPES[:5])
def test_reference_linear_matches_torch(x_shape, w_shape, rng):
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[:1])
    expected = torch.nn.functional.linear(*map(torch.from_numpy, (x, w, b))).numpy()
    np.testing.assert_allclose(R.linear(x, w, b), expected, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(expected.shape)
    for a, e in zip(R.linear_backward(g, x, w), _torch_grads(g, x, w, b)):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


def test_thread_counts_agree(rng):
    """The compiled twin's blocks per thread give the same product on 1 and 3 threads."""
    if "cython" not in cnnlab.backends():
        pytest.skip("compiled twin not built")
    x = rng.standard_normal((301, 200))
    w = rng.standard_normal((150, 200))
    old = cnnlab.get_num_threads()
    try:
        with cnnlab.use_backend("cython"):
            cnnlab.set_num_threads(1)
            one = F.linear(x, w)
            cnnlab.set_num_threads(3)
            three = F.linear(x, w)
    finally:
        cnnlab.set_num_threads(old)
    np.testing.assert_allclose(one, three, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(one, x @ w.T, rtol=1e-12, atol=1e-10)


def test_strided_and_readonly_operands(twin, rng):
    x = rng.standard_normal((6, 10))[::2, ::2]          # strided view, (3, 5)
    w = np.asfortranarray(rng.standard_normal((4, 5)))
    w.setflags(write=False)
    y = twin.to_numpy(F.linear(twin.to_twin(x), twin.to_twin(w)))
    np.testing.assert_allclose(y, R.linear(np.ascontiguousarray(x), np.ascontiguousarray(w)),
                               rtol=1e-12, atol=1e-12)


BAD = [  # (input shape, weight shape, bias shape or None, message regex)
    ((2, 3), (4, 5), None, r"mat1 and mat2 shapes cannot be multiplied \(2x3 and 5x4\)"),
    ((2, 3, 3), (4, 5), None, r"mat1 and mat2 shapes cannot be multiplied \(6x3 and 5x4\)"),
    ((2, 5), (4, 5), (3,), r"expected bias to be 1-dimensional with 4 elements"),
    ((), (4, 5), None, r"at least 1D"),
    ((2, 5), (4, 5, 1), None, r"2-D weight"),
]


@pytest.mark.parametrize("x_shape,w_shape,b_shape,match", BAD)
def test_bad_shapes(twin, x_shape, w_shape, b_shape, match):
    x, w = np.zeros(x_shape), np.zeros(w_shape)
    b = None if b_shape is None else np.zeros(b_shape)
    with pytest.raises(cnnlab.ArgumentError, match=match):
        F.linear(twin.to_twin(x), twin.to_twin(w), twin.to_twin(b))


def test_shape_message_is_torchs():
    """The key message is torch's own wording."""
    with pytest.raises(RuntimeError, match=BAD[0][3]):
        torch.nn.functional.linear(torch.zeros(2, 3), torch.zeros(4, 5))


def test_dtype_mismatch_and_integers(twin):
    with pytest.raises(cnnlab.DtypeError, match="should be the same"):
        F.linear(twin.to_twin(np.zeros((2, 3), np.float32)), twin.to_twin(np.zeros((4, 3))))
    with pytest.raises(cnnlab.DtypeError, match="float32 or float64"):
        F.linear(twin.to_twin(np.zeros((2, 3), np.int64)), twin.to_twin(np.zeros((4, 3),
                                                                                 np.int64)))


def test_grad_output_shape_checked(twin):
    with pytest.raises(cnnlab.ArgumentError, match="expected grad_output of size"):
        F.linear_backward(twin.to_twin(np.zeros((2, 3))), twin.to_twin(np.zeros((2, 5))),
                          twin.to_twin(np.zeros((4, 5))))


def test_compiled_matmul_refuses_blas_overflow():
    """BLAS takes C int sizes: a product with a side past 2**31 - 1 is refused in Python
    (a zero-copy broadcast view makes the huge operand without allocating it)."""
    if "cython" not in cnnlab.backends():
        pytest.skip("compiled twin not built")
    from cnnlab import _core
    a = np.broadcast_to(np.zeros((1, 1), np.float32), (2**31, 1))
    b = np.zeros((1, 1), np.float32)
    with pytest.raises(cnnlab.ArgumentError, match="rows M = 2147483648 is too large"):
        _core.matmul(a, b, False, False)
