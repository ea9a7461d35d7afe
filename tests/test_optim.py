"""cnnlab.optim against torch.optim: every optimizer and option over several steps (float64
to 1e-10, float32 to 1e-4, every placement), state_dict round trips (also from torch's
optimizer into cnnlab's), and every scheduler's learning rates, which must be torch's
exactly."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import cnnlab
from cnnlab import nn, optim
from nnutil import TOL, close, copy_weights, on, placement  # noqa: F401

torch = pytest.importorskip("torch")

OPTIMIZERS = {
    "sgd": ("SGD", dict(lr=0.1)),
    "sgd-momentum-dampening": ("SGD", dict(lr=0.1, momentum=0.8, dampening=0.3,
                                           weight_decay=0.01)),
    "sgd-nesterov-maximize": ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True,
                                          maximize=True)),
    "adam": ("Adam", dict(lr=0.01)),
    "adam-l2-amsgrad": ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1,
                                     amsgrad=True)),
    "adam-decoupled": ("Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    "adamw": ("AdamW", dict(lr=0.01)),
    "adamw-amsgrad-maximize": ("AdamW", dict(lr=0.02, weight_decay=0.3, amsgrad=True,
                                             maximize=True)),
    "rmsprop": ("RMSprop", dict()),
    "rmsprop-centered-momentum": ("RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.5,
                                                  centered=True, weight_decay=0.05)),
}


def _models(placement, dtype):
    ours = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    copy_weights(ours, theirs)
    ours.to(placement, getattr(cnnlab, dtype))
    theirs.to(getattr(torch, dtype))
    return ours, theirs


def _step(model, opt, x, y, lib):
    opt.zero_grad()
    out = model(x)
    loss = ((out - y) ** 2).mean() + out.sigmoid().sum() * 0.1
    loss.backward()
    opt.step()


def _batches(dtype, n=4):
    rng = np.random.default_rng(9)
    return [(rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal((3, 2))
             .astype(dtype)) for _ in range(n)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_matches_torch(placement, name, dtype):
    cls, kwargs = OPTIMIZERS[name]
    ours, theirs = _models(placement, dtype)
    o = getattr(optim, cls)(ours.parameters(), **kwargs)
    t = getattr(torch.optim, cls)(theirs.parameters(), **kwargs)
    for x, y in _batches(dtype):
        _step(ours, o, on(placement, x), on(placement, y), cnnlab)
        _step(theirs, t, torch.from_numpy(x), torch.from_numpy(y), torch)
    for (n, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        close(p, q, TOL[dtype], f"{name} {n}")
        assert p.device == cnnlab.device(placement)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        for key, value in t.state[q].items():
            if key != "step" and value is not None:
                close(o.state[p][key], value, TOL[dtype], f"state {key}")


def test_parameter_groups_and_repr():
    ours = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    o = optim.SGD([{"params": ours[0].parameters()},
                   {"params": ours[1].parameters(), "lr": 0.5}], lr=0.1, momentum=0.9)
    assert [g["lr"] for g in o.param_groups] == [0.1, 0.5]
    assert repr(o).startswith("SGD (\nParameter Group 0\n    dampening: 0\n")
    with pytest.raises(ValueError, match="more than one parameter group"):
        o.add_param_group({"params": ours[0].weight})
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    for cls, kwargs in [(optim.Adam, {"lr": -1.0}), (optim.Adam, {"betas": (1.0, 0.9)}),
                        (optim.SGD, {"momentum": -0.1}), (optim.SGD, {"nesterov": True}),
                        (optim.RMSprop, {"alpha": -1.0})]:
        with pytest.raises(ValueError):
            cls(ours.parameters(), **kwargs)


@pytest.mark.parametrize("cls", ["SGD", "Adam", "RMSprop"])
def test_state_dict_round_trip_continues_exactly(placement, cls):
    kwargs = {"SGD": dict(lr=0.1, momentum=0.9), "Adam": dict(lr=0.01, amsgrad=True),
              "RMSprop": dict(lr=0.01, centered=True, momentum=0.3)}[cls]
    batches = _batches("float64", 4)
    straight, _ = _models(placement, "float64")
    resumed = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    o = getattr(optim, cls)(straight.parameters(), **kwargs)
    for x, y in batches[:2]:
        _step(straight, o, on(placement, x), on(placement, y), cnnlab)
    resumed.load_state_dict(straight.state_dict())
    resumed.to(placement)
    r = getattr(optim, cls)(resumed.parameters(), **kwargs)
    state = o.state_dict()
    assert set(state) == {"state", "param_groups"} and state["param_groups"][0]["params"] == \
        [0, 1, 2, 3]
    r.load_state_dict(state)
    for x, y in batches[2:]:
        _step(straight, o, on(placement, x), on(placement, y), cnnlab)
        _step(resumed, r, on(placement, x), on(placement, y), cnnlab)
    for p, q in zip(straight.parameters(), resumed.parameters()):
        close(p, q, 0, "resumed")


def test_torch_optimizer_state_loads_into_cnnlab(placement):
    batches = _batches("float64", 4)
    ours, theirs = _models(placement, "float64")
    t = torch.optim.Adam(theirs.parameters(), lr=0.01)
    for x, y in batches[:2]:
        _step(theirs, t, torch.from_numpy(x), torch.from_numpy(y), torch)
    copy_weights(ours, theirs)
    o = optim.Adam(ours.parameters(), lr=0.01)
    o.load_state_dict(t.state_dict())
    for x, y in batches[2:]:
        _step(theirs, t, torch.from_numpy(x), torch.from_numpy(y), torch)
        _step(ours, o, on(placement, x), on(placement, y), cnnlab)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        close(p, q, 1e-10, "continued from torch's state")


SCHEDULERS = {
    "step": ("StepLR", dict(step_size=3, gamma=0.5)),
    "multistep": ("MultiStepLR", dict(milestones=[2, 5, 5, 9], gamma=0.3)),
    "exponential": ("ExponentialLR", dict(gamma=0.9)),
    "cosine": ("CosineAnnealingLR", dict(T_max=7, eta_min=0.001)),
    "onecycle-sgd": ("OneCycleLR", dict(max_lr=0.5, total_steps=20)),
    "onecycle-adam-linear-3phase": ("OneCycleLR", dict(max_lr=[0.1], epochs=4,
                                                       steps_per_epoch=5, pct_start=0.25,
                                                       anneal_strategy="linear",
                                                       three_phase=True)),
}


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_scheduler_gives_torchs_learning_rates(name):
    cls, kwargs = SCHEDULERS[name]
    opt_cls = "Adam" if "adam" in name else "SGD"
    extra = {"momentum": 0.9} if opt_cls == "SGD" else {}
    ours = getattr(optim, opt_cls)(nn.Linear(2, 1).parameters(), lr=0.1, **extra)
    theirs = getattr(torch.optim, opt_cls)(torch.nn.Linear(2, 1).parameters(), lr=0.1, **extra)
    s = getattr(optim.lr_scheduler, cls)(ours, **kwargs)
    ts = getattr(torch.optim.lr_scheduler, cls)(theirs, **kwargs)
    rates, t_rates = [s.get_last_lr()], [ts.get_last_lr()]
    steps = 19 if cls == "OneCycleLR" else 25
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no optimizer.step() here: torch warns, so do we
        for _ in range(steps):
            s.step()
            ts.step()
            rates.append(s.get_last_lr())
            t_rates.append(ts.get_last_lr())
            for key in ("momentum", "betas"):
                if key in ours.param_groups[0]:
                    assert ours.param_groups[0][key] == theirs.param_groups[0][key]
    assert rates == t_rates


def test_scheduler_state_dict_and_closed_form():
    ours = optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1)
    s = optim.lr_scheduler.CosineAnnealingLR(ours, T_max=10)
    theirs = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    ts = torch.optim.lr_scheduler.CosineAnnealingLR(theirs, T_max=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(3):
            s.step()
            ts.step()
        state = s.state_dict()
        assert "optimizer" not in state and state["last_epoch"] == 3
        s.step(7)
        ts.step(7)
    assert s.get_last_lr() == ts.get_last_lr()
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        optim.lr_scheduler.StepLR(optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1), 2).step()
