"""The two lab networks in cnnlab and in torch, given the same weights and batches, produce
the same logits, loss and gradients, and stay together over several Adam and SGD steps
(float64 within 1e-10, float32 within 1e-4, relative to each array's largest value).

The torch networks are written here from the issue's description (layer by layer, sizes by
hand), and torch's own autograd and torch.optim are the reference.
"""
from __future__ import annotations

import numpy as np
import pytest

import cnnlab
from cnnlab import data, layers, models, optim

torch = pytest.importorskip("torch")
nn = torch.nn

NUMPY_BACKENDS = [b for b in cnnlab.backends() if b != "torch"]
FAMILIES = [pytest.param((b, None), id=b) for b in NUMPY_BACKENDS] + \
    [pytest.param(("torch", "cpu"), id="torch-tensors")]
if torch.cuda.is_available():
    FAMILIES.append(pytest.param(("torch", "cuda"), id="torch-cuda"))
TOL = {"float64": 1e-10, "float32": 1e-4}
# (arch, channels, image_size, classes): the bundled format, and another one
CONFIGS = [("lab", 1, 28, 2), ("simple", 1, 28, 2), ("lab", 3, 20, 3), ("simple", 3, 17, 4)]


def torch_simple(c, s, k):
    pooled = (s + 2 * 2 - 3 + 1) // 2            # conv 3x3 pad 2 -> s + 2, pool 2/2
    return nn.Sequential(nn.Conv2d(c, 16, 3, stride=1, padding=2), nn.ReLU(),
                         nn.MaxPool2d(2, 2), nn.Flatten(), nn.Linear(16 * pooled ** 2, k))


def torch_lab(c, s, k):
    blocks, ch = [], c
    for out in (16, 32, 64):
        blocks += [nn.Conv2d(ch, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2)]
        ch = out
    side = s // 2 // 2 // 2                       # conv pad 1 keeps the size
    return nn.Sequential(*blocks, nn.Flatten(), nn.Linear(64 * side ** 2, 128), nn.ReLU(),
                         nn.Linear(128, k))


TORCH_NETS = {"simple": torch_simple, "lab": torch_lab}


def _np(a):
    return a.detach().cpu().numpy() if torch.is_tensor(a) else np.asarray(a)


def _close(ours, ref, tol, what):
    ours, ref = _np(ours), _np(ref)
    assert ours.shape == ref.shape, what
    scale = max(float(np.abs(ref).max()), 1e-30)
    err = float(np.abs(ours.astype(np.float64) - ref).max()) / scale
    assert err <= tol, f"{what}: relative error {err:.3g} > {tol}"


def _batches(channels, size, classes, dtype, n_batches=4, batch=6):
    """Real silhouettes (resized / repeated as the data module does), real labels
    folded onto ``classes`` classes."""
    x, y, _ = data.bundled(size, channels)
    rng = np.random.default_rng(0)
    idx = rng.choice(len(y), n_batches * batch, replace=False)
    xs = data.normalize(x[idx], dtype).reshape(n_batches, batch, channels, size, size)
    ys = (y[idx] + np.arange(len(idx))) % classes
    return xs, ys.reshape(n_batches, batch)


@pytest.fixture(params=FAMILIES)
def family(request):
    backend, device = request.param
    with cnnlab.use_backend(backend):
        yield device


def _pair(arch, c, s, k, dtype, device):
    ours = models.build(arch, c, s, k, rng=11, dtype=dtype)
    theirs = TORCH_NETS[arch](c, s, k).to(getattr(torch, dtype))
    # the parameter names agree one to one (torch's state_dict keys)
    theirs.load_state_dict({n: torch.from_numpy(v) for n, v in ours.state_dict().items()})
    ours.to(device if device is not None else "numpy")
    return ours, theirs


def _feed(a, device):
    return a if device is None else torch.from_numpy(np.ascontiguousarray(a)).to(device)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c[0]}-{c[1]}x{c[2]}-k{c[3]}")
def test_logits_loss_gradients_match_torch(family, config, dtype):
    arch, c, s, k = config
    ours, theirs = _pair(arch, c, s, k, dtype, family)
    xs, ys = _batches(c, s, k, dtype)
    loss = layers.CrossEntropyLoss()
    logits = ours(_feed(xs[0], family))
    value = loss(logits, _feed(ys[0], family))
    ours.backward(loss.backward())
    t_logits = theirs(torch.from_numpy(xs[0]))
    t_value = nn.functional.cross_entropy(t_logits, torch.from_numpy(ys[0]))
    t_value.backward()
    tol = TOL[dtype]
    _close(logits, t_logits, tol, "logits")
    _close(np.float64(float(value)), np.float64(t_value.item()), tol, "loss")
    t_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        _close(p.grad, t_params[name].grad, tol, f"grad {name}")


@pytest.mark.parametrize("opt", ["adam", "sgd"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("config", CONFIGS[:2], ids=lambda c: c[0])
def test_training_steps_stay_with_torch(family, config, dtype, opt):
    arch, c, s, k = config
    ours, theirs = _pair(arch, c, s, k, dtype, family)
    if opt == "adam":
        # Adam's first steps move every weight by about lr whatever the gradient's size
        # (m / sqrt(v) = sign(g)), so float32 round-off in a tiny gradient shows up at the
        # scale of lr: torch float32 itself is ~4e-5 (relative) from torch float64 here.
        o = optim.Adam(ours.parameters(), lr=1e-3, weight_decay=1e-4)
        t = torch.optim.Adam(theirs.parameters(), lr=1e-3, weight_decay=1e-4)
    else:
        o = optim.SGD(ours.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3,
                      nesterov=True)
        t = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3,
                            nesterov=True)
    xs, ys = _batches(c, s, k, dtype)
    loss = layers.CrossEntropyLoss()
    tol = TOL[dtype]
    for step, (x, y) in enumerate(zip(xs, ys)):
        o.zero_grad()
        value = loss(ours(_feed(x, family)), _feed(y, family))
        ours.backward(loss.backward())
        o.step()
        t.zero_grad()
        t_value = nn.functional.cross_entropy(theirs(torch.from_numpy(x)), torch.from_numpy(y))
        t_value.backward()
        t.step()
        _close(np.float64(float(value)), np.float64(t_value.item()), tol, f"loss {step}")
        t_params = dict(theirs.named_parameters())
        for name, p in ours.named_parameters():
            _close(p.data, t_params[name], tol, f"step {step} {name}")
            if family is not None:
                assert p.data.device.type == family  # stays on its device


def test_sgd_plain_and_momentum_first_step_match_torch():
    """Defaults (momentum 0) and dampening, float64, on a Linear layer."""
    for kwargs in ({"lr": 0.1}, {"lr": 0.1, "momentum": 0.5, "dampening": 0.3}):
        lin = layers.Linear(4, 3, rng=0, dtype=np.float64)
        ref = nn.Linear(4, 3).double()
        ref.load_state_dict({n: torch.from_numpy(v) for n, v in lin.state_dict().items()})
        o, t = optim.SGD(lin.parameters(), **kwargs), torch.optim.SGD(ref.parameters(), **kwargs)
        x = np.random.default_rng(1).standard_normal((5, 4))
        for _ in range(3):
            o.zero_grad()
            lin(x)
            lin.backward(np.ones((5, 3)))
            o.step()
            t.zero_grad()
            ref(torch.from_numpy(x)).sum().backward()
            t.step()
        _close(lin.weight.data, ref.weight, 1e-12, str(kwargs))


def test_adam_amsgrad_matches_torch():
    lin = layers.Linear(4, 2, rng=0, dtype=np.float64)
    ref = nn.Linear(4, 2).double()
    ref.load_state_dict({n: torch.from_numpy(v) for n, v in lin.state_dict().items()})
    o = optim.Adam(lin.parameters(), lr=0.01, amsgrad=True)
    t = torch.optim.Adam(ref.parameters(), lr=0.01, amsgrad=True)
    rng = np.random.default_rng(2)
    for _ in range(4):
        x, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 2))
        o.zero_grad()
        lin(x)
        lin.backward(g)
        o.step()
        t.zero_grad()
        ref(torch.from_numpy(x)).backward(torch.from_numpy(g))
        t.step()
    _close(lin.weight.data, ref.weight, 1e-10, "amsgrad")


def test_optimizer_argument_errors_like_torch():
    p = layers.Linear(2, 2, rng=0).parameters()
    for make, kwargs in [(optim.Adam, {"lr": -1.0}), (optim.Adam, {"betas": (1.0, 0.9)}),
                         (optim.SGD, {"momentum": -0.1}), (optim.SGD, {"nesterov": True})]:
        with pytest.raises(ValueError):
            make(p, **kwargs)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([])


def test_build_errors():
    with pytest.raises(ValueError, match="unknown architecture 'vgg'"):
        models.build("vgg")
    with pytest.raises(ValueError, match="too small"):
        models.build("lab", image_size=4)
    with pytest.raises(ValueError, match="channels must be a positive integer"):
        models.build("simple", channels=0)
