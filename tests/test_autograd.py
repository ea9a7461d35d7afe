"""The autograd's bookkeeping, against torch's: graphs with shared layers and several forwards,
no_grad, retain_graph, detach, accumulation, the errors torch raises. Every test runs on
every placement (nnutil.py)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import cnnlab
from cnnlab import nn
from nnutil import close, copy_weights, np_of, on, placement  # noqa: F401

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(7)
X = RNG.standard_normal((5, 4))


def _pair_linear(placement):
    ours = nn.Linear(4, 4, dtype="float64").to(placement)
    theirs = torch.nn.Linear(4, 4).double()
    copy_weights(ours, theirs)
    return ours, theirs


def test_a_layer_used_twice_gets_both_gradients(placement):
    ours, theirs = _pair_linear(placement)
    model = nn.Sequential(ours, nn.ReLU(), ours)
    ref = torch.nn.Sequential(theirs, torch.nn.ReLU(), theirs)
    model(on(placement, X)).sum().backward()
    ref(torch.from_numpy(X)).sum().backward()
    close(ours.weight.grad, theirs.weight.grad, 1e-12, "weight")
    close(ours.bias.grad, theirs.bias.grad, 1e-12, "bias")
    assert len(list(model.parameters())) == 2  # shared parameters are listed once


def test_two_forwards_before_one_backward(placement):
    """A second forward (say, for logging) must not change the first one's gradients."""
    ours, theirs = _pair_linear(placement)
    x2 = RNG.standard_normal((3, 4))
    first = ours(on(placement, X))
    ours(on(placement, x2)).sum()          # another forward, never backpropagated
    (first * first).sum().backward()
    t_first = theirs(torch.from_numpy(X))
    (t_first * t_first).sum().backward()
    close(ours.weight.grad, theirs.weight.grad, 1e-12, "weight")


def test_two_losses_of_two_forwards_backward_together(placement):
    ours, theirs = _pair_linear(placement)
    x2 = RNG.standard_normal((3, 4))
    loss = ours(on(placement, X)).sum() + (ours(on(placement, x2)) ** 2).mean()
    loss.backward()
    (theirs(torch.from_numpy(X)).sum() + (theirs(torch.from_numpy(x2)) ** 2).mean()).backward()
    close(ours.weight.grad, theirs.weight.grad, 1e-12, "weight")


def test_gradients_accumulate_over_two_backwards(placement):
    ours, theirs = _pair_linear(placement)
    for _ in range(2):
        ours(on(placement, X)).tanh().sum().backward()
        theirs(torch.from_numpy(X)).tanh().sum().backward()
    close(ours.weight.grad, theirs.weight.grad, 1e-12, "accumulated")
    grad = ours.weight.grad
    ours(on(placement, X)).sum().backward()
    assert ours.weight.grad is grad  # accumulated in place, as torch
    ours.zero_grad()
    assert ours.weight.grad is None


def test_backward_through_a_freed_graph_raises_like_torch(placement):
    x = on(placement, X, requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()
    tx = torch.from_numpy(X).requires_grad_()
    ty = (tx * tx).sum()
    ty.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        ty.backward()


def test_retain_graph_allows_a_second_backward(placement):
    x = on(placement, X, requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    tx = torch.from_numpy(X).requires_grad_()
    ty = (tx.exp() * tx).sum()
    ty.backward(retain_graph=True)
    ty.backward()
    close(x.grad, tx.grad, 1e-12, "twice")


def test_a_graph_without_saved_values_can_be_walked_twice(placement):
    """As torch: only nodes that saved tensors refuse a second walk."""
    x = on(placement, X, requires_grad=True)
    y = (x + x).sum()
    y.backward()
    y.backward()
    close(x.grad, np.full(X.shape, 4.0), 0, "x + x twice")


def test_no_grad_records_nothing(placement):
    x = on(placement, X, requires_grad=True)
    with cnnlab.no_grad():
        y = (x * 2).sum()
        assert not cnnlab.is_grad_enabled()
    assert cnnlab.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()

    @cnnlab.no_grad()
    def f(t):
        return t * 3

    assert not f(x).requires_grad and cnnlab.is_grad_enabled()
    with cnnlab.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad
    with cnnlab.no_grad(), cnnlab.enable_grad():
        assert (x * 2).requires_grad


def test_grad_mode_is_per_thread(placement):
    seen = []
    with cnnlab.no_grad():
        t = threading.Thread(target=lambda: seen.append(cnnlab.is_grad_enabled()))
        t.start()
        t.join()
    assert seen == [True]


def test_detach_and_data_stop_the_gradient(placement):
    x = on(placement, X, requires_grad=True)
    y = x * 2
    z = (y.detach() * x).sum()
    z.backward()
    close(x.grad, 2 * X, 1e-12, "through detach only x")
    d = x.data
    assert not d.requires_grad and d.grad_fn is None
    d[0, 0] = 100.0                           # .data shares memory, as torch
    assert float(x[0, 0].item()) == 100.0
    assert y.detach().grad_fn is None and y.grad_fn is not None and not y.is_leaf


def test_leaf_gradients_never_share_memory(placement):
    """x + y sends the same gradient to both; each .grad must own its memory (an in-place
    clip of one must not change the other)."""
    x = on(placement, X, requires_grad=True)
    y = on(placement, X, requires_grad=True)
    (x + y).sum().backward()
    with cnnlab.no_grad():
        x.grad.mul_(0.5)
    close(y.grad, np.ones(X.shape), 0, "y.grad unchanged")
    g = on(placement, np.ones(X.shape))
    z = on(placement, X, requires_grad=True)
    (z + 0).backward(g)
    with cnnlab.no_grad():
        g.mul_(7.0)
    close(z.grad, np.ones(X.shape), 0, "z.grad is not the caller's gradient")


def test_backward_errors_like_torch(placement):
    x = on(placement, X, requires_grad=True)
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        (x * 2).backward()
    with pytest.raises(RuntimeError, match="Mismatch in shape"):
        (x * 2).backward(on(placement, np.ones(3)))
    with pytest.raises(RuntimeError, match="floating point"):
        on(placement, np.arange(3)).requires_grad_()
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        x.add_(1)
    with cnnlab.no_grad():
        x.add_(1)                              # allowed under no_grad, as torch
    with pytest.raises(RuntimeError, match="requires grad"):
        x.numpy()
    assert (x * 2).grad is None                # a non-leaf keeps no .grad


def test_non_scalar_backward_with_a_gradient(placement):
    x = on(placement, X, requires_grad=True)
    g = RNG.standard_normal(X.shape)
    (x.sigmoid() * 3).backward(on(placement, g))
    tx = torch.from_numpy(X).requires_grad_()
    (tx.sigmoid() * 3).backward(torch.from_numpy(g))
    close(x.grad, tx.grad, 1e-12, "weighted")


def test_parameters_and_grads_stay_on_their_device(placement):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).to(placement)
    model(on(placement, X, "float32")).sum().backward()
    for p in model.parameters():
        assert p.device == cnnlab.device(placement) and p.grad.device == p.device
        assert p.grad.dtype == cnnlab.float32


def test_grad_fn_names_the_op(placement):
    x = on(placement, X, requires_grad=True)
    assert "MulBackward" in repr((x * 2).grad_fn)
    assert "grad_fn=<AddBackward0>" in repr(x + 1)
    assert repr(on(placement, np.array([1.5, 2.0]))).startswith("tensor([1.5000, 2.0000]")
