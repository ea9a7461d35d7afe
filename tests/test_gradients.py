"""Gradients checked against finite differences, and the adjoint identity of the two convs.

For every op and every input (input, weight, bias) the backward function must equal the
central difference of ``L = sum(op(...) * G)`` for a random ``G``, in float64 with
torch's gradcheck defaults (eps=1e-6, atol=1e-5, rtol=1e-3). This runs on every twin and
on ``cnnlab.reference`` itself. Max pooling gets distinct values 0.01 apart so a step of
eps never changes which element is the maximum.
"""
from __future__ import annotations

import numpy as np
import pytest

from cnnlab import functional as F
from cnnlab import reference as R

EPS, ATOL, RTOL = 1e-6, 1e-5, 1e-3


def numerical_grad(loss, a):
    """d loss() / d a by central differences; ``a`` is perturbed in place and restored."""
    grad = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + EPS
        up = loss()
        a[i] = old - EPS
        down = loss()
        a[i] = old
        grad[i] = (up - down) / (2 * EPS)
    return grad


class Api:
    """An op table (cnnlab.functional or cnnlab.reference) plus how to feed it."""

    def __init__(self, module, to_twin=lambda a: a, to_numpy=lambda r: r):
        self.module, self.to_twin, self.to_numpy = module, to_twin, to_numpy

    def __call__(self, name, *arrays, **kw):
        """Call ``module.name`` on NumPy operands (None allowed); results come back as NumPy."""
        fn = getattr(self.module, name)
        return self.to_numpy(fn(*[self.to_twin(a) for a in arrays], **kw))


# Each case: op name, operand shapes (input, weight or None, bias or None), keyword args.
CASES = [
    ("conv2d", (2, 2, 5, 4), (4, 1, 3, 2), (4,), dict(stride=(2, 1), padding=1, groups=2)),
    ("conv2d", (1, 3, 5, 5), (2, 3, 2, 2), (2,), dict(padding="same", dilation=2)),
    ("conv2d", (3, 4, 5), (2, 3, 3, 3), (2,), dict(stride=2)),              # unbatched
    ("conv_transpose2d", (2, 2, 3, 3), (2, 2, 3, 2), (4,),
     dict(stride=2, padding=1, output_padding=1, groups=2)),
    ("conv_transpose2d", (1, 2, 3, 2), (2, 1, 2, 3), (1,), dict(dilation=(2, 1), stride=(1, 2))),
    ("max_pool2d", (2, 2, 5, 6), None, None, dict(kernel_size=3, stride=2, padding=1,
                                                   ceil_mode=True)),
    ("max_pool2d", (1, 2, 6, 5), None, None, dict(kernel_size=2, stride=3, dilation=(2, 1))),
    ("avg_pool2d", (2, 2, 5, 6), None, None, dict(kernel_size=3, stride=2, padding=1,
                                                   ceil_mode=True, count_include_pad=False)),
    ("avg_pool2d", (1, 2, 5, 5), None, None, dict(kernel_size=(2, 3), padding=1,
                                                   divisor_override=4)),
    ("linear", (4, 5), (3, 5), (3,), {}),
    ("linear", (2, 3, 4), (2, 4), (2,), {}),                                  # (*, in)
    ("linear", (5,), (3, 5), (3,), {}),                                       # 1-D input
]
IDS = [f"{c[0]}-{i}" for i, c in enumerate(CASES)]


def check_against_finite_differences(api, case, rng):
    op, x_shape, w_shape, b_shape, kw = case
    n = int(np.prod(x_shape))
    if op == "max_pool2d":      # distinct values, 0.01 apart: eps cannot reorder them
        x = rng.permutation(n).reshape(x_shape) * 0.01
    else:
        x = rng.standard_normal(x_shape)
    w = None if w_shape is None else rng.standard_normal(w_shape)
    b = None if b_shape is None else rng.standard_normal(b_shape)
    operands = [a for a in (x, w, b) if a is not None]

    y = api(op, *operands, **kw)
    g = rng.standard_normal(y.shape)

    def loss():
        return float(np.sum(api(op, *operands, **kw) * g))

    grads = api(op + "_backward", g, *operands[:2], **kw)
    grads = grads if isinstance(grads, tuple) else (grads,)
    assert len(grads) == (3 if w is not None else 1)
    for name, a, analytic in zip(("input", "weight", "bias"), operands, grads):
        assert analytic.shape == a.shape, name
        np.testing.assert_allclose(analytic, numerical_grad(loss, a), rtol=RTOL, atol=ATOL,
                                   err_msg=f"{op}: gradient of {name}")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_finite_differences(twin, case, rng):
    check_against_finite_differences(Api(F, twin.to_twin, twin.to_numpy), case, rng)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_finite_differences_reference(case, rng):
    check_against_finite_differences(Api(R), case, rng)


# --------------------------------------------------------------------------- adjoint identity

ADJOINT = [
    # input shape, weight shape, stride, padding, dilation, groups
    ((2, 3, 7, 6), (4, 3, 3, 3), 1, 0, 1, 1),
    ((2, 3, 8, 7), (4, 3, 3, 2), 2, 1, 1, 1),
    ((1, 4, 9, 9), (6, 2, 3, 3), (2, 3), (1, 0), (2, 1), 2),
    ((2, 4, 6, 7), (4, 1, 3, 3), 3, 1, 1, 4),            # depthwise, stride > kernel
    ((1, 2, 10, 8), (3, 2, 2, 2), 1, 1, (3, 2), 1),
]


def _pair(v):
    return (v, v) if isinstance(v, int) else v


def _adjoint_output_padding(x_shape, y_shape, w_shape, stride, padding, dilation):
    """output_padding making conv_transpose2d's output exactly x's (H, W)."""
    return tuple(
        h - ((ho - 1) * s - 2 * p + d * (k - 1) + 1)
        for h, ho, k, s, p, d in zip(x_shape[-2:], y_shape[-2:], w_shape[-2:], _pair(stride),
                                     _pair(padding), _pair(dilation)))


def check_adjoint(api, case, rng):
    x_shape, w_shape, stride, padding, dilation, groups = case
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    ax = api("conv2d", x, w, **kw)
    y = rng.standard_normal(ax.shape)
    op = _adjoint_output_padding(x_shape, y.shape, w_shape, stride, padding, dilation)
    aty = api("conv_transpose2d", y, w, output_padding=op, **kw)
    assert aty.shape == x.shape
    lhs, rhs = np.vdot(ax, y), np.vdot(x, aty)
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("case", ADJOINT)
def test_adjoint_identity(twin, case, rng):
    """<conv2d(x, w), y> == <x, conv_transpose2d(y, w)>."""
    check_adjoint(Api(F, twin.to_twin, twin.to_numpy), case, rng)


@pytest.mark.parametrize("case", ADJOINT)
def test_adjoint_identity_reference(case, rng):
    """The reference's two convs are written independently (a window sum and a scatter),
    so their adjointness is a real check of both."""
    check_adjoint(Api(R), case, rng)
