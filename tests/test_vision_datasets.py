"""cnnlab.vision.datasets: ImageFolder with torchvision's classes, class_to_idx and sample
order (written out by hand below, from torchvision's documented rules: classes are the
sorted sub-folders, samples class by class, folder by folder, file names sorted), cnnlab's
messy-folder handling, and the bundled silhouettes as a data set and as a Kaggle folder
(compared with the bundled file itself).
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

import cnnlab
from cnnlab import data
from cnnlab.utils.data import DataLoader
from cnnlab.vision import datasets, transforms as T


def _png(path, value=100, size=(6, 4), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    color = (value, 255 - value, 7) if mode == "RGB" else value
    Image.new(mode, size, color).save(path)


@pytest.fixture
def messy(tmp_path):
    """Classes made out of order, a nested folder, hidden things, broken files."""
    root = tmp_path / "animals"
    _png(root / "dog" / "b.png", 10)
    _png(root / "dog" / "a.PNG", 20)                       # extensions match case-blind
    _png(root / "cat" / "z.png", 30)
    _png(root / "cat" / "inner" / "a.png", 40)             # after cat/'s own files
    _png(root / "cat" / "m.jpg", 50, mode="L")
    (root / "cat" / "notes.txt").write_text("no image")    # another extension
    (root / "cat" / "fake.png").write_text("<html>")       # an image extension, no image
    full = root / "cat" / "cut.png"
    _png(full, 60, size=(64, 64))
    full.write_bytes(full.read_bytes()[:80])               # truncated
    _png(root / "cat" / ".hidden.png", 70)                 # hidden file
    _png(root / ".ipynb_checkpoints" / "x.png", 80)        # hidden folder: not a class
    _png(root / "bird" / "only.png", 90)
    return root


def test_classes_and_samples_in_torchvisions_order(messy):
    ds = datasets.ImageFolder(messy)
    assert ds.classes == ["bird", "cat", "dog"]
    assert ds.class_to_idx == {"bird": 0, "cat": 1, "dog": 2}
    expected = [("bird/only.png", 0), ("cat/m.jpg", 1), ("cat/z.png", 1),
                ("cat/inner/a.png", 1), ("dog/a.PNG", 2), ("dog/b.png", 2)]
    assert [(os.path.relpath(p, messy), c) for p, c in ds.samples] == expected
    assert ds.targets == [c for _, c in expected] and ds.imgs == ds.samples
    assert len(ds) == 6


def test_broken_and_foreign_files_are_skipped_and_counted(messy):
    ds = datasets.ImageFolder(messy)
    assert ds.skipped == {"not an image extension": 1, "not an image": 1,
                          "corrupt or truncated": 1}
    assert sorted(os.path.basename(p) for p, _ in ds.skipped_files) == ["cut.png", "fake.png"]
    unchecked = datasets.ImageFolder(messy, verify=False)
    assert len(unchecked) == 8 and unchecked.skipped == {"not an image extension": 1}


def test_samples_are_rgb_images_and_transforms_apply(messy):
    ds = datasets.ImageFolder(messy)
    img, target = ds[2]                                       # cat/z.png
    assert isinstance(img, Image.Image) and img.mode == "RGB" and target == 1
    assert img.getpixel((0, 0)) == (30, 225, 7)
    gray, _ = ds[1]                                           # an "L" JPEG, made RGB
    assert gray.mode == "RGB"
    ds.transform = T.Compose([T.Resize((4, 4)), T.ToTensor()])
    ds.target_transform = lambda c: ds.classes[c]
    x, name = ds[0]
    assert x.shape == (3, 4, 4) and name == "bird"
    xb, yb = next(iter(DataLoader(datasets.ImageFolder(messy, T.Compose(
        [T.Resize((4, 4)), T.ToTensor()])), batch_size=4)))
    assert xb.shape == (4, 3, 4, 4) and yb.tolist() == [0, 1, 1, 1]


def test_missing_and_empty_classes(tmp_path):
    (tmp_path / "a").mkdir()
    _png(tmp_path / "b" / "x.png")
    (tmp_path / "a" / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError) as e:
        datasets.ImageFolder(tmp_path)
    assert str(e.value).startswith("Found no valid file for the classes a. Supported "
                                   "extensions are: .jpg, .jpeg, .png, .ppm, .bmp, .pgm, "
                                   ".tif, .tiff, .webp")
    ds = datasets.ImageFolder(tmp_path, allow_empty=True)
    assert ds.classes == ["a", "b"] and ds.targets == [1]
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="Couldn't find any class folder in"):
        datasets.ImageFolder(empty)
    with pytest.raises(FileNotFoundError):
        datasets.ImageFolder(tmp_path / "absent")


def test_custom_loader_and_is_valid_file(tmp_path):
    for name in ("a/1.npy", "a/2.npy", "b/3.npy", "b/skip.png"):
        p = tmp_path / name
        p.parent.mkdir(exist_ok=True)
        if name.endswith(".npy"):
            np.save(p, np.full((2, 2), int(name[2])))
        else:
            _png(p)
    ds = datasets.DatasetFolder(tmp_path, loader=lambda p: np.load(p, allow_pickle=False),
                                extensions=(".npy",))
    assert [int(x[0, 0]) for x, _ in (ds[i] for i in range(len(ds)))] == [1, 2, 3]
    with pytest.raises(ValueError, match="Both extensions and is_valid_file cannot be None"):
        datasets.DatasetFolder(tmp_path, loader=np.load)
    only_png = datasets.ImageFolder(tmp_path, is_valid_file=lambda p: p.endswith(".png"),
                                    allow_empty=True)
    assert only_png.targets == [1]


# ------------------------------------------------------------------ the bundled silhouettes


def test_catsdogs_split_is_the_bundled_file():
    images, labels, names = data.bundled(28, 1)
    train, test = datasets.CatsDogs(train=True), datasets.CatsDogs(train=False)
    assert train.classes == names == ["cat", "dog"]
    assert len(train) + len(test) == len(labels) == 1989
    assert not set(train.indices) & set(test.indices)
    for ds in (train, test):
        for i in (0, len(ds) // 2, len(ds) - 1):
            img, label = ds[i]
            assert img.mode == "L" and img.size == (28, 28)
            np.testing.assert_array_equal(np.asarray(img), images[ds.indices[i], 0])
            assert label == labels[ds.indices[i]]
    counts = np.bincount(labels)                              # stratified: 20% of each class
    assert np.bincount(test.targets).tolist() == [round(c * 0.2) for c in counts]
    other = datasets.CatsDogs(train=False, split_seed=1)
    assert list(other.indices) != list(test.indices)


def test_export_round_trips_through_image_folder(tmp_path):
    root = datasets.export_catsdogs(tmp_path / "kaggle")
    for part, train in (("train", True), ("test", False)):
        folder = datasets.ImageFolder(os.path.join(root, part), transform=T.Grayscale())
        source = datasets.CatsDogs(train=train)
        assert folder.classes == ["cat", "dog"] and len(folder) == len(source)
        assert folder.skipped == {}
        by_index = {int(os.path.basename(p)[:-4]): c for p, c in folder.samples}
        assert by_index == dict(zip(source.indices.tolist(), source.targets))
        path, label = folder.samples[5]
        i = int(os.path.basename(path)[:-4])
        np.testing.assert_array_equal(np.asarray(folder[5][0]),
                                      data.bundled(28, 1)[0][i, 0])


def test_catsdogs_through_a_loader():
    cnnlab.manual_seed(0)
    loader = DataLoader(datasets.CatsDogs(transform=T.Compose(
        [T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize((0.5,), (0.5,))])),
        batch_size=32, shuffle=True)
    x, y = next(iter(loader))
    assert x.shape == (32, 1, 28, 28) and x.dtype == cnnlab.float32 and y.dtype == cnnlab.int64
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert len(loader) == -(-len(loader.dataset) // 32)
