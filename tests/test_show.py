"""python -m cnnlab.show: the PNGs it writes (opened with Pillow), the feature maps it draws
(checked against PyTorch) and its one-line errors.

Checkpoints are built with cnnlab.models + cnnlab.checkpoint.save (no training: the
pictures only need weights), so these tests take seconds.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from PIL import Image

from cnnlab import checkpoint, data, models, show
from cnnlab.nn import Conv2d

# Every test that draws needs the optional extra "plot"; the no-matplotlib test does not.
plot = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                          reason="matplotlib (the plot extra) is not installed")


def _checkpoint(folder, arch="lab", channels=1, seed=0):
    model = models.build(arch, channels, 28, 2, generator=seed)
    path = os.path.join(folder, f"{arch}-{channels}.npz")
    checkpoint.save(path, model, arch=arch, class_names=["cat", "dog"], image_size=28,
                    channels=channels)
    return path


def _bundled_image(folder, index=5, rgb=False):
    """One silhouette of the bundled set as a PNG file (RGB: tinted, so channels differ)."""
    im = data.bundled()[0][index, 0]
    path = os.path.join(folder, f"image{index}.png")
    if rgb:
        im = np.stack([im, im // 2, 255 - im], axis=-1)
    Image.fromarray(im).save(path)
    return path


def _png(path):
    """(width, height), pixels as float RGB, after checking it is a real PNG."""
    with Image.open(path) as im:
        assert im.format == "PNG"
        size = im.size
        pixels = np.asarray(im.convert("RGB"), dtype=np.float64)
    assert pixels.std() > 0, f"{path} is blank"
    return size, pixels


@plot
def test_filters_only(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path, "simple")
    out = tmp_path / "pictures"
    assert show.main(["--checkpoint", ckpt, "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["filters.png"]
    assert capsys.readouterr().out.split() == [str(out / "filters.png")]
    size, _ = _png(out / "filters.png")
    assert size == (400, 450)                      # 16 filters: 4 x 4 one-inch tiles + title


@plot
def test_image_writes_every_block(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path, "lab")
    image = _bundled_image(tmp_path)
    out = tmp_path / "pictures"
    assert show.main(["--checkpoint", ckpt, "--image", image, "--out", str(out)]) == 0
    expected = {  # the lab network: 16, 32, 64 channels -> grids 4x4, 6x6, 8x8
        "filters.png": (400, 450), "feature_maps_1.png": (400, 450),
        "feature_maps_2.png": (600, 650), "feature_maps_3.png": (800, 850),
        "probabilities.png": (600, 350),
    }
    assert sorted(os.listdir(out)) == sorted(expected)
    assert sorted(capsys.readouterr().out.split()) == sorted(str(out / n) for n in expected)
    for name, size in expected.items():
        assert _png(out / name)[0] == size, name


@plot
def test_rgb_filters_in_colour(tmp_path):
    ckpt = _checkpoint(tmp_path, "simple", channels=3)
    image = _bundled_image(tmp_path, rgb=True)
    out = tmp_path / "rgb"
    assert show.main(["--checkpoint", ckpt, "--image", image, "--out", str(out)]) == 0
    _, pixels = _png(out / "filters.png")
    assert np.abs(pixels[..., 0] - pixels[..., 1]).max() > 50     # not gray
    assert sorted(os.listdir(out)) == ["feature_maps_1.png", "filters.png", "probabilities.png"]


@plot
def test_feature_maps_match_torch(tmp_path):
    """feature_maps() gives the activations after Conv, ReLU, MaxPool of each block."""
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    path = _checkpoint(tmp_path, "lab", seed=3)
    model = checkpoint.load(path)["model"]
    image = np.random.default_rng(1).random((1, 28, 28)).astype(np.float32)
    maps = show.feature_maps(model, image)
    assert [m.shape for m in maps] == [(16, 14, 14), (32, 7, 7), (64, 3, 3)]
    x = torch.from_numpy(image[None])
    convs = [layer for layer in model.modules() if isinstance(layer, Conv2d)]
    assert len(convs) == 3
    for conv, got in zip(convs, maps):
        x = tf.max_pool2d(tf.relu(tf.conv2d(x, torch.from_numpy(conv.weight.detach().numpy()),
                                            torch.from_numpy(conv.bias.detach().numpy()),
                                            padding=1)), 2)
        np.testing.assert_allclose(got, x[0].numpy(), rtol=1.3e-6, atol=1e-5)


def test_grid_shape():
    assert [show.grid_shape(n) for n in (1, 2, 3, 4, 5, 16, 32, 64)] == \
        [(1, 1), (1, 2), (2, 2), (2, 2), (2, 3), (4, 4), (6, 6), (8, 8)]


def test_no_matplotlib_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib -> ImportError
    ckpt = _checkpoint(tmp_path, "simple")
    assert show.main(["--checkpoint", ckpt, "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matplotlib is not installed" in err and "cnnlab[plot]" in err
    assert not (tmp_path / "o").exists()


@plot
def test_errors_one_line(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path, "simple")
    assert show.main(["--checkpoint", str(tmp_path / "missing.npz"), "--out",
                      str(tmp_path / "o")]) == 2           # a checkpoint problem, as predict
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not a picture")
    assert show.main(["--checkpoint", ckpt, "--image", str(not_an_image), "--out",
                      str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read image" in err
    with pytest.raises(SystemExit) as e:
        show.main(["--out", str(tmp_path)])          # --checkpoint is required
    assert e.value.code == 2


@plot
def test_python_dash_m(tmp_path):
    """The module runs as a command (a fresh interpreter, as a user types it)."""
    ckpt = _checkpoint(tmp_path, "simple")
    src = str(Path(show.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [src] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    r = subprocess.run([sys.executable, "-m", "cnnlab.show", "--checkpoint", ckpt, "--out",
                        str(tmp_path / "cli")], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(tmp_path / "cli" / "filters.png")]
    assert _png(tmp_path / "cli" / "filters.png")[0] == (400, 450)


@plot
def test_a_figure_ending_a_cell_is_shown_inline(tmp_path):
    """IPython's own display formatter (what Jupyter calls on a cell's last value) finds a
    PNG for each figure, without pyplot's inline backend, and it is the picture the command
    writes."""
    formatters = pytest.importorskip("IPython.core.formatters")
    ckpt = _checkpoint(tmp_path, "simple")
    assert show.main(["--checkpoint", ckpt, "--out", str(tmp_path / "cmd")]) == 0
    model = checkpoint.load(ckpt)["model"]
    fig = show.filters_figure(show.first_conv(model).weight)   # a tensor that requires grad
    data, _ = formatters.DisplayFormatter().format(fig)
    assert data["text/plain"].startswith("<Figure size 400x450")
    inline = tmp_path / "inline.png"
    inline.write_bytes(data["image/png"])
    size, pixels = _png(inline)
    assert size == (400, 450)
    np.testing.assert_array_equal(pixels, _png(tmp_path / "cmd" / "filters.png")[1])


@plot
def test_curves_figure_draws_the_history(tmp_path):
    rows = [{"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.5 + e / 10,
             "test_loss": 1.5 / e, "test_accuracy": 0.4 + e / 10} for e in (1, 2, 3)]
    fig = show.curves_figure(rows)
    lines = {(ax.get_title(), line.get_label()): (list(line.get_xdata()), line.get_ydata())
             for ax in fig.axes for line in ax.get_lines()}
    assert sorted(lines) == [("accuracy (%)", "test"), ("accuracy (%)", "train"),
                             ("cross-entropy loss", "test"), ("cross-entropy loss", "train")]
    np.testing.assert_allclose(lines["cross-entropy loss", "test"][1], [1.5, 0.75, 0.5])
    np.testing.assert_allclose(lines["accuracy (%)", "train"][1], [60, 70, 80])
    assert all(x == [1, 2, 3] for x, _ in lines.values())
    (tmp_path / "c.png").write_bytes(fig._repr_png_())
    assert _png(tmp_path / "c.png")[0] == (900, 360)
    no_test = show.curves_figure([{k: v for k, v in r.items() if not k.startswith("test")}
                                  for r in rows])
    assert [line.get_label() for ax in no_test.axes for line in ax.get_lines()] == \
        ["train", "train"]
