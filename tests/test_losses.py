"""Every loss of cnnlab.nn against torch.nn's: values and gradients (of the input, and of a
probability or float target), for each option, float64, every placement; the stability of
extreme logits; torch's errors."""
from __future__ import annotations

import numpy as np
import pytest

from cnnlab import nn
from nnutil import close, on, placement  # noqa: F401

torch = pytest.importorskip("torch")
tnn = torch.nn

R = np.random.default_rng(4)
LOGITS = R.standard_normal((5, 4)) * 3
LABELS = np.array([3, 0, 1, 1, 2])
SPATIAL = R.standard_normal((2, 3, 2, 2))
SPATIAL_LABELS = np.array([[[0, 2], [1, -100]], [[2, 2], [0, 1]]])
PROBS = R.random((5, 4))
PROBS /= PROBS.sum(1, keepdims=True)
WEIGHT = np.array([0.5, 2.0, 1.0, 1.5])

# name -> (make(nn module namespace, to_tensor), input, target, target differentiable)
CASES = {
    "ce": (lambda m, t: m.CrossEntropyLoss(), LOGITS, LABELS, False),
    "ce-sum": (lambda m, t: m.CrossEntropyLoss(reduction="sum"), LOGITS, LABELS, False),
    "ce-none": (lambda m, t: m.CrossEntropyLoss(reduction="none"), LOGITS, LABELS, False),
    "ce-weight-ignore": (lambda m, t: m.CrossEntropyLoss(weight=t(WEIGHT), ignore_index=1),
                         LOGITS, LABELS, False),
    "ce-smoothing": (lambda m, t: m.CrossEntropyLoss(label_smoothing=0.15), LOGITS, LABELS,
                     False),
    "ce-smoothing-weight-ignore-none": (
        lambda m, t: m.CrossEntropyLoss(weight=t(WEIGHT), ignore_index=0, label_smoothing=0.3,
                                        reduction="none"), LOGITS, LABELS, False),
    "ce-smoothing-weight-mean": (
        lambda m, t: m.CrossEntropyLoss(weight=t(WEIGHT), label_smoothing=0.3), LOGITS, LABELS,
        False),
    "ce-spatial": (lambda m, t: m.CrossEntropyLoss(label_smoothing=0.1), SPATIAL,
                   SPATIAL_LABELS, False),
    "ce-probs": (lambda m, t: m.CrossEntropyLoss(label_smoothing=0.2), LOGITS, PROBS, True),
    "ce-probs-weight-none": (lambda m, t: m.CrossEntropyLoss(weight=t(WEIGHT),
                                                             reduction="none"),
                             LOGITS, PROBS, True),
    "ce-unbatched": (lambda m, t: m.CrossEntropyLoss(), LOGITS[0], np.array(2), False),
    "nll": (lambda m, t: m.NLLLoss(), LOGITS, LABELS, False),
    "nll-weight-ignore-sum": (lambda m, t: m.NLLLoss(weight=t(WEIGHT), ignore_index=3,
                                                     reduction="sum"), LOGITS, LABELS, False),
    "mse": (lambda m, t: m.MSELoss(), LOGITS, PROBS, True),
    "mse-none": (lambda m, t: m.MSELoss(reduction="none"), LOGITS, PROBS, True),
    "bce-logits": (lambda m, t: m.BCEWithLogitsLoss(), LOGITS, PROBS, True),
    "bce-logits-weights": (lambda m, t: m.BCEWithLogitsLoss(weight=t(WEIGHT),
                                                            pos_weight=t(WEIGHT[::-1].copy())),
                           LOGITS * 10, PROBS, True),
    "bce-logits-sum": (lambda m, t: m.BCEWithLogitsLoss(reduction="sum"), LOGITS, PROBS, True),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_matches_torch(placement, name):
    make, x, y, y_grad = CASES[name]
    ours = make(nn, lambda a: on(placement, a))
    theirs = make(tnn, torch.from_numpy)
    ix, iy = on(placement, x, requires_grad=True), on(placement, y, requires_grad=y_grad)
    tx = torch.from_numpy(x).requires_grad_()
    ty = torch.from_numpy(y).requires_grad_(y_grad)
    out, tout = ours(ix, iy), theirs(tx, ty)
    g = np.random.default_rng(1).standard_normal(tuple(tout.shape))
    out.backward(on(placement, g))
    tout.backward(torch.from_numpy(g))
    close(out, tout, 1e-12, "value")
    close(ix.grad, tx.grad, 1e-10, "input grad")
    if y_grad:
        close(iy.grad, ty.grad, 1e-10, "target grad")


def test_extreme_logits_stay_finite(placement):
    x = np.array([[1000.0, -1000.0], [-800.0, 900.0]])
    loss = nn.CrossEntropyLoss()(on(placement, x, requires_grad=True), on(placement, [1, 0]))
    ref = tnn.CrossEntropyLoss()(torch.from_numpy(x), torch.tensor([1, 0]))
    close(loss, ref, 1e-12, "ce")
    bce = nn.BCEWithLogitsLoss()(on(placement, x), on(placement, np.ones((2, 2))))
    tbce = tnn.BCEWithLogitsLoss()(torch.from_numpy(x), torch.ones(2, 2, dtype=torch.float64))
    close(bce, tbce, 1e-12, "bce")


def test_loss_errors_like_torch(placement):
    logits = on(placement, LOGITS)
    with pytest.raises(ValueError, match=r"Expected input batch_size \(5\) to match target "
                                         r"batch_size \(3\)"):
        nn.CrossEntropyLoss()(logits, on(placement, [0, 1, 2]))
    with pytest.raises(ValueError, match="is not a valid value for reduction"):
        nn.CrossEntropyLoss(reduction="avg")
    with pytest.raises(RuntimeError, match="label_smoothing must be between"):
        nn.CrossEntropyLoss(label_smoothing=2.0)(logits, on(placement, LABELS))
    with pytest.raises(ValueError, match="Target size"):
        nn.BCEWithLogitsLoss()(logits, on(placement, np.ones(5)))
    if placement == "cpu":
        with pytest.raises(IndexError, match="Target 7 is out of bounds"):
            nn.CrossEntropyLoss()(logits, on(placement, [0, 1, 7, 0, 1]))
    with pytest.warns(UserWarning, match="different to the input size"):
        nn.MSELoss()(logits, on(placement, np.ones(4)))
