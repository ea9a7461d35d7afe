"""python -m cnnlab.train and python -m cnnlab.predict, end to end on small subsets.

Runs are in-process (``train.main(argv)``) except where the test is about the process
itself (exit status, nothing but one line on stderr).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import cnnlab
from cnnlab import checkpoint, data, predict, train

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
QUICK = ["--arch", "simple", "--limit", "200", "--no-progress"]


def _run(tmp, *args):
    return train.main(["--out", str(tmp), *QUICK, *args])


def _metrics(folder):
    with open(os.path.join(folder, "metrics.json")) as f:
        return json.load(f)


def _arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k != "meta"}


def _trajectory(folder):
    return [{k: v for k, v in e.items() if k != "seconds"} for e in _metrics(folder)["epochs"]]


def _has_matplotlib() -> bool:
    import importlib.util
    return importlib.util.find_spec("matplotlib") is not None


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
    ck = checkpoint.load(out / "checkpoint.npz")
    assert ck["epoch"] == 3 and ck["class_names"] == ["cat", "dog"]
    if _has_matplotlib():  # curves.png needs the [plot] extra; training runs without it
        assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("placement", [[], ["--backend", "torch", "--device", "cpu"]],
                         ids=["default-backend", "torch-cpu"])
def test_resume_equals_straight_run_bit_for_bit(tmp_path, placement):
    if placement and "torch" not in cnnlab.backends():
        pytest.skip("torch is not installed")
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _run(straight, "--epochs", "2", *placement) == 0
    assert _run(split, "--epochs", "1", *placement) == 0
    assert _trajectory(split) == _trajectory(straight)[:1]      # same seed, same losses
    assert train.main(["--resume", str(split / "checkpoint.npz"), "--epochs", "2",
                       "--no-progress", *placement]) == 0
    assert _trajectory(split) == _trajectory(straight)
    a, b = _arrays(straight / "checkpoint.npz"), _arrays(split / "checkpoint.npz")
    assert a.keys() == b.keys() and any(k.startswith("optimizer/") for k in a)
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_resume_keeps_settings(tmp_path, capsys):
    assert _run(tmp_path, "--epochs", "1") == 0
    ck = str(tmp_path / "checkpoint.npz")
    assert train.main(["--resume", ck, "--lr", "0.5", "--epochs", "2"]) == 1
    assert "--lr 0.5 differs from the checkpoint's 0.001" in capsys.readouterr().err
    assert train.main(["--resume", ck, "--epochs", "1"]) == 1
    assert "finished 1 epochs" in capsys.readouterr().err


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    assert _run(clean, "--epochs", "1") == 0
    real = train._Run._batch
    calls = {"n": 0}

    def poisoned(self, x, y, idx, flip=None):
        xb, yb = real(self, x, y, idx, flip)
        if self.model.training and len(self.history) == 1:   # epoch 2, training batches
            calls["n"] += 1
            if calls["n"] == 3:
                xb = xb * np.float32("nan")
        return xb, yb

    monkeypatch.setattr(train._Run, "_batch", poisoned)
    capsys.readouterr()
    assert _run(broken, "--epochs", "3") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "Epoch 2, batch 3: invalid loss (nan), terminating training" in err[0]
    assert "last good checkpoint" in err[0] and "(epoch 1)" in err[0]
    ck = checkpoint.load(broken / "checkpoint.npz")          # finite, epoch 1
    assert ck["epoch"] == 1
    a, b = _arrays(clean / "checkpoint.npz"), _arrays(broken / "checkpoint.npz")
    for k in a:
        if k.startswith("model/"):
            assert np.array_equal(a[k], b[k]), k
    assert len(_metrics(broken)["epochs"]) == 1


@pytest.mark.parametrize("argv,status,message", [
    (["--epochs", "0"], 2, "argument --epochs: must be a positive int, got 0"),
    (["--lr", "nan"], 2, "argument --lr: must be a positive float"),
    (["--arch", "vgg"], 2, "argument --arch: invalid choice: 'vgg'"),
    (["--channels", "2"], 2, "argument --channels: invalid choice: 2"),
    (["--test-fraction", "1.5"], 1, "--test-fraction must be between 0 and 1"),
    (["--data", "/nonexistent/cats"], 1, "data folder /nonexistent/cats does not exist"),
    (["--resume", "/nonexistent/c.npz"], 1, "checkpoint /nonexistent/c.npz: no such file"),
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


def _cli(module, *args):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_process_exit_status_and_single_line(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    r = _cli("cnnlab.train", "--resume", str(tmp_path / "junk.npz"))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "not a .npz archive" in r.stderr
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
    return out / "checkpoint.npz"


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
    lines = out.strip().splitlines()
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
    assert predict.main(["--checkpoint", str(tmp_path / "none.npz"), "x.png"]) == 1
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
    assert checkpoint.load(gpu / "checkpoint.npz")["epoch"] == 1


def test_resume_without_epochs_keeps_the_runs_own_total(tmp_path, capsys):
    """A resumed run aims at the epochs its checkpoint was started with, not the default
    (the cosine schedule depends on that total)."""
    assert _run(tmp_path, "--epochs", "1") == 0
    assert train.main(["--resume", str(tmp_path / "checkpoint.npz"), "--no-progress"]) == 1
    assert "finished 1 epochs" in capsys.readouterr().err
