"""Every differentiable op of cnnlab's autograd against central finite differences, in
float64, on every placement (nnutil.py): torch's gradcheck recipe (eps 1e-6, atol 1e-5,
rtol 1e-3) written out, with the backward of ``sum(f(x) * G)`` for a random G as the
analytic side. Inputs keep away from kinks and ties (relu at 0, a max's runner-up)."""
from __future__ import annotations

import numpy as np
import pytest

import cnnlab
import cnnlab.nn.functional as F
from nnutil import np_of, on, placement  # noqa: F401

EPS, ATOL, RTOL = 1e-6, 1e-5, 1e-3


def _away(shape, seed, low=0.2):
    """Values with |v| >= low, all distinct (no kinks, no ties)."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    v = (low + rng.permutation(n) / n) * rng.choice([-1.0, 1.0], n)
    return v.reshape(shape)


def _positive(shape, seed):
    return 0.5 + np.random.default_rng(seed).random(shape)


def _normal(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


def _gen():
    return cnnlab.Generator().manual_seed(3)


# name -> (f(device, *tensors) -> Tensor, [input arrays])
CASES = {
    "add-broadcast": (lambda d, a, b: a + b, [_normal((3, 4), 0), _normal((4,), 1)]),
    "sub-broadcast": (lambda d, a, b: a - b, [_normal((3, 1), 0), _normal((1, 4), 1)]),
    "rsub-number": (lambda d, a: 2.5 - a, [_normal((2, 3), 0)]),
    "mul-broadcast": (lambda d, a, b: a * b, [_normal((2, 3), 0), _normal((3,), 1)]),
    "div": (lambda d, a, b: a / b, [_normal((2, 3), 0), _positive((2, 3), 1)]),
    "rdiv-number": (lambda d, a: 1.5 / a, [_positive((4,), 0)]),
    "pow-number": (lambda d, a: a ** 3 + a ** 0.5, [_positive((2, 3), 0)]),
    "rpow-number": (lambda d, a: 2.0 ** a, [_normal((5,), 0)]),
    "pow-tensor": (lambda d, a, b: a ** b, [_positive((2, 3), 0), _normal((2, 3), 1)]),
    "neg": (lambda d, a: -a, [_normal((3,), 0)]),
    "exp": (lambda d, a: a.exp(), [_normal((2, 3), 0)]),
    "log": (lambda d, a: a.log(), [_positive((2, 3), 0)]),
    "sqrt": (lambda d, a: a.sqrt(), [_positive((2, 3), 0)]),
    "abs": (lambda d, a: a.abs(), [_away((2, 3), 0)]),
    "relu": (lambda d, a: F.relu(a), [_away((3, 4), 0)]),
    "leaky_relu": (lambda d, a: F.leaky_relu(a, 0.1), [_away((3, 4), 0)]),
    "sigmoid": (lambda d, a: a.sigmoid(), [_normal((3, 4), 0)]),
    "tanh": (lambda d, a: a.tanh(), [_normal((3, 4), 0)]),
    "clamp": (lambda d, a: a.clamp(-0.5, 0.6), [_away((3, 4), 0, 0.0) * 1.3]),
    "maximum": (lambda d, a, b: cnnlab.maximum(a, b), [_away((3, 4), 0), _away((3, 4), 1)]),
    "minimum": (lambda d, a, b: cnnlab.minimum(a, b), [_away((3, 4), 0), _away((3, 4), 1)]),
    "where": (lambda d, a, b: cnnlab.where(a > 0, a, b), [_away((3, 4), 0), _normal((4,), 1)]),
    "sum": (lambda d, a: a.sum() + a.sum(1).sum() + (a.sum((0, 2), keepdim=True) ** 2).sum(),
            [_normal((2, 3, 2), 0)]),
    "mean": (lambda d, a: a.mean(1) * a.mean(), [_normal((2, 3), 0)]),
    "var-std": (lambda d, a: a.var(1) + a.std(), [_normal((3, 4), 0)]),
    "max-dim": (lambda d, a: a.max(1).values + a.max(0, keepdim=True)[0].sum(),
                [_away((3, 4), 0)]),
    "max-min-all": (lambda d, a: a.max() * a.min(), [_away((3, 4), 0)]),
    "min-dim": (lambda d, a: cnnlab.min(a, 0).values, [_away((3, 4), 0)]),
    "view-reshape": (lambda d, a: a.view(6, 2).reshape(3, -1).flatten(), [_normal((2, 6), 0)]),
    "permute-transpose": (lambda d, a: a.permute(2, 0, 1).transpose(0, 2) * 2,
                          [_normal((2, 3, 4), 0)]),
    "t-T": (lambda d, a: a.t() @ a.T.t(), [_normal((3, 2), 0)]),
    "squeeze-unsqueeze": (lambda d, a: a.unsqueeze(0).unsqueeze(-1).squeeze(), [_normal((3,), 0)]),
    "expand": (lambda d, a: a.expand(3, 2, 4) * 1.5, [_normal((2, 1), 0)]),
    "index-basic": (lambda d, a: a[1:, ::2] + a[0, 1], [_normal((3, 4), 0)]),
    "index-repeated": (lambda d, a: a[[0, 0, 2]] * 2, [_normal((3, 4), 0)]),
    "index-tensor": (lambda d, a: a[cnnlab.tensor([2, 2, 1], device=d)], [_normal((3, 4), 0)]),
    "index-mask": (lambda d, a: a[a > 0], [_away((3, 4), 0)]),
    "index-mixed": (lambda d, a: a[:, [1, 1, 3]], [_normal((3, 4), 0)]),
    "cat": (lambda d, a, b: cnnlab.cat([a, b, a], dim=1), [_normal((2, 2), 0), _normal((2, 3), 1)]),
    "stack": (lambda d, a, b: cnnlab.stack([a, b], dim=-1), [_normal((2, 3), 0), _normal((2, 3), 1)]),
    "matmul-2d": (lambda d, a, b: a @ b, [_normal((3, 4), 0), _normal((4, 2), 1)]),
    "matmul-batched": (lambda d, a, b: a @ b, [_normal((2, 3, 4), 0), _normal((4, 2), 1)]),
    "matmul-vector": (lambda d, a, b: a @ b, [_normal((4,), 0), _normal((4, 2), 1)]),
    "matmul-dot": (lambda d, a, b: a @ b, [_normal((4,), 0), _normal((4,), 1)]),
    "linear": (lambda d, x, w, b: F.linear(x, w, b),
               [_normal((3, 4), 0), _normal((2, 4), 1), _normal((2,), 2)]),
    "linear-3d-nobias": (lambda d, x, w: F.linear(x, w), [_normal((2, 3, 4), 0), _normal((2, 4), 1)]),
    "conv2d": (lambda d, x, w, b: F.conv2d(x, w, b, stride=2, padding=1, dilation=1, groups=2),
               [_normal((2, 4, 5, 4), 0), _normal((4, 2, 3, 2), 1), _normal((4,), 2)]),
    "conv2d-same-dilated": (lambda d, x, w: F.conv2d(x, w, padding="same", dilation=2),
                            [_normal((1, 2, 5, 5), 0), _normal((3, 2, 2, 3), 1)]),
    "conv_transpose2d": (lambda d, x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1,
                                                              output_padding=1),
                         [_normal((1, 2, 3, 3), 0), _normal((2, 3, 3, 3), 1), _normal((3,), 2)]),
    "max_pool2d": (lambda d, x: F.max_pool2d(x, 3, 2, padding=1), [_away((2, 2, 5, 5), 0)]),
    "max_pool2d-ceil": (lambda d, x: F.max_pool2d(x, 2, ceil_mode=True), [_away((1, 2, 5, 5), 0)]),
    "avg_pool2d": (lambda d, x: F.avg_pool2d(x, 3, 2, padding=1, count_include_pad=False,
                                             ceil_mode=True), [_normal((2, 2, 5, 6), 0)]),
    "adaptive_avg_pool2d-even": (lambda d, x: F.adaptive_avg_pool2d(x, 2), [_normal((1, 2, 4, 6), 0)]),
    "adaptive_avg_pool2d-uneven": (lambda d, x: F.adaptive_avg_pool2d(x, (3, 2)),
                                   [_normal((2, 2, 5, 5), 0)]),
    "batch_norm-train": (lambda d, x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                         [_normal((3, 2, 2, 3), 0), _normal((2,), 1), _normal((2,), 2)]),
    "batch_norm-train-2d-noaffine": (lambda d, x: F.batch_norm(x, None, None, training=True),
                                     [_normal((5, 3), 0)]),
    "batch_norm-eval": (lambda d, x, w, b: F.batch_norm(
        x, on(d, [0.1, -0.2]), on(d, [1.5, 0.7]), w, b, training=False),
        [_normal((2, 2, 3, 2), 0), _normal((2,), 1), _normal((2,), 2)]),
    "softmax": (lambda d, x: F.softmax(x, dim=1) + x.softmax(0), [_normal((3, 4), 0)]),
    "log_softmax": (lambda d, x: F.log_softmax(x, dim=-1), [_normal((2, 3, 4), 0)]),
    "cross_entropy": (lambda d, x: F.cross_entropy(x, on(d, [2, 0, 1])), [_normal((3, 4), 0)]),
    "cross_entropy-options": (lambda d, x: F.cross_entropy(
        x, on(d, [2, -100, 1, 3]), weight=on(d, [0.5, 1.0, 2.0, 1.5]), label_smoothing=0.2),
        [_normal((4, 4), 0)]),
    "cross_entropy-probs": (lambda d, x, p: F.cross_entropy(x, p.softmax(1), label_smoothing=0.1),
                            [_normal((3, 4), 0), _normal((3, 4), 1)]),
    "cross_entropy-spatial-none": (lambda d, x: F.cross_entropy(
        x, on(d, [[[0, 2], [1, 1]]]), reduction="none"), [_normal((1, 3, 2, 2), 0)]),
    "cross_entropy-sum-unbatched": (lambda d, x: F.cross_entropy(x, on(d, np.array(1)),
                                                                reduction="sum"),
                                    [_normal((4,), 0)]),
    "nll_loss": (lambda d, x: F.nll_loss(x.log_softmax(1), on(d, [1, 0, 2]),
                                         weight=on(d, [1.0, 2.0, 0.5])), [_normal((3, 3), 0)]),
    "mse_loss": (lambda d, x, y: F.mse_loss(x, y) + F.mse_loss(x, y, reduction="sum"),
                 [_normal((3, 4), 0), _normal((3, 4), 1)]),
    "bce_with_logits": (lambda d, x, y: F.binary_cross_entropy_with_logits(
        x, y.sigmoid(), weight=on(d, [1.0, 0.5, 2.0]), pos_weight=on(d, [2.0, 1.0, 0.3])),
        [_normal((2, 3), 0) * 3, _normal((2, 3), 1)]),
    "dropout": (lambda d, x: F.dropout(x, 0.4, generator=_gen()), [_normal((4, 5), 0)]),
    "clone": (lambda d, x: x.clone() * x, [_normal((3,), 0)]),
}
if "torch" in cnnlab.backends():
    CASES["to-other-family"] = (
        lambda d, x: x.to("torch:cpu" if d == "cpu" else "cpu").exp().to(d),
        [_normal((2, 3), 0)])


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_finite_differences(placement, name):
    f, arrays = CASES[name]
    with cnnlab.no_grad():
        shape = f(placement, *[on(placement, a) for a in arrays]).shape
    g = np.random.default_rng(11).standard_normal(tuple(shape))
    tensors = [on(placement, a, requires_grad=True) for a in arrays]
    (f(placement, *tensors) * on(placement, g)).sum().backward()
    for i, a in enumerate(arrays):
        numeric = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            values = []
            for step in (EPS, -EPS):
                moved = [b.copy() for b in arrays]
                moved[i][idx] += step
                with cnnlab.no_grad():
                    out = f(placement, *[on(placement, b) for b in moved])
                values.append((np_of(out) * g).sum())
            numeric[idx] = (values[0] - values[1]) / (2 * EPS)
        analytic = np_of(tensors[i].grad)
        assert tensors[i].grad.dtype == cnnlab.float64
        np.testing.assert_allclose(analytic, numeric, rtol=RTOL, atol=ATOL,
                                   err_msg=f"{name}: input {i}")


def test_conv2d_backward_output_mask_skips_gradients(twin):
    """functional.conv2d_backward(output_mask=...) returns None for the skipped gradients and
    the same values for the others (the autograd uses it for a first layer)."""
    from cnnlab import functional as AF
    rng = np.random.default_rng(2)
    x, w = twin.to_twin(rng.standard_normal((2, 4, 6, 5))), \
        twin.to_twin(rng.standard_normal((6, 2, 3, 3)))
    g = twin.to_twin(rng.standard_normal((2, 6, 3, 3)))
    full = twin.to_numpy(AF.conv2d_backward(g, x, w, stride=2, padding=1, groups=2))
    for mask in [(False, True, False), (True, False, True), (False, False, True)]:
        got = AF.conv2d_backward(g, x, w, stride=2, padding=1, groups=2, output_mask=mask)
        for want, a, e in zip(mask, got, full):
            if want:
                np.testing.assert_array_equal(twin.to_numpy(a), e)
            else:
                assert a is None


def test_first_layer_gets_no_input_gradient(placement):
    conv = cnnlab.nn.Conv2d(2, 3, 3).double().to(placement)
    x = on(placement, _normal((1, 2, 5, 5), 0))
    conv(x).sum().backward()
    assert x.grad is None and conv.weight.grad is not None and conv.bias.grad is not None
