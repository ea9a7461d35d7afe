"""cnnlab.data: the bundled set, the Kaggle folder layout, unreadable files, the split.

Expected pixel values come from the image files' own colours and Pillow's documented
grayscale rule (L = R*299/1000 + G*587/1000 + B*114/1000), not from cnnlab.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cnnlab import data
from cnnlab.data import DataError

PIL_DEFAULT_LIMIT = int(1024 * 1024 * 1024 // 4 // 3)  # Pillow's documented default


def _luma(r, g, b):
    return (r * 299 + g * 587 + b * 114) / 1000


def _jpeg_bytes(color=(200, 100, 50), size=(40, 30)):
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=100)
    return buf.getvalue()


@pytest.fixture
def tree(tmp_path):
    """root/train/{cat,dog,empty,.hidden}, root/test/{cat,dog} with a mix of files."""
    root = tmp_path / "kaggle"
    cat, dog = root / "train" / "cat", root / "train" / "dog"
    for d in (cat, dog, root / "train" / "empty", root / "train" / ".hidden",
              root / "test" / "cat", root / "test" / "dog"):
        d.mkdir(parents=True)
    (cat / "a.jpg").write_bytes(_jpeg_bytes())                               # RGB JPEG
    Image.new("RGBA", (20, 20), (255, 255, 255, 0)).save(cat / "b.png")       # transparent
    Image.new("L", (33, 21), 77).save(cat / "c.png")                          # grayscale
    (cat / "d.jpg").write_bytes(_jpeg_bytes(size=(200, 200))[:600])           # truncated
    (cat / "notes.txt").write_text("not an image")                           # not an image
    (cat / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")                  # hidden
    Image.new("RGB", (50, 50), (10, 20, 30)).save(dog / "e.png")              # RGB PNG
    Image.new("RGBA", (9, 9), (0, 255, 0, 255)).save(dog / "f.png")           # opaque RGBA
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "train" / ".hidden" / "g.png")
    Image.new("L", (10, 10), 200).save(root / "test" / "cat" / "h.png")
    Image.new("RGB", (10, 10), (0, 0, 255)).save(root / "test" / "dog" / "i.jpg", quality=100)
    return root


def test_folder_tree_gray(tree):
    logs = []
    x, y, xt, yt, names, skipped = data.load_folder(tree, 8, 1, log=logs.append)
    assert names == ["cat", "dog"]                       # not 'empty', not '.hidden'
    assert x.dtype == np.uint8 and x.shape == (5, 1, 8, 8)
    assert y.tolist() == [0, 0, 0, 1, 1] and yt.tolist() == [0, 1]
    assert skipped == {"corrupt or truncated": 1, "not an image": 1}
    assert any("d.jpg" in m for m in logs) and any("notes.txt" in m for m in logs)
    assert any("empty" in m and "not a class" in m for m in logs)
    expected = [_luma(200, 100, 50), 0, 77, _luma(10, 20, 30), _luma(0, 255, 0)]
    for img, value, tol in zip(x, expected, [2, 0, 0, 1, 1]):   # JPEG: a little loss
        assert np.abs(img.astype(float) - value).max() <= tol + 0.5
    assert np.abs(xt[0].astype(float) - 200).max() == 0
    assert np.abs(xt[1].astype(float) - _luma(0, 0, 255)).max() <= 2.5


def test_folder_tree_rgb(tree):
    x, y, xt, yt, names, skipped = data.load_folder(tree, 6, 3)
    assert x.shape == (5, 3, 6, 6)
    np.testing.assert_allclose(x[0].reshape(3, -1).mean(1), [200, 100, 50], atol=2)
    assert x[1].max() == 0                              # transparent -> black background
    assert (x[2] == 77).all()                           # gray -> R = G = B
    assert (x[3].reshape(3, -1).T == [10, 20, 30]).all()
    assert (x[4].reshape(3, -1).T == [0, 255, 0]).all()


def test_load_dataset_without_test_folder_splits_by_seed(tree):
    import shutil
    shutil.rmtree(tree / "test")
    for i in range(10):
        Image.new("L", (5, 5), i).save(tree / "train" / "cat" / f"extra{i}.png")
        Image.new("L", (5, 5), 100 + i).save(tree / "train" / "dog" / f"extra{i}.png")
    a = data.load_dataset(str(tree), 5, 1, seed=1, test_fraction=0.25)
    b = data.load_dataset(str(tree), 5, 1, seed=1, test_fraction=0.25)
    c = data.load_dataset(str(tree), 5, 1, seed=2, test_fraction=0.25)
    assert np.array_equal(a.x_test, b.x_test) and not np.array_equal(a.x_test, c.x_test)
    assert len(a.y_train) + len(a.y_test) == 25
    assert sorted(a.y_test.tolist()) == [0, 0, 0, 1, 1, 1]   # 13 cats, 12 dogs: a quarter each


def test_load_image_is_the_training_normalisation(tree):
    img = data.load_image(tree / "train" / "dog" / "e.png", 7, 3)
    assert img.dtype == np.float32 and img.shape == (3, 7, 7)
    np.testing.assert_array_equal(img[:, 0, 0], np.array([10, 20, 30], np.float32) / 255)
    gray = data.load_image(tree / "train" / "cat" / "c.png", 4, 1)
    np.testing.assert_array_equal(gray, np.full((1, 4, 4), 77 / 255, np.float32))
    np.testing.assert_array_equal(data.normalize(np.array([0, 255], np.uint8)), [0.0, 1.0])
    with pytest.raises(DataError, match="not an image"):
        data.load_image(tree / "train" / "cat" / "notes.txt", 4, 1)
    with pytest.raises(DataError, match="corrupt or truncated"):
        data.load_image(tree / "train" / "cat" / "d.jpg", 4, 1)
    with pytest.raises(DataError, match="channels must be 1"):
        data.load_image(tree / "train" / "cat" / "c.png", 4, 2)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_guard_stays_on(tree, monkeypatch):
    assert Image.MAX_IMAGE_PIXELS == PIL_DEFAULT_LIMIT
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40x30 = 1200 and 50x50 = 2500
    x, y, _, _, _, skipped = data.load_folder(tree, 8, 1)
    assert skipped.get("too large") == 2 and len(y) == 3
    monkeypatch.undo()
    assert Image.MAX_IMAGE_PIXELS == PIL_DEFAULT_LIMIT


def test_folder_errors_name_the_folder(tmp_path, tree):
    with pytest.raises(DataError, match="does not exist"):
        data.load_folder(tmp_path / "nope", 8, 1)
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match=r"flat has no train/ folder"):
        data.load_folder(tmp_path / "flat", 8, 1)
    (tmp_path / "flat" / "train").mkdir()
    (tmp_path / "flat" / "train" / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"no class folders in .*flat/train"):
        data.load_folder(tmp_path / "flat", 8, 1)
    (tmp_path / "flat" / "train" / "only").mkdir()
    (tmp_path / "flat" / "train" / "only" / "x.txt").write_text("text")
    (tmp_path / "flat" / "train" / "other").mkdir()
    (tmp_path / "flat" / "train" / "other" / "y.txt").write_text("text")
    with pytest.raises(DataError, match=r"no readable images in .*flat/train"):
        data.load_folder(tmp_path / "flat", 8, 1)
    (tree / "test" / "bird").mkdir()
    Image.new("L", (4, 4)).save(tree / "test" / "bird" / "b.png")
    with pytest.raises(DataError, match=r"test has class folders .* \['bird'\]"):
        data.load_folder(tree, 8, 1)


def test_bundled_set():
    x, y, names = data.bundled()
    assert x.shape == (1989, 1, 28, 28) and x.dtype == np.uint8
    assert names == ["cat", "dog"] and np.bincount(y).tolist() == [992, 997]
    x3, y3, _ = data.bundled(32, 3)
    assert x3.shape == (1989, 3, 32, 32)
    assert (x3[:, 0] == x3[:, 2]).all() and np.array_equal(y3, y)


def test_bundled_split_is_stratified_disjoint_and_seeded():
    a = data.load_dataset(seed=0)
    b = data.load_dataset(seed=0)
    c = data.load_dataset(seed=1)
    assert np.array_equal(a.y_test, b.y_test) and np.array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_test, c.x_test)
    assert len(a.y_train) + len(a.y_test) == 1989
    assert np.bincount(a.y_test).tolist() == [198, 199]      # round(992 * .2), round(997 * .2)
    _, labels, _ = data.bundled()
    train_idx, test_idx = data.split_indices(labels, 0.2, 0)
    assert not set(train_idx) & set(test_idx) and len(train_idx) + len(test_idx) == 1989
    assert a.source == "bundled cats-vs-dogs silhouettes" and a.skipped == {}
