"""python -m cnnlab.predict is honest: it says what the model was trained on and warns when
an image is far from those training images. The expected numbers are computed here by hand
(NumPy on the decoded pixels), not by cnnlab.imagestats."""
from __future__ import annotations

import re

import numpy as np
import pytest

from cnnlab import checkpoint, data, imagestats, models, predict

PIL = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def silhouette_model(tmp_path_factory):
    """An (untrained) lab network with the bundled set's training_data, as train stores it."""
    gray, _, names = data.bundled(28, 1)
    rgb, _, _ = data.bundled(28, 3)
    path = tmp_path_factory.mktemp("ck") / "checkpoint.safetensors"
    checkpoint.save(path, models.build("lab", 1, 28, 2, generator=0), arch="lab",
                    class_names=names, image_size=28, channels=1,
                    training_data=imagestats.training_data(data.BUNDLED_NAME, gray, rgb))
    return str(path), gray


def _png(folder, name, array):
    """array uint8 (H, W) or (H, W, 3) -> a PNG file."""
    path = str(folder / name)
    PIL.fromarray(array).save(path)
    return path


def _by_hand(path):
    """The numbers imagestats describes, straight from the file's 28x28 gray pixels and
    RGB pixels: brightness, contrast, midtones, colour."""
    gray = np.asarray(PIL.open(path).convert("L").resize((28, 28), PIL.BILINEAR), np.float64)
    rgb = np.asarray(PIL.open(path).convert("RGB").resize((28, 28), PIL.BILINEAR), np.float64)
    return {"brightness": gray.mean() / 255, "contrast": gray.std() / 255,
            "midtones": np.mean((gray > 25.5) & (gray < 229.5)),
            "colour": np.mean(rgb.max(axis=2) - rgb.min(axis=2)) / 255}


def _run(capsys, ckpt, *images):
    code = predict.main(["--checkpoint", ckpt, *images])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_says_what_the_model_saw_and_keeps_quiet_for_silhouettes(silhouette_model, tmp_path,
                                                                  capsys):
    ckpt, gray = silhouette_model
    paths = [_png(tmp_path, f"s{i}.png", gray[i, 0]) for i in (0, 700, 1500)]
    code, out, err = _run(capsys, ckpt, *paths)
    assert code == 0 and err == []
    assert out[0] == (f"model trained on {data.BUNDLED_NAME}: {len(gray):,} 28x28 grayscale "
                      f"images")
    assert len(out) == 4


def _warned(err, path):
    lines = [e for e in err if f"warning: {path} is unlike the training images" in e]
    assert len(lines) == 1, err
    return {m[0]: float(m[1]) for m in re.findall(r"(\w+) (\d\.\d\d) \(training", lines[0])}


def test_warns_for_a_colour_photo_and_an_inverted_silhouette(silhouette_model, tmp_path,
                                                             capsys):
    ckpt, gray = silhouette_model
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:96, 0:96] / 95.0
    photo = np.stack([180 * xx + 40, 150 * yy + 60, 120 * (1 - xx * yy) + 50], axis=2)
    photo = np.clip(photo + rng.normal(0, 20, photo.shape), 0, 255).astype(np.uint8)
    inverted = 255 - gray[42, 0]
    paths = [_png(tmp_path, "photo.png", photo), _png(tmp_path, "inverted.png", inverted),
             _png(tmp_path, "plain.png", gray[42, 0])]
    code, out, err = _run(capsys, ckpt, *paths)
    assert code == 0 and len(out) == 4 and len(err) == 2
    # the training images' ranges, by hand over the bundled set
    train_gray = gray.reshape(len(gray), -1).astype(np.float64)
    colour_range = (0.0, 0.0)               # gray silhouettes: R = G = B everywhere
    mid = np.mean((train_gray > 25.5) & (train_gray < 229.5), axis=1)
    photo_found = _warned(err, paths[0])
    expected = _by_hand(paths[0])
    assert photo_found["colour"] == pytest.approx(expected["colour"], abs=0.006)
    assert expected["colour"] > colour_range[1] + 0.1
    assert photo_found["midtones"] == pytest.approx(expected["midtones"], abs=0.006)
    assert expected["midtones"] > np.percentile(mid, 99) + 0.1
    inverted_found = _warned(err, paths[1])
    expected = _by_hand(paths[1])
    assert "brightness" in inverted_found
    assert inverted_found["brightness"] == pytest.approx(expected["brightness"], abs=0.006)
    bright = train_gray.mean(axis=1) / 255
    assert not np.percentile(bright, 1) - 0.1 <= expected["brightness"] <= \
        np.percentile(bright, 99) + 0.1
    assert not any(paths[2] in e for e in err)


def test_without_training_data_it_says_so(tmp_path, capsys):
    ck = tmp_path / "c.safetensors"
    checkpoint.save(ck, models.build("simple", 3, 16, 2, generator=0), arch="simple",
                    class_names=["a", "b"], image_size=16, channels=3)
    img = _png(tmp_path, "x.png", np.zeros((16, 16, 3), np.uint8))
    code, out, err = _run(capsys, str(ck), img)
    assert code == 0 and err == []
    assert out[0] == "model trained on 16x16 RGB images (the checkpoint does not say which " \
                     "data set)"


def test_a_bad_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    np.savez(tmp_path / "old.npz", meta=np.array("{}"))
    img = _png(tmp_path, "x.png", np.zeros((8, 8), np.uint8))
    for bad in (tmp_path / "old.npz", tmp_path / "none.safetensors", tmp_path):
        code, out, err = _run(capsys, str(bad), img)
        assert code == 2 and out == [] and len(err) == 1 and str(bad) in err[0]
    assert "format changed" in _run(capsys, str(tmp_path / "old.npz"), img)[2][0]
