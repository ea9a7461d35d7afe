"""Image folders from outside: symlink loops, FIFOs and other special files, high-depth
images, Pillow's pixel limit, and names that try to forge output.

What could hang (a loop, a FIFO) runs in a child process with a time limit. Expected
pixels come from NumPy computations of the documented scaling on the arrays the test
wrote, not from cnnlab.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from PIL import Image

from cnnlab import data
from cnnlab.data import DataError
from _child import describe, run_code

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX special files")


def _png(path, value=128, size=(6, 6)):
    Image.new("L", size, value).save(path)


def _load_in_child(root, image_size=6, timeout=60):
    out = run_code("numpy", f"""
from cnnlab import data
x, y, xt, yt, names, skipped = data.load_folder({str(root)!r}, {image_size}, 1)
result = [x, y, names, skipped]
""", timeout=timeout)
    assert out.status == "ok", describe(out)
    return out.value


# --------------------------------------------------------------------------- walking


def test_symlink_loops_end_and_each_image_is_read_once(tmp_path):
    # Two links to '.' made the walk exponential (training timed out at 180 s); one loop
    # read each image 41 times. Each folder is now entered once, by (device, inode).
    cat, dog = tmp_path / "train" / "cat", tmp_path / "train" / "dog"
    (cat / "sub").mkdir(parents=True)
    dog.mkdir()
    for i, p in enumerate([cat / "a.png", cat / "b.png", cat / "sub" / "e.png",
                           dog / "c.png", dog / "d.png"]):
        _png(p, 10 * i)
    os.symlink(".", cat / "self")
    os.symlink(".", cat / "again")
    os.symlink("..", cat / "sub" / "up")
    os.symlink("sub", cat / "sub2")                   # a second link to one folder
    os.symlink("a.png", cat / "a_link.png")           # a second link to one file
    os.link(dog / "c.png", dog / "c_hard.png")        # a hard link
    os.symlink("missing.png", dog / "broken.png")
    x, y, names, skipped = _load_in_child(tmp_path)
    assert names == ("cat", "dog")
    assert sorted(y.tolist()) == [0, 0, 0, 1, 1]
    assert sorted(x[:, 0, 0, 0].tolist()) == [0, 10, 20, 30, 40]      # each image once
    assert skipped == {"broken link": 1}


def test_list_files_is_sorted_and_counts_what_it_skips(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    for p in ("z.png", "a.png", "b/m.png", ".hidden/h.png", ".h.png"):
        (tmp_path / p).write_bytes(b"x")
    os.mkfifo(tmp_path / "fifo.jpg")
    skipped = {}
    files = data.list_files(tmp_path, skipped)
    assert files == sorted(str(tmp_path / p) for p in ("a.png", "b/m.png", "z.png"))
    assert skipped == {"not a regular file": 1}


# --------------------------------------------------------------------------- special files


def _special_files(folder):
    """A FIFO, a socket and a character device (a link to /dev/null), all image-named."""
    os.mkfifo(folder / "x.jpg")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "s.png"))
    os.symlink(os.devnull, folder / "null.png")
    return sock


def test_fifos_sockets_and_devices_are_skipped_and_counted(tmp_path):
    # A FIFO named x.jpg hung train and predict forever (open() waits for a writer).
    short = tempfile.mkdtemp(prefix="cnnlab", dir="/tmp")   # AF_UNIX paths are short
    try:
        root = os.path.join(short, "d")
        for c in ("cat", "dog"):
            os.makedirs(os.path.join(root, "train", c))
            _png(os.path.join(root, "train", c, "ok.png"), 50)
        from pathlib import Path
        sock = _special_files(Path(root) / "train" / "cat")
        try:
            x, y, names, skipped = _load_in_child(root)
        finally:
            sock.close()
        assert y.tolist() == [0, 1]
        assert skipped == {"not a regular file": 3}
    finally:
        import shutil
        shutil.rmtree(short)


def test_opening_a_fifo_or_a_device_fails_at_once(tmp_path):
    os.mkfifo(tmp_path / "x.jpg")
    out = run_code("numpy", f"""
from cnnlab import data
result = []
for path in ({str(tmp_path / "x.jpg")!r}, {os.devnull!r}):
    try:
        data.load_image(path, 8, 1)
    except data.DataError as e:
        result.append([e.reason, str(e)])
""", timeout=30)
    assert out.status == "ok", describe(out)
    (r1, m1), (r2, m2) = out.value
    assert r1 == r2 == "not a regular file"
    assert "a FIFO" in m1 and "a character device" in m2


# --------------------------------------------------------------------------- pixel depth


def _save(tmp_path, name, array, mode):
    path = tmp_path / name
    Image.fromarray(array).save(path)
    assert Image.open(path).mode == mode            # the file really has that mode
    return path


def _scaled(a, lo, hi):
    return np.rint(np.clip((a.astype(np.float64) - lo) * (255 / (hi - lo)), 0, 255))


@pytest.mark.parametrize("channels", [1, 3])
def test_high_depth_images_are_scaled_not_saturated(tmp_path, channels):
    # Pillow's convert("L") clips a 16-bit image at 255: 99% of the pixels were white.
    rng = np.random.default_rng(0)
    g16 = rng.integers(0, 65536, (16, 16)).astype(np.uint16)
    i32 = rng.integers(-70000, 300000, (16, 16)).astype(np.int32)
    f01 = rng.random((16, 16)).astype(np.float32)
    fwide = (rng.standard_normal((16, 16)) * 1000).astype(np.float32)
    fwide[0, 0] = np.nan
    cases = [  # file, expected 8-bit values (the documented nominal ranges)
        (_save(tmp_path, "g16.png", g16, "I;16"), _scaled(g16, 0, 65535)),
        (_save(tmp_path, "i16.tif", g16.astype(np.int32), "I"), _scaled(g16, 0, 65535)),
        (_save(tmp_path, "i32.tif", i32, "I"), _scaled(i32, i32.min(), i32.max())),
        (_save(tmp_path, "f01.tif", f01, "F"), _scaled(f01, 0, 1)),
    ]
    finite = fwide[np.isfinite(fwide)]
    expected = _scaled(np.where(np.isnan(fwide), finite.min(), fwide), finite.min(),
                       finite.max())
    cases.append((_save(tmp_path, "fwide.tif", fwide, "F"), expected))
    for path, want in cases:
        got = data.decode(path, 16, channels)
        assert got.shape == (channels, 16, 16) and got.dtype == np.uint8
        for c in range(channels):
            np.testing.assert_array_equal(got[c], want, err_msg=str(path))
    assert (cases[0][1] == 255).mean() < 0.01


def test_high_depth_folder_images_train_like_8_bit_ones(tmp_path):
    g = (np.arange(36).reshape(6, 6) * 1800).astype(np.uint16)
    for c in ("cat", "dog"):
        (tmp_path / "train" / c).mkdir(parents=True)
        Image.fromarray(g).save(tmp_path / "train" / c / "a.png")
    x, y, *_ = data.load_folder(tmp_path, 6, 1)
    np.testing.assert_array_equal(x[0, 0], _scaled(g, 0, 65535))


# --------------------------------------------------------------------------- pixel limit


def test_pixel_limit_is_enforced_as_documented(tmp_path, monkeypatch):
    # Pillow raises only past twice MAX_IMAGE_PIXELS and merely warns between 1x and 2x;
    # the documented rule is that every image over the limit is skipped and counted.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    for c in ("cat", "dog"):
        d = tmp_path / "train" / c
        d.mkdir(parents=True)
        _png(d / "fits.png", 60, (30, 30))            # 900 pixels
    _png(tmp_path / "train" / "cat" / "over.png", 70, (40, 40))      # 1600: 1.6x
    _png(tmp_path / "train" / "dog" / "bomb.png", 80, (50, 50))      # 2500: 2.5x
    x, y, _, _, names, skipped = data.load_folder(tmp_path, 8, 1)
    assert y.tolist() == [0, 1] and (x == 60).all()
    assert skipped == {"too large": 2}
    with pytest.raises(DataError, match="1600 pixels, more than PIL.Image.MAX_IMAGE_PIXELS"):
        data.decode(tmp_path / "train" / "cat" / "over.png", 8, 1)


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("raw, shown", [
    ("cat", "cat"),
    ("chat é 猫", "chat é 猫"),
    ("ca\x1b[31mt", "ca\\x1b[31mt"),
    ("two\nlines\r", "two\\nlines\\r"),
    ("tab\there", "tab\\there"),
    ("\u202egnp.exe", "\\u202egnp.exe"),              # right-to-left override
    ("bell\x07\x7f\x85", "bell\\x07\\x7f\\x85"),
    (b"bytes\xff\n.png", "bytes\\xff\\n.png"),        # not UTF-8, as a path
    ("line\u2028sep", "line\\u2028sep"),
])
def test_printable_escapes_control_characters(raw, shown):
    assert data.printable(raw) == shown
    assert data.printable(shown) == shown               # already printable: unchanged


FORGE = "ca\x1b[2Jt\nepoch 99  test acc 100.00%"


def test_train_and_predict_print_names_escaped(tmp_path):
    # A class folder (and so the checkpoint's class names) with an ANSI escape and a
    # newline: train's and predict's output must stay one line per record, without ESC.
    root = tmp_path / "d"
    for c, v in ((FORGE, 40), ("dog", 200)):
        d = root / "train" / c
        d.mkdir(parents=True)
        for i in range(6):
            _png(d / f"{i}.png", v + i)
    os.mkfifo(tmp_path / "x.jpg")
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    train = subprocess.run(
        [sys.executable, "-m", "cnnlab.train", "--data", str(root), "--epochs", "1",
         "--arch", "simple", "--image-size", "8", "--out", str(tmp_path / "run"),
         "--no-progress", "--test-fraction", "0.5"],
        capture_output=True, text=True, timeout=180, env=env)
    assert train.returncode == 0, train.stdout + train.stderr
    image = str(root / "train" / "dog" / "0.png")
    predict = subprocess.run(
        [sys.executable, "-m", "cnnlab.predict", "--checkpoint",
         str(tmp_path / "run" / "checkpoint.safetensors"), image, str(tmp_path / "x.jpg")],
        capture_output=True, text=True, timeout=60, env=env)
    assert predict.returncode == 1, predict.stdout + predict.stderr   # the FIFO failed
    assert "not a regular file" in predict.stderr
    for text in (train.stdout, train.stderr, predict.stdout, predict.stderr):
        assert "\x1b" not in text
        assert not any(line.startswith("epoch 99") for line in text.splitlines()), text
    assert data.printable(FORGE) in train.stdout and data.printable(FORGE) in predict.stdout
