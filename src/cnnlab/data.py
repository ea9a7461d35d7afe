"""Image data for training and prediction: the bundled cats-vs-dogs set and image folders.

How the pieces fit::

    decode(path, image_size, channels)  Pillow: EXIF rotation, alpha onto black, "L" or
                                        "RGB", bilinear resize -> uint8 (C, S, S)
    normalize(uint8 array, dtype)       x / 255 -> [0, 1], the one normalisation (NORMALIZATION
                                        is written into checkpoints); NumPy or torch
    load_image(path, size, channels)    normalize(decode(...)): what predict and show use
    bundled(size, channels)             the shipped catsdogs.npz (never unpickled)
    load_folder(root, size, channels)   root/train/<class>/*, root/test/<class>/* (Kaggle)
    load_dataset(data, ..., seed)       either of the two, split 80/20 by seed when there
                                        is no test/ folder -> Dataset (uint8 images)

Images stay uint8 (N, C, S, S) until a batch is taken, so a data set costs a quarter of its
float32 size. A folder's unreadable files (corrupt, truncated, not an image, or over Pillow's
decompression-bomb limit, which stays on) are skipped and counted; hidden files and
folders are ignored; a class folder without images is not a class.
"""
from __future__ import annotations

import os
import warnings
from importlib import resources
from typing import Callable, List, NamedTuple, Optional

import numpy as np

from . import _array as A

__all__ = ["DataError", "Dataset", "NORMALIZATION", "CLASS_NAMES", "decode", "normalize",
           "load_image", "bundled", "load_folder", "split_indices", "load_dataset"]

NORMALIZATION = {"divide_by": 255.0}
CLASS_NAMES = ["cat", "dog"]  # labels 0 and 1 of the bundled set
BUNDLED_NAME = "bundled cats-vs-dogs silhouettes"


class DataError(ValueError):
    """Data that cannot be used: a missing folder, no classes, no images, a bad file.
    ``reason`` is a short category for a file that cannot be read ("not an image", ...)."""

    def __init__(self, message: str, reason: Optional[str] = None):
        super().__init__(message)
        self.reason = reason


class Dataset(NamedTuple):
    """A train/test split. Images uint8 (N, C, S, S) in 0..255, labels int64 (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: List[str]
    source: str
    skipped: dict  # {"reason": count} over the files that could not be read


def normalize(images, dtype=np.float32):
    """uint8 images (NumPy or torch, any shape) -> ``dtype`` values in [0, 1] (x / 255)."""
    return A.convert(images, images.device if A.is_tensor(images) else None, dtype) \
        / NORMALIZATION["divide_by"]


def _check_format(image_size, channels):
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
            or image_size < 1:
        raise DataError(f"image_size must be a positive integer, got {image_size!r}")
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")


def _to_array(img, image_size: int, channels: int) -> np.ndarray:
    """A decoded PIL image -> uint8 (channels, image_size, image_size)."""
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
    a = np.asarray(img, dtype=np.uint8)
    return np.ascontiguousarray(a[None] if channels == 1 else a.transpose(2, 0, 1))


def decode(path, image_size: int, channels: int) -> np.ndarray:
    """Read one image file -> uint8 (channels, image_size, image_size).

    Raises DataError for a file Pillow cannot read (corrupt, truncated, not an image, or
    larger than ``PIL.Image.MAX_IMAGE_PIXELS`` allows)."""
    from PIL import Image, UnidentifiedImageError

    _check_format(image_size, channels)
    try:
        with Image.open(path) as img:
            img.draft("L" if channels == 1 else "RGB", (image_size, image_size))  # JPEG only
            img.load()
            return _to_array(img, image_size, channels)
    except UnidentifiedImageError:
        reason, detail = "not an image", "Pillow cannot identify it"
    except Image.DecompressionBombError as e:
        reason, detail = "too large", str(e)
    except FileNotFoundError:
        reason, detail = "missing", "no such file"
    except IsADirectoryError:
        reason, detail = "not an image", "a folder"
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        reason, detail = "corrupt or truncated", str(e)
    raise DataError(f"cannot read image {path}: {reason} ({detail})", reason)


def load_image(path, image_size: int, channels: int) -> np.ndarray:
    """One image as the network sees it: float32 (channels, image_size, image_size) in
    [0, 1], decoded and normalised exactly like the training data."""
    return normalize(decode(path, image_size, channels))


# --------------------------------------------------------------------------- data sets


def bundled(image_size: int = 28, channels: int = 1):
    """The shipped silhouettes: (images uint8 (1989, C, S, S), labels int64, class names).

    The file stores 28x28 grayscale; other sizes are resized as folder images are, and
    3 channels repeat the gray one."""
    _check_format(image_size, channels)
    ref = resources.files("cnnlab") / "datasets" / "catsdogs.npz"
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as z:
        images, labels = z["images"], z["labels"].astype(np.int64)
    if image_size != images.shape[-1]:
        from PIL import Image
        images = np.stack([_to_array(Image.fromarray(im), image_size, 1)[0] for im in images])
    x = np.repeat(images[:, None], channels, axis=1)
    return np.ascontiguousarray(x), labels, list(CLASS_NAMES)


def _visible(names):
    return sorted(n for n in names if not n.startswith("."))


def _class_folders(folder: str) -> list:
    if not os.path.isdir(folder):
        raise DataError(f"{folder} is not a folder")
    return [n for n in _visible(os.listdir(folder)) if os.path.isdir(os.path.join(folder, n))]


def _files(folder: str) -> list:
    """Visible files under ``folder`` (recursively, hidden folders skipped), sorted."""
    out = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = _visible(dirs)
        out += [os.path.join(root, f) for f in _visible(files)]
    return sorted(out)


def _read_split(folder, class_names, image_size, channels, skipped, log, progress):
    """Decode folder/<class>/* for the given classes -> (uint8 images, int64 labels)."""
    from tqdm import tqdm

    paths = [(p, label) for label, name in enumerate(class_names)
             for p in _files(os.path.join(folder, name))
             if os.path.isdir(os.path.join(folder, name))]
    images, labels = [], []
    with warnings.catch_warnings():
        # Pillow's UserWarnings (say "Corrupt EXIF data") concern images it still decodes.
        warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
        for p, label in tqdm(paths, desc=f"reading {folder}", unit="img", leave=False,
                             disable=None if progress else True):
            try:
                images.append(decode(p, image_size, channels))
                labels.append(label)
            except DataError as e:
                skipped[e.reason] = skipped.get(e.reason, 0) + 1
                log(f"skipped: {e}")
    if not images:
        return np.zeros((0, channels, image_size, image_size), np.uint8), np.zeros(0, np.int64)
    return np.stack(images), np.asarray(labels, np.int64)


def load_folder(root, image_size: int, channels: int, log: Callable = lambda s: None,
                progress: bool = False):
    """Read the Kaggle "Cats and Dogs image classification" layout.

    ``root/train/<class>/*`` and, if present, ``root/test/<class>/*``. Classes are the sorted
    names of the visible folders under train/ that hold at least one file. Returns
    ``(x_train, y_train, x_test or None, y_test or None, class_names, skipped)``.
    """
    _check_format(image_size, channels)
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DataError(f"data folder {root} does not exist")
    train = os.path.join(root, "train")
    if not os.path.isdir(train):
        raise DataError(f"{root} has no train/ folder (expected {train}/<class>/<image>)")
    folders = _class_folders(train)
    if not folders:
        raise DataError(f"no class folders in {train} (expected {train}/<class>/<image>)")
    class_names = [n for n in folders if _files(os.path.join(train, n))]
    for n in folders:
        if n not in class_names:
            log(f"class folder {os.path.join(train, n)} holds no files: not a class")
    if len(class_names) < 2:
        raise DataError(f"a classifier needs at least 2 class folders with images in {train}, "
                        f"found {class_names}")
    skipped: dict = {}
    x_train, y_train = _read_split(train, class_names, image_size, channels, skipped, log,
                                   progress)
    if len(x_train) == 0:
        raise DataError(f"no readable images in {train} (skipped: {skipped})")
    x_test = y_test = None
    test = os.path.join(root, "test")
    if os.path.isdir(test):
        unknown = [n for n in _class_folders(test)
                   if n not in class_names and _files(os.path.join(test, n))]
        if unknown:
            raise DataError(f"{test} has class folders that {train} has no images for: "
                            f"{unknown}")
        x_test, y_test = _read_split(test, class_names, image_size, channels, skipped, log,
                                     progress)
        if len(x_test) == 0:
            raise DataError(f"no readable images in {test} (skipped: {skipped})")
    return x_train, y_train, x_test, y_test, class_names, skipped


def split_indices(labels, test_fraction: float, rng):
    """Stratified split: per class, a seeded permutation's first ``round(n * test_fraction)``
    go to the test set. Returns sorted (train_indices, test_indices)."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(rng)
    train, test = [], []
    for c in np.unique(labels):
        perm = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(len(perm) * test_fraction))
        test.append(perm[:n_test])
        train.append(perm[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_dataset(data: Optional[str] = None, image_size: int = 28, channels: int = 1,
                 seed=0, test_fraction: float = 0.2, log: Callable = lambda s: None,
                 progress: bool = False) -> Dataset:
    """The bundled set (``data`` None) or an image folder, as a :class:`Dataset`. Without a
    test/ folder, a stratified split by ``seed`` (an int or a Generator) holds out
    ``test_fraction``."""
    if data is None:
        x, y, names = bundled(image_size, channels)
        x_test = None
        skipped, source = {}, BUNDLED_NAME
    else:
        x, y, x_test, y_test, names, skipped = load_folder(data, image_size, channels, log,
                                                           progress)
        source = os.fspath(data)
    if x_test is None:
        tr, te = split_indices(y, test_fraction, seed)
        if len(tr) == 0 or len(te) == 0:
            raise DataError(f"{source}: too few images ({len(y)}) to hold out a test set")
        x, y, x_test, y_test = x[tr], y[tr], x[te], y[te]
    return Dataset(x, y, x_test, y_test, names, source, skipped)
