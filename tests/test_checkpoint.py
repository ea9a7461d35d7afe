"""cnnlab.checkpoint: round trip, atomic writes, and a clear error for each damaged key."""
from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest

import cnnlab
from cnnlab import checkpoint, models, nn, optim
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


def _rewrite(src, dst, change):
    """Copy the archive src -> dst with ``change(dict)`` applied (plain np.savez)."""
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    with open(dst, "wb") as f:
        np.savez(f, **arrays)


def test_round_trip(tmp_path):
    model, opt = _trained(dtype=np.float64)
    path = tmp_path / "c.npz"
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
    _save(tmp_path / "a.npz", model, optim.SGD(model.parameters()), arch="lab", image_size=16,
          channels=3, class_names=["x", "y"])
    ck = checkpoint.load(tmp_path / "a.npz")
    assert ck["optimizer"]["type"] == "SGD"
    assert ck["optimizer"]["state_dict"]["state"] == {}      # no step taken yet
    _save(tmp_path / "b.npz", model, None, arch="lab", image_size=16, channels=3,
          class_names=["x", "y"])
    assert checkpoint.load(tmp_path / "b.npz")["optimizer"] is None


@pytest.mark.parametrize("make,kwargs", [(optim.SGD, dict(lr=0.1, momentum=0.9)),
                                         (optim.RMSprop, dict(centered=True, momentum=0.5)),
                                         (optim.AdamW, dict(amsgrad=True))])
def test_any_optimizer_resumes_exactly(tmp_path, make, kwargs):
    """The checkpoint saves an optimizer's state_dict without knowing its class."""
    model, opt = _trained("lab", np.float64, 2, make, **kwargs)
    _save(tmp_path / "o.npz", model, opt, arch="lab")
    ck = checkpoint.load(tmp_path / "o.npz")
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
    path = tmp_path / "b.npz"
    _save(path, model)
    with np.load(path, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["model/seen"], [3.0, 4.0])


def test_loads_without_pickle(tmp_path, monkeypatch):
    model, opt = _trained()
    _save(tmp_path / "c.npz", model, opt)
    seen = []
    real = np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: seen.append(k) or real(*a, **k))
    checkpoint.load(tmp_path / "c.npz")
    assert seen and all(k.get("allow_pickle") is False for k in seen)


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    model, opt = _trained()
    path = tmp_path / "c.npz"
    _save(path, model, opt)
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    model.conv_layers[0].weight.data = model.conv_layers[0].weight.data + 1
    with pytest.raises(OSError, match="disk full"):
        _save(path, model, opt)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]

    def broken_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="rename failed"):
        _save(path, model, opt)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]
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


def _meta_edit(**changes):
    import json

    def change(arrays):
        meta = json.loads(str(arrays["meta"]))
        for k, v in changes.items():
            if v is KeyError:
                del meta[k]
            else:
                meta[k] = v
        arrays["meta"] = np.array(json.dumps(meta))
    return change


def _set(key, value):
    def change(arrays):
        arrays[key] = value
    return change


def _drop(key):
    def change(arrays):
        del arrays[key]
    return change


def _nan(key):
    def change(arrays):
        a = arrays[key].copy()
        a.flat[0] = np.nan
        arrays[key] = a
    return change


C0, FC = "conv_layers.0", "fc_layers.0"
BAD = [
    ("missing weight", _drop(f"model/{C0}.weight"), f"missing key 'model/{C0}.weight'"),
    ("wrong shape", _set(f"model/{FC}.bias", np.zeros(4, np.float32)),
     rf"key 'model/{FC}.bias' has shape \(4,\), expected \(3,\)"),
    ("wrong dtype", lambda a: a.__setitem__(f"model/{C0}.bias",
                                            a[f"model/{C0}.bias"].astype(np.float64)),
     f"key 'model/{C0}.bias' has dtype float64, expected float32"),
    ("nan weight", _nan(f"model/{FC}.weight"), f"key 'model/{FC}.weight' holds NaN or Inf"),
    ("nan adam buffer", _nan(f"optimizer/{C0}.weight/exp_avg_sq"),
     f"key 'optimizer/{C0}.weight/exp_avg_sq' holds NaN"),
    ("bad buffer shape", _set(f"optimizer/{C0}.bias/exp_avg", np.zeros(3, np.float32)),
     rf"key 'optimizer/{C0}.bias/exp_avg' has shape \(3,\), expected \(16,\)"),
    ("extra key", _set("model/9.weight", np.zeros(2, np.float32)),
     "unexpected key 'model/9.weight'"),
    ("extra optimizer key", _set("optimizer/nothing/exp_avg", np.zeros(2, np.float32)),
     "unexpected key 'optimizer/nothing/exp_avg'"),
    ("optimizer step as array", _set(f"optimizer/{C0}.bias/step", np.zeros(16, np.float32)),
     f"unexpected key 'optimizer/{C0}.bias/step'"),
    ("pickled array", _set(f"model/{C0}.weight", np.array([{"evil": 1}], dtype=object)),
     f"key 'model/{C0}.weight' cannot be read without pickle"),
    ("no meta", _drop("meta"), "missing key 'meta'"),
    ("meta not text", _set("meta", np.zeros(3)), "key 'meta' must be a 0-d string"),
    ("meta not json", _set("meta", np.array("{not json")), "key 'meta' is not valid JSON"),
    ("foreign format", _meta_edit(format="other"), "not a cnnlab-checkpoint file"),
    ("newer version", _meta_edit(version=99), "meta version 99"),
    ("unknown arch", _meta_edit(arch="resnet"), "meta 'arch' has an invalid value 'resnet'"),
    ("channels", _meta_edit(channels=2), "meta 'channels' has an invalid value 2"),
    ("no class names", _meta_edit(class_names=KeyError), "meta has no 'class_names'"),
    ("class count", _meta_edit(class_names=["a", "b"]),
     rf"key 'model/{FC}.weight' has shape \(3, 784\), expected \(2, 784\)"),  # 16 * 7 * 7
    ("normalization", _meta_edit(normalization={"divide_by": 1.0}),
     "meta 'normalization' has an invalid value"),
    ("optimizer steps", _meta_edit(optimizer={"type": "Adam", "param_groups": [],
                                              "steps": [1]}),
     "meta optimizer 'steps' must be 4 counts"),
    ("optimizer groups", _meta_edit(optimizer={"type": "Adam", "steps": [1, 1, 1, 1],
                                               "param_groups": [{"lr": 0.1, "params": [0, 0]}]}),
     "groups must hold the parameters 0..3 once each"),
    ("optimizer lr", _meta_edit(optimizer={"type": "Adam", "steps": [1, 1, 1, 1],
                                           "param_groups": [{"lr": "x", "params": [0]}]}),
     "invalid parameter group"),
    ("optimizer type", _meta_edit(optimizer={"type": "lr_scheduler", "steps": [],
                                             "param_groups": []}),
     "meta 'optimizer' has an invalid value"),
    ("version 1", _meta_edit(version=1), "meta version 1; this cnnlab reads version 2"),
]


@pytest.mark.parametrize("name,change,message", BAD, ids=[b[0] for b in BAD])
def test_damaged_checkpoint_names_the_key(tmp_path, name, change, message):
    model, opt = _trained()
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    _save(good, model, opt)
    _rewrite(good, bad, change)
    with pytest.raises(CheckpointError, match=message) as e:
        checkpoint.load(bad)
    assert str(bad) in str(e.value)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        checkpoint.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"hello")
    with pytest.raises(CheckpointError, match="not a .npz archive"):
        checkpoint.load(tmp_path / "junk.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(CheckpointError, match="single .npy array"):
        checkpoint.load(tmp_path / "one.npy")
    with zipfile.ZipFile(tmp_path / "empty.npz", "w"):
        pass
    with pytest.raises(CheckpointError, match="missing key 'meta'"):
        checkpoint.load(tmp_path / "empty.npz")


def test_mixed_dtypes_refused(tmp_path):
    model = models.build("simple", 1, 12, 2, generator=0)
    model.conv_layers[0].double()
    with pytest.raises(CheckpointError, match="must all be float32 or all float64"):
        checkpoint.save(tmp_path / "m.npz", model, arch="simple", class_names=["a", "b"],
                        image_size=12, channels=1)
    assert not os.listdir(tmp_path)
