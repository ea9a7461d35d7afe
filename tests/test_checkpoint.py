"""cnnlab.checkpoint: round trip, torch reading the weights, atomic writes, and one clear
error for each damaged entry. Crafted files that could eat memory are in
tests/test_checkpoint_crafted.py (child processes with a memory limit)."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

import cnnlab
from cnnlab import checkpoint, imagestats, models, nn, optim, serialization
from cnnlab.checkpoint import CheckpointError


def _trained(arch="simple", dtype=np.float32, steps=2, make=optim.Adam, **kwargs):
    """A model and an optimizer (Adam) after a few steps (so every buffer is set)."""
    model = models.build(arch, 1, 12, 3, generator=0, dtype=dtype)
    opt = make(model.parameters(), **(kwargs or {"lr": 1e-2}))
    loss = nn.CrossEntropyLoss()
    rng = np.random.default_rng(1)
    for _ in range(steps):
        opt.zero_grad()
        x = cnnlab.from_numpy(rng.random((4, 1, 12, 12)).astype(dtype))
        loss(model(x), cnnlab.tensor([0, 1, 2, 1])).backward()
        opt.step()
    return model, opt


def _save(path, model, opt=None, **kwargs):
    args = dict(arch="simple", class_names=["a", "b", "c"], image_size=12, channels=1,
                optimizer=opt, epoch=3, rng={"shuffle": np.random.default_rng(5)},
                settings={"lr": 0.01}, history=[{"epoch": 1, "train_loss": 0.5}])
    args.update(kwargs)
    checkpoint.save(path, model, **args)


def _numpy(obj):
    """The nest with cnnlab Tensors as NumPy arrays (which can then be edited)."""
    if isinstance(obj, cnnlab.Tensor):
        return obj.numpy().copy()
    if isinstance(obj, dict):
        return {k: _numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_numpy(v) for v in obj)
    return obj


def _rewrite(src, dst, change):
    """Copy the checkpoint src -> dst with ``change(obj)`` applied to its whole content
    (read with cnnlab.load, written with cnnlab's safetensors writer)."""
    obj = _numpy(serialization.load(src))
    change(obj)
    serialization.save(obj, dst, unprefixed=("model",))


def test_round_trip(tmp_path):
    model, opt = _trained(dtype=np.float64)
    path = tmp_path / "c.safetensors"
    _save(path, model, opt)
    ck = checkpoint.load(path)
    assert ck["arch"] == "simple" and ck["class_names"] == ["a", "b", "c"]
    assert (ck["image_size"], ck["channels"], ck["dtype"], ck["epoch"]) == (12, 1, "float64", 3)
    assert ck["settings"] == {"lr": 0.01} and ck["history"][0]["train_loss"] == 0.5
    assert not ck["model"].training
    for (n, p), (m, q) in zip(model.named_parameters(), ck["model"].named_parameters()):
        assert n == m and q.dtype == cnnlab.float64
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
    # the optimizer resumes exactly: one more step from both gives the same weights
    twin = ck["model"].train()
    opt2 = optim.Adam(twin.parameters(), lr=1e-2)
    opt2.load_state_dict(ck["optimizer"]["state_dict"])
    assert ck["optimizer"]["type"] == "Adam"
    for m in (model, twin):
        for p in m.parameters():
            p.grad = cnnlab.full(p.shape, 0.1, dtype=p.dtype)
    opt.step()
    opt2.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
    gen = np.random.default_rng()
    gen.bit_generator.state = ck["rng"]["shuffle"]
    assert gen.random() == np.random.default_rng(5).random()


def test_sgd_without_momentum_and_no_optimizer(tmp_path):
    model = models.build("lab", 3, 16, 2, generator=1)
    _save(tmp_path / "a.safetensors", model, optim.SGD(model.parameters()), arch="lab", image_size=16,
          channels=3, class_names=["x", "y"])
    ck = checkpoint.load(tmp_path / "a.safetensors")
    assert ck["optimizer"]["type"] == "SGD"
    assert ck["optimizer"]["state_dict"]["state"] == {}      # no step taken yet
    _save(tmp_path / "b.safetensors", model, None, arch="lab", image_size=16, channels=3,
          class_names=["x", "y"])
    assert checkpoint.load(tmp_path / "b.safetensors")["optimizer"] is None


@pytest.mark.parametrize("make,kwargs", [(optim.SGD, dict(lr=0.1, momentum=0.9)),
                                         (optim.RMSprop, dict(centered=True, momentum=0.5)),
                                         (optim.AdamW, dict(amsgrad=True))])
def test_any_optimizer_resumes_exactly(tmp_path, make, kwargs):
    """The checkpoint saves an optimizer's state_dict without knowing its class."""
    model, opt = _trained("lab", np.float64, 2, make, **kwargs)
    _save(tmp_path / "o.safetensors", model, opt, arch="lab")
    ck = checkpoint.load(tmp_path / "o.safetensors")
    assert ck["optimizer"]["type"] == make.__name__
    twin = ck["model"].train()
    opt2 = make(twin.parameters(), **kwargs)
    opt2.load_state_dict(ck["optimizer"]["state_dict"])
    for m in (model, twin):
        for p in m.parameters():
            p.grad = cnnlab.full(p.shape, 0.3, dtype=p.dtype)
    opt.step()
    opt2.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def test_buffers_are_saved(tmp_path):
    """A model's buffers (BatchNorm's running statistics) travel in the checkpoint."""
    model = models.build("simple", 1, 12, 3, generator=0)
    model.register_buffer("seen", cnnlab.tensor([3.0, 4.0]))
    path = tmp_path / "b.safetensors"
    _save(path, model)
    import safetensors.numpy
    np.testing.assert_array_equal(safetensors.numpy.load_file(path)["seen"], [3.0, 4.0])


def test_loads_without_pickle(tmp_path, monkeypatch):
    model, opt = _trained()
    _save(tmp_path / "c.safetensors", model, opt)

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(np, "load", refuse)
    assert checkpoint.load(tmp_path / "c.safetensors")["epoch"] == 3


class TorchCNN:
    """The course's CNNClassifier written in torch (models.py's "lab" and "simple")."""

    @staticmethod
    def build(torch, channels, size, classes, arch):
        tnn = torch.nn
        filters, hidden, pad = ((16, 32, 64), 128, 1) if arch == "lab" else ((16,), None, 2)

        class CNNClassifier(tnn.Module):
            def __init__(self):
                super().__init__()
                blocks, c, s = [], channels, size
                for f in filters:
                    blocks += [tnn.Conv2d(c, f, 3, padding=pad), tnn.ReLU(),
                               tnn.MaxPool2d(2, 2)]
                    c, s = f, (s + 2 * pad - 2) // 2
                self.conv_layers = tnn.Sequential(*blocks)
                flat = c * s * s
                self.fc_layers = tnn.Sequential(
                    *([tnn.Linear(flat, classes)] if hidden is None else
                      [tnn.Linear(flat, hidden), tnn.ReLU(), tnn.Linear(hidden, classes)]))

            def forward(self, x):
                x = self.conv_layers(x)
                return self.fc_layers(x.view(x.size(0), -1))

        return CNNClassifier()


@pytest.mark.parametrize("arch", ["lab", "simple"])
def test_torch_loads_the_weights_of_a_checkpoint(tmp_path, arch, twin):
    """safetensors.torch.load_file on a checkpoint: the model's state_dict under torch's
    keys (the optimizer's tensors beside them, under "optimizer."), which give the torch
    model the logits of cnnlab's."""
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    model, opt = _trained(arch)
    path = tmp_path / "c.safetensors"
    _save(path, model, opt, arch=arch)
    tensors = st.load_file(path)
    keys = set(model.state_dict())
    assert {k for k in tensors if not k.startswith("optimizer.")} == keys
    assert "optimizer.state.0.exp_avg" in tensors
    net = TorchCNN.build(torch, 1, 12, 3, arch).eval()
    net.load_state_dict({k: tensors[k] for k in keys}, strict=True)
    x = np.random.default_rng(2).random((5, 1, 12, 12)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    ours = checkpoint.load(path)["model"]
    with cnnlab.no_grad():
        got = ours(cnnlab.from_numpy(x)).numpy(force=True)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    model, opt = _trained()
    path = tmp_path / "c.safetensors"
    _save(path, model, opt)
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    model.conv_layers[0].weight.data = model.conv_layers[0].weight.data + 1
    with pytest.raises(OSError, match="disk full"):
        _save(path, model, opt)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c.safetensors"]

    def broken_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="rename failed"):
        _save(path, model, opt)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c.safetensors"]
    checkpoint.load(path)


def test_interrupt_mid_write_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "x.bin"
    path.write_bytes(b"old")

    def writer(f):
        f.write(b"new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_write(path, writer)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["x.bin"]
    checkpoint.atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == ["x.bin"]
    mask = os.umask(0o022)
    try:
        checkpoint.atomic_write(tmp_path / "y.bin", lambda f: f.write(b"y"))
    finally:
        os.umask(mask)
    assert (tmp_path / "y.bin").stat().st_mode & 0o777 == 0o644   # as open() would make it


def _edit(**changes):
    """Replace (or with KeyError, delete) top-level entries of the checkpoint."""
    def change(obj):
        for k, v in changes.items():
            if v is KeyError:
                del obj[k]
            else:
                obj[k] = v
    return change


def _at(*keys, value=KeyError):
    """Set (or delete) obj[k1][k2]...; a callable value is applied to the old one."""
    def change(obj):
        for k in keys[:-1]:
            obj = obj[k]
        if value is KeyError:
            del obj[keys[-1]]
        else:
            obj[keys[-1]] = value(obj[keys[-1]]) if callable(value) else value
    return change


def _nan(a):
    a = a.copy()
    a.flat[0] = np.nan
    return a


C0, FC = "conv_layers.0", "fc_layers.0"
STATS = imagestats.summarize(np.zeros((3, 1, 4, 4), np.uint8))
_ADAM = {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
         "amsgrad": False, "params": [0, 1, 2, 3]}
BAD = [
    # the model's tensors
    ("missing weight", _at("model", f"{C0}.weight"), f"missing tensor '{C0}.weight'"),
    ("wrong shape", _at("model", f"{FC}.bias", value=np.zeros(4, np.float32)),
     rf"tensor '{FC}.bias' has shape \(4,\), expected \(3,\)"),
    ("wrong dtype", _at("model", f"{C0}.bias", value=lambda a: a.astype(np.float64)),
     f"tensor '{C0}.bias' has dtype F64, expected F32"),
    ("int weights", _at("model", f"{C0}.bias", value=lambda a: a.astype(np.int32)),
     f"tensor '{C0}.bias' has dtype I32, expected F32"),
    ("nan weight", _at("model", f"{FC}.weight", value=_nan), f"'{FC}.weight' holds NaN"),
    ("extra tensor", _at("model", "9.weight", value=np.zeros(2, np.float32)),
     "unexpected tensor '9.weight'"),
    ("model not a dict", _edit(model=[1]), "'model' has an invalid value"),
    # the optimizer
    ("nan adam buffer", _at("optimizer", "state", 0, "exp_avg_sq", value=_nan),
     "'optimizer.state.0.exp_avg_sq' holds NaN"),
    ("bad buffer shape", _at("optimizer", "state", 1, "exp_avg", value=np.zeros(3, np.float32)),
     r"'optimizer.state.1.exp_avg' has shape \(3,\), expected \(16,\)"),
    ("negative step", _at("optimizer", "state", 0, "step", value=np.array(-1.0, np.float32)),
     "'optimizer.state.0.step' is not a step count"),
    ("step as array", _at("optimizer", "state", 0, "step", value=np.zeros(16, np.float32)),
     "'optimizer.state.0.step' must be a 0-d float tensor"),
    ("state of no parameter", _at("optimizer", "state", 9, value={}),
     "optimizer 'state' must map parameter indices"),
    ("optimizer groups", _at("optimizer", "param_groups", value=[dict(_ADAM, params=[0, 0])]),
     "groups must hold the parameters 0..3 once each"),
    ("optimizer lr text", _at("optimizer", "param_groups", value=[dict(_ADAM, lr="x")]),
     "optimizer hyper-parameter 'lr' has an invalid value 'x'"),
    ("optimizer lr nan", _at("optimizer", "param_groups",
                             value=[dict(_ADAM, lr=float("nan"))]),
     "optimizer hyper-parameter 'lr' has an invalid value nan"),
    ("optimizer lr negative", _at("optimizer", "param_groups", value=[dict(_ADAM, lr=-1.0)]),
     "Invalid learning rate: -1.0"),
    ("optimizer beta", _at("optimizer", "param_groups", value=[dict(_ADAM, betas=(1.5, 0.9))]),
     "Invalid beta parameter"),
    ("optimizer unknown option", _at("optimizer", "param_groups",
                                     value=[dict(_ADAM, warp=1.0)]),
     "optimizer hyper-parameter 'warp' is not one of Adam's"),
    ("optimizer type", _at("optimizer", "type", value="lr_scheduler"),
     "optimizer 'type' 'lr_scheduler' is not a cnnlab.optim optimizer"),
    ("optimizer keys", _at("optimizer", "state"), "'optimizer' has an invalid value"),
    # the structure's entries
    ("foreign format", _edit(format="other"), "not a cnnlab-checkpoint file"),
    ("newer version", _edit(version=99), "version 99; this cnnlab reads version 3"),
    ("unknown arch", _edit(arch="resnet"), "'arch' has an invalid value 'resnet'"),
    ("channels", _edit(channels=2), "'channels' has an invalid value 2"),
    ("image size 0", _edit(image_size=0), "'image_size' has an invalid value 0"),
    ("image size huge", _edit(image_size=10**12), "'image_size' has an invalid value"),
    ("image size too big for the file", _edit(image_size=4000),
     r"image_size 4000, 3 classes\) needs more weights than the \d+ the file holds"),
    ("image size too small", _edit(image_size=1, arch="lab"), "does not fit the network"),
    ("no class names", _edit(class_names=KeyError), "has no 'class_names'"),
    ("duplicate class names", _edit(class_names=["a", "a", "b"]),
     "'class_names' has an invalid value"),
    ("class name not text", _edit(class_names=["a", 2, "b"]),
     "'class_names' has an invalid value"),
    ("class count", _edit(class_names=["a", "b"]),
     "needs more weights than|has shape"),
    ("too many classes", _edit(class_names=[str(i) for i in range(5000)]),
     "'class_names' has an invalid value"),
    ("normalization", _edit(normalization={"divide_by": 1.0}),
     "'normalization' has an invalid value"),
    ("epoch", _edit(epoch=-1), "'epoch' has an invalid value -1"),
    ("extra entry", _edit(extra=1), "unexpected entry 'extra'"),
    ("history", _edit(history=[{"epoch": [1, 2]}]), "'history' has an invalid value"),
    ("batch size", _at("settings", "batch_size", value=0),
     "setting 'batch_size' has an invalid value 0"),
    ("limit", _at("settings", "limit", value=-5), "setting 'limit' has an invalid value -5"),
    ("learning rate", _at("settings", "lr", value=float("inf")),
     "setting 'lr' has an invalid value inf"),
    ("optimizer name", _at("settings", "optimizer", value="lbfgs"),
     "setting 'optimizer' has an invalid value 'lbfgs'"),
    ("momentum", _at("settings", "momentum", value=-0.5), "setting 'momentum'"),
    ("setting not plain", _at("settings", "other", value={"a": 1}), "setting 'other'"),
    ("rng name", _at("rng", "shuffle", "bit_generator", value="MT19937"),
     "rng 'shuffle' is not a NumPy PCG64 state"),
    ("rng value", _at("rng", "shuffle", "state", "state", value="x"),
     "rng 'shuffle' is not a NumPy PCG64 state"),
    ("rng missing", _at("rng", "shuffle", "state"), "rng 'shuffle'"),
    ("training data", _edit(training_data={"name": "x", "images": 0, "stats": STATS}),
     "'training_data' 'images' must be a positive count"),
    ("training stats", _edit(training_data={"name": "x", "images": 3,
                                            "stats": {"brightness": {"p1": 1.0}}}),
     "'training_data' 'stats' 'brightness'"),
]


@pytest.mark.parametrize("name,change,message", BAD, ids=[b[0] for b in BAD])
def test_damaged_checkpoint_names_the_entry(tmp_path, name, change, message):
    model, opt = _trained()
    good, bad = tmp_path / "good.safetensors", tmp_path / "bad.safetensors"
    _save(good, model, opt, settings={"lr": 0.01, "batch_size": 32, "limit": None,
                                      "optimizer": "adam", "momentum": 0.9})
    _rewrite(good, bad, change)
    with pytest.raises(CheckpointError, match=message) as e:
        checkpoint.load(bad)
    text = str(e.value)
    assert text.startswith(f"checkpoint {bad}: ") and "\n" not in text


def test_training_data_round_trip_and_refused_when_saved_wrong(tmp_path):
    model = models.build("simple", 1, 12, 2, generator=0)
    images = np.random.default_rng(0).integers(0, 256, (20, 1, 12, 12), dtype=np.uint8)
    info = imagestats.training_data("noise", images)
    assert info["images"] == 20 and info["stats"] == imagestats.summarize(images)
    _save(tmp_path / "t.safetensors", model, class_names=["a", "b"], training_data=info)
    assert checkpoint.load(tmp_path / "t.safetensors")["training_data"] == info
    with pytest.raises(CheckpointError, match="training_data 'name'"):
        _save(tmp_path / "u.safetensors", model, class_names=["a", "b"],
              training_data=dict(info, name=""))


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        checkpoint.load(tmp_path / "missing.safetensors")
    (tmp_path / "junk").write_bytes(b"hello")
    with pytest.raises(CheckpointError, match="shorter than a header"):
        checkpoint.load(tmp_path / "junk")
    cnnlab.save(models.build("simple", 1, 12, 2).state_dict(), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="not a cnnlab-checkpoint file.*cnnlab.load"):
        checkpoint.load(tmp_path / "w.safetensors")


def test_an_old_npz_checkpoint_says_to_retrain(tmp_path):
    """An .npz checkpoint of cnnlab before version 3 (meta + model/... arrays)."""
    path = tmp_path / "checkpoint.npz"
    np.savez(path, meta=np.array('{"format": "cnnlab-checkpoint", "version": 2}'),
             **{"model/conv_layers.0.weight": np.zeros((16, 1, 3, 3), np.float32)})
    with pytest.raises(CheckpointError) as e:
        checkpoint.load(path)
    text = str(e.value)
    assert "old .npz checkpoint" in text and "python -m cnnlab.train" in text
    assert "\n" not in text


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_scheduler_keys_in_param_groups_load(tmp_path, schedule):
    """A learning-rate scheduler adds keys to each parameter group (torch's "initial_lr";
    OneCycleLR's "max_lr", "min_lr", "max_momentum", "base_momentum"); a checkpoint of such
    an optimizer loads, and the groups come back as torch's scheduler leaves them."""
    torch = pytest.importorskip("torch")
    model, opt = _trained()
    if schedule == "cosine":
        optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10).step()
    else:
        optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10).step()
    t_model = torch.nn.Linear(2, 2)
    t_opt = torch.optim.Adam(t_model.parameters(), lr=1e-2)
    if schedule == "cosine":
        torch.optim.lr_scheduler.CosineAnnealingLR(t_opt, T_max=10)
    else:
        torch.optim.lr_scheduler.OneCycleLR(t_opt, max_lr=0.1, total_steps=10)
    added = set(t_opt.param_groups[0]) - set(torch.optim.Adam(t_model.parameters()).param_groups[0])
    assert added and added <= set(opt.param_groups[0])
    _save(tmp_path / "s.safetensors", model, opt)
    groups = checkpoint.load(tmp_path / "s.safetensors")["optimizer"]["state_dict"]["param_groups"]
    assert groups[0]["initial_lr"] == opt.param_groups[0]["initial_lr"]
    assert added <= set(groups[0])
