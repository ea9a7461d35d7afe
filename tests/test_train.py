"""python -m cnnlab.train and python -m cnnlab.predict, end to end on small subsets.

Runs are in-process (``train.main(argv)``) except where the test is about the process
itself (exit status, nothing but one line on stderr). The behavioural tests run on every
twin: ``--backend`` names it, and the tensor twin trains with ``--device cpu``.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest

import cnnlab
from cnnlab import checkpoint, data, loop, models, optim, predict, train

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
QUICK = ["--arch", "simple", "--limit", "200", "--no-progress"]
CKPT = train.CHECKPOINT


def _placement(twin) -> list:
    """The command-line options that train on ``twin``."""
    return ["--backend", str(twin)] + (["--device", "cpu"] if twin.tensors else [])


def _run(tmp, *args):
    return train.main(["--out", str(tmp), *QUICK, *args])


def _reject_constant(name):
    raise ValueError(f"metrics.json holds {name}: not strict JSON")


def _metrics(folder):
    """metrics.json, read with a strict parser (no NaN/Infinity tokens)."""
    with open(os.path.join(folder, "metrics.json")) as f:
        return json.loads(f.read(), parse_constant=_reject_constant)


def _state(path) -> dict:
    """A checkpoint's arrays: the weights, the optimizer's buffers and steps, the RNGs."""
    ck = checkpoint.load(path)
    out = {f"model/{k}": v.numpy() for k, v in ck["model"].state_dict().items()}
    for i, entry in ck["optimizer"]["state_dict"]["state"].items():
        for key, value in entry.items():
            out[f"optimizer/{i}/{key}"] = np.asarray(getattr(value, "numpy", lambda: value)())
    out["rng"] = json.dumps(ck["rng"], sort_keys=True)
    return out


def _trajectory(folder):
    return [{k: v for k, v in e.items() if k != "seconds"} for e in _metrics(folder)["epochs"]]


def _has_matplotlib() -> bool:
    import importlib.util
    return importlib.util.find_spec("matplotlib") is not None


@pytest.mark.slow   # a real training run: once in CI, on the source install
def test_short_run_beats_chance(tmp_path, capsys):
    """A few epochs of the default network on a subset: well above the 50% of chance."""
    out = tmp_path / "run"
    assert train.main(["--epochs", "3", "--limit", "1200", "--schedule", "constant",
                       "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    m = _metrics(out)
    assert [e["epoch"] for e in m["epochs"]] == [1, 2, 3]
    assert m["test_accuracy"] >= 0.80, text
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (2, 2) and cm.sum() == m["n_test"] == 397
    assert m["test_accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert m["settings"]["arch"] == "lab" and m["settings"]["lr"] == 1e-3
    assert "confusion matrix" in text and "cat" in text and "dog" in text
    ck = checkpoint.load(out / CKPT)
    assert ck["epoch"] == 3 and ck["class_names"] == ["cat", "dog"]
    if _has_matplotlib():  # curves.png needs the [plot] extra; training runs without it
        assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_equals_straight_run_bit_for_bit(tmp_path, twin):
    straight, split = tmp_path / "straight", tmp_path / "split"
    where = _placement(twin)
    assert _run(straight, "--epochs", "2", *where) == 0
    assert _run(split, "--epochs", "1", *where) == 0
    assert _trajectory(split) == _trajectory(straight)[:1]      # same seed, same losses
    assert train.main(["--resume", str(split / CKPT), "--epochs", "2",
                       "--no-progress", *where]) == 0
    assert _trajectory(split) == _trajectory(straight)
    a, b = _state(straight / CKPT), _state(split / CKPT)
    assert a.keys() == b.keys() and any(k.startswith("optimizer/") for k in a)
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_resume_replays_the_cosine_schedule(tmp_path):
    """Epoch e of a resumed run gets torch's CosineAnnealingLR rate of epoch e."""
    torch = pytest.importorskip("torch")
    assert _run(tmp_path, "--epochs", "1", "--lr", "0.01", "--limit", "64") == 0
    assert train.main(["--resume", str(tmp_path / CKPT), "--epochs", "3",
                       "--no-progress"]) == 0
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=3)
    expected = []
    for _ in range(3):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [e["lr"] for e in _metrics(tmp_path)["epochs"]] == pytest.approx(expected,
                                                                           rel=1e-12)


def test_resume_keeps_settings(tmp_path, capsys):
    assert _run(tmp_path, "--epochs", "1") == 0
    ck = str(tmp_path / CKPT)
    assert train.main(["--resume", ck, "--lr", "0.5", "--epochs", "2"]) == 1
    assert "--lr 0.5 differs from the checkpoint's 0.001" in capsys.readouterr().err
    assert train.main(["--resume", ck, "--epochs", "1"]) == 1
    assert "finished 1 epochs" in capsys.readouterr().err


def test_runs_are_numbered_and_never_replaced(tmp_path, monkeypatch, capsys):
    """runs/exp, runs/exp2, ...; a given --out holding a run is refused unless --force."""
    monkeypatch.chdir(tmp_path)
    for _ in range(3):
        assert train.main([*QUICK, "--epochs", "1"]) == 0
    assert sorted(os.listdir("runs")) == ["exp", "exp2", "exp3"]
    assert all(os.path.exists(os.path.join("runs", d, CKPT)) for d in os.listdir("runs"))
    first = _state(os.path.join("runs", "exp", CKPT))
    capsys.readouterr()
    assert train.main(["--out", "runs/exp", *QUICK, "--epochs", "2"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "--out runs/exp already holds a run" in err and "--force" in err
    after = _state(os.path.join("runs", "exp", CKPT))
    assert all(np.array_equal(first[k], after[k]) for k in first)    # untouched
    assert train.main(["--out", "runs/exp", *QUICK, "--epochs", "2", "--force"]) == 0
    assert checkpoint.load(os.path.join("runs", "exp", CKPT))["epoch"] == 2


def _interrupt_at_training_batch(monkeypatch, n, error=KeyboardInterrupt):
    """Make the n-th training batch (counted over the whole run) raise ``error``."""
    real = train._Images.__getitems__
    calls = {"n": 0}

    def patched(self, indices):
        if self.train:
            calls["n"] += 1
            if calls["n"] == n:
                raise error
        return real(self, indices)

    monkeypatch.setattr(train._Images, "__getitems__", patched)


def test_ctrl_c_keeps_the_last_epoch_and_prints_the_resume_command(tmp_path, monkeypatch,
                                                                   capsys, twin):
    out, straight = tmp_path / "run", tmp_path / "straight"
    where = _placement(twin)
    assert _run(straight, "--epochs", "2", *where) == 0
    _interrupt_at_training_batch(monkeypatch, 7 + 3)     # 7 batches of 32 per epoch
    capsys.readouterr()
    assert _run(out, "--epochs", "2", *where) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    path = str(out / CKPT)
    assert f"interrupted; kept {path} (epoch 1)" in err[0]
    command = err[0].split("continue with: ")[1]
    assert command == " ".join(["python -m cnnlab.train --resume", shlex.quote(path), *where])
    assert checkpoint.load(path)["epoch"] == 1
    monkeypatch.undo()
    argv = shlex.split(command)[3:]
    assert train.main(argv + ["--no-progress"]) == 0
    assert _trajectory(out) == _trajectory(straight)     # continued as if never stopped


def test_ctrl_c_before_the_first_checkpoint(tmp_path, monkeypatch, capsys):
    _interrupt_at_training_batch(monkeypatch, 2)
    assert _run(tmp_path, "--epochs", "2") == 130
    err = capsys.readouterr().err
    assert "interrupted; no checkpoint was written" in err and "--resume" not in err
    assert not os.path.exists(tmp_path / CKPT)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys,
                                                           twin):
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    where = _placement(twin)
    assert _run(clean, "--epochs", "1", *where) == 0
    real = train._Images.__getitems__
    calls = {"n": 0}

    def poisoned(self, indices):
        xb, yb = real(self, indices)
        if self.train:
            calls["n"] += 1
            if calls["n"] == 7 + 3:                      # epoch 2, batch 3
                xb = xb * float("nan")
        return xb, yb

    monkeypatch.setattr(train._Images, "__getitems__", poisoned)
    capsys.readouterr()
    assert _run(broken, "--epochs", "3", *where) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "Epoch 2, batch 3: invalid loss (nan), terminating training" in err[0]
    assert f"kept {broken / CKPT} (epoch 1)" in err[0]
    a, b = _state(clean / CKPT), _state(broken / CKPT)      # finite, epoch 1
    assert checkpoint.load(broken / CKPT)["epoch"] == 1
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert len(_metrics(broken)["epochs"]) == 1


def test_huge_learning_rate_stops_before_saving(tmp_path, capsys, twin):
    """--lr 1e6: the loss stays finite in epoch 1 but Adam's buffers overflow; the run
    stops in one line, and no checkpoint holding them is written."""
    code = train.main(["--out", str(tmp_path), "--limit", "200", "--epochs", "2",
                       "--lr", "1e6", "--no-progress", *_placement(twin)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert "holds NaN or Inf values" in err[0] and "terminating training" in err[0]
    assert "no checkpoint was written" in err[0]
    assert not os.path.exists(tmp_path / CKPT)


def test_checkpoint_gets_the_training_data(tmp_path, monkeypatch):
    """The run passes checkpoint.save the data set's name, size and imagestats.summarize of
    its training images, with colour 0 for the bundled silhouettes (gray at the source)."""
    from cnnlab import imagestats
    seen = {}
    real = checkpoint.save

    def save(path, model, *, training_data=None, **kw):
        seen.update(training_data)
        return real(path, model, **kw)

    monkeypatch.setattr(checkpoint, "save", save)
    assert _run(tmp_path, "--epochs", "1") == 0
    assert seen["name"] == data.BUNDLED_NAME and seen["images"] == 200
    x, _, _ = data.bundled()
    whole = imagestats.summarize(x)                   # all 1,989 images: close to the 200's
    assert seen["stats"].pop("colour") == {"p1": 0.0, "p99": 0.0, "mean": 0.0}
    assert seen["stats"].keys() == whole.keys()
    for name, s in seen["stats"].items():
        assert s["p1"] <= s["mean"] <= s["p99"]
        assert s["mean"] == pytest.approx(whole[name]["mean"], rel=0.1), name


def test_metrics_json_is_strict(tmp_path):
    """Non-finite numbers are written as null, and the file parses strictly."""
    path = tmp_path / "m.json"
    train._write_json(path, {"a": [1.5, float("nan")], "b": {"c": float("-inf")}, "d": 2})
    assert json.loads(path.read_text(), parse_constant=_reject_constant) == \
        {"a": [1.5, None], "b": {"c": None}, "d": 2}
    with pytest.raises(ValueError, match="NaN"):
        json.loads('{"a": NaN}', parse_constant=_reject_constant)   # the parser is strict


def test_fit_from_python_returns_the_history(twin):
    """cnnlab.train.fit is the loop the command runs: a DataLoader over the bundled set."""
    from cnnlab.utils.data import DataLoader, Subset
    from cnnlab.vision import datasets, transforms
    assert train.fit is loop.fit
    tf = transforms.ToTensor()
    train_set = Subset(datasets.CatsDogs(train=True, transform=tf), range(96))
    test_set = Subset(datasets.CatsDogs(train=False, transform=tf), range(64))
    cnnlab.manual_seed(0)
    model = models.build("simple", 1, 28, 2)
    device = "torch:cpu" if twin.tensors else None
    if device:
        model.to(device)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    stop = loop.TerminateOnNaN()
    history = train.fit(model, DataLoader(train_set, batch_size=32, shuffle=True),
                        DataLoader(test_set, batch_size=64), opt, 2, callbacks=[stop],
                        device=device, progress=False)
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(0.0 <= h["test_accuracy"] <= 1.0 and h["train_loss"] > 0 for h in history)
    _, acc, pred = train.evaluate(model, DataLoader(test_set, batch_size=64), device=device)
    assert acc == history[-1]["test_accuracy"] and len(pred) == 64


@pytest.mark.parametrize("argv,status,message", [
    (["--epochs", "0"], 2, "argument --epochs: must be a positive int, got 0"),
    (["--lr", "nan"], 2, "argument --lr: must be a positive float"),
    (["--arch", "vgg"], 2, "argument --arch: invalid choice: 'vgg'"),
    (["--channels", "2"], 2, "argument --channels: invalid choice: 2"),
    (["--test-fraction", "1.5"], 1, "--test-fraction must be between 0 and 1"),
    (["--data", "/nonexistent/cats"], 1, "data folder /nonexistent/cats does not exist"),
    (["--resume", "/nonexistent/c.npz"], 2, "checkpoint /nonexistent/c.npz: no such file"),
    (["--image-size", "4"], 1, "image_size 4 is too small for the 'lab' architecture"),
    (["--device", "cuda", "--backend", "numpy"], 1, "--device cuda needs --backend torch"),
])
def test_bad_arguments_one_line_no_traceback(tmp_path, capsys, argv, status, message):
    try:
        code = train.main(argv + ["--out", str(tmp_path), "--no-progress"])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == status
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert "Traceback" not in err


def test_resume_out_of_memory_is_one_line(tmp_path, monkeypatch, capsys):
    """A MemoryError while a checkpoint is read (checkpoint.load turns it into its own
    CheckpointError) ends the command with one line and exit status 2."""
    def exhausted(path):
        raise MemoryError
    monkeypatch.setattr(checkpoint, "_load", exhausted)
    assert train.main(["--resume", str(tmp_path / CKPT), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"python -m cnnlab.train: error: checkpoint {tmp_path / CKPT}: " \
                          "too large to load into memory"


def _cli(module, *args):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_process_exit_status_and_single_line(tmp_path):
    (tmp_path / CKPT).write_bytes(b"not a checkpoint")
    r = _cli("cnnlab.train", "--resume", str(tmp_path / CKPT))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and f"checkpoint {tmp_path / CKPT}: " in r.stderr
    r = _cli("cnnlab.train", "--batch-size", "-3")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert _cli("cnnlab.train", "--help").returncode == 0


@pytest.mark.skipif("torch" not in cnnlab.backends(), reason="torch is not installed")
def test_cuda_request_without_cuda_is_one_line(tmp_path, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert train.main(["--device", "cuda", "--out", str(tmp_path), *QUICK]) == 1
    assert "CUDA is not available" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    assert train.main(["--out", str(out), "--epochs", "1", *QUICK]) == 0
    return out / CKPT


def test_predict_prints_probabilities_like_torch(trained, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from PIL import Image
    x, y, _ = data.bundled()
    paths = []
    for i in (0, len(y) - 1):
        paths.append(str(tmp_path / f"img{i}.png"))
        Image.fromarray(x[i, 0]).save(paths[-1])
    (tmp_path / "bad.png").write_text("not an image")
    capsys.readouterr()
    code = predict.main(["--checkpoint", str(trained), *paths, str(tmp_path / "bad.png")])
    out, err = capsys.readouterr()
    assert code == 1 and "bad.png" in err and "not an image" in err
    trained_on, *lines = out.strip().splitlines()
    assert trained_on.startswith(f"model trained on {data.BUNDLED_NAME}: ")
    assert len(lines) == 2
    # the same network in torch, with the checkpoint's weights, on the PNGs' pixels / 255
    ck = checkpoint.load(trained)
    nn = torch.nn
    net = nn.Module()                 # the "simple" network as the course writes a model
    net.conv_layers = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 2), nn.ReLU(), nn.MaxPool2d(2, 2))
    net.fc_layers = nn.Sequential(nn.Linear(16 * 15 * 15, 2))
    net.load_state_dict({k: torch.from_numpy(v.numpy())
                         for k, v in ck["model"].state_dict().items()})
    net.forward = lambda x: net.fc_layers(net.conv_layers(x).view(x.size(0), -1))
    pixels = np.stack([np.asarray(Image.open(p), np.float32)[None] / 255 for p in paths])
    probs = torch.softmax(net(torch.from_numpy(pixels)), 1).detach().numpy()
    for line, p, path in zip(lines, probs, paths):
        assert line.startswith(path)
        printed = [float(t) for t in line.split("(")[1].rstrip(")").split()[1::2]]
        np.testing.assert_allclose(printed, p, atol=5.1e-5)
        assert ck["class_names"][int(np.argmax(p))] in line.split("(")[0]


def test_predict_errors(trained, tmp_path, capsys):
    assert predict.main(["--checkpoint", str(tmp_path / "none.npz"), "x.png"]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        predict.main(["--checkpoint", str(trained)])           # no image
    assert e.value.code == 2


@pytest.mark.skipif("torch" not in cnnlab.backends(), reason="torch is not installed")
def test_torch_path_on_cuda(tmp_path):
    import torch
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    gpu, cpu = tmp_path / "gpu", tmp_path / "cpu"
    assert _run(gpu, "--epochs", "1", "--device", "cuda") == 0
    assert _run(cpu, "--epochs", "1", "--backend", "torch", "--device", "cpu") == 0
    a, b = _metrics(gpu)["epochs"][0], _metrics(cpu)["epochs"][0]
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)
    assert checkpoint.load(gpu / CKPT)["epoch"] == 1


def test_resume_without_epochs_keeps_the_runs_own_total(tmp_path, capsys):
    """A resumed run aims at the epochs its checkpoint was started with, not the default
    (the cosine schedule depends on that total)."""
    assert _run(tmp_path, "--epochs", "1") == 0
    assert train.main(["--resume", str(tmp_path / CKPT), "--no-progress"]) == 1
    assert "finished 1 epochs" in capsys.readouterr().err
