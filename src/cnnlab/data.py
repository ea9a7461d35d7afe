"""Image data for training and prediction: the bundled cats-vs-dogs set and image folders.

How the pieces fit::

    list_files(folder, skipped)         the regular files under a folder: each directory
                                        entered once by (device, inode), so symlink loops
                                        end; FIFOs, sockets and devices skipped and counted
    open_image(path)                    a loaded PIL image from a regular file, opened
                                        without blocking, within Pillow's pixel limit
    to_8bit(img)                        16-bit and other high-depth modes scaled to 0..255
    decode(path, image_size, channels)  open_image, EXIF rotation, alpha onto black, "L" or
                                        "RGB", bilinear resize -> uint8 (C, S, S)
    printable(name)                     a name with control characters escaped, for output
    normalize(uint8 array, dtype)       x / 255 -> [0, 1], the one normalisation (NORMALIZATION
                                        is written into checkpoints); NumPy or torch
    load_image(path, size, channels)    normalize(decode(...)): what predict and show use
    bundled(size, channels)             the shipped catsdogs.npz (never unpickled)
    load_folder(root, size, channels)   root/train/<class>/*, root/test/<class>/* (Kaggle)
    load_dataset(data, ..., seed)       either of the two, split 80/20 by seed when there
                                        is no test/ folder -> Dataset (uint8 images)

Images stay uint8 (N, C, S, S) until a batch is taken, so a data set costs a quarter of its
float32 size. A folder's unreadable files (corrupt, truncated, not an image, not a regular
file, or over Pillow's decompression-bomb limit ``PIL.Image.MAX_IMAGE_PIXELS``, which stays
on: every image over it is skipped, also those up to twice over, which Pillow itself only
warns about) are skipped and counted; hidden files and folders are ignored; a class folder
without images is not a class. Names from folders and checkpoints go through ``printable``
before they are printed. A later ``ImageFolder`` calls ``list_files`` and ``decode``.
"""
from __future__ import annotations

import os
import stat
import unicodedata
import warnings
from importlib import resources
from typing import Callable, List, NamedTuple, Optional

import numpy as np

from . import _array as A
from . import _progress

__all__ = ["DataError", "Dataset", "NORMALIZATION", "CLASS_NAMES", "decode", "normalize",
           "load_image", "bundled", "load_folder", "split_indices", "load_dataset",
           "list_files", "open_image", "to_8bit", "printable"]

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


def printable(name) -> str:
    """``name`` (a str, or a path as bytes) for output on one line: control and format
    characters escaped (newline as ``\\n``, ESC as ``\\x1b``, U+202E as ``\\u202e``), and bytes
    that are not UTF-8 as ``\\xNN``; anything else, accents and CJK included, unchanged."""
    text = os.fsdecode(name) if isinstance(name, (bytes, os.PathLike)) else str(name)
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:                   # an undecodable byte (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


# 16-bit and 32-bit grayscale modes, which Pillow's convert("L") clips at 255.
_HIGH_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def to_8bit(img):
    """A high-depth grayscale image (modes I;16*, I, F) as mode "L", scaled linearly from
    its nominal range to 0..255 and rounded: 16-bit modes from 0..65535; "I" (32-bit) from
    0..65535 when its values fit there (how Pillow gave 16-bit PNGs), else from its own
    minimum..maximum; "F" (float) from 0..1 when its finite values lie there, else from their
    minimum..maximum (NaN counts as the bottom of the range). Other modes are returned as
    they are."""
    from PIL import Image

    if img.mode not in _HIGH_DEPTH:
        return img
    a = np.asarray(img, dtype=np.float64)
    finite = a[np.isfinite(a)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if img.mode.startswith("I;16") or (img.mode == "I" and lo >= 0 and hi <= 65535):
        lo, hi = 0.0, 65535.0
    elif img.mode == "F" and lo >= 0 and hi <= 1:
        lo, hi = 0.0, 1.0
    a = np.where(np.isnan(a), lo, a)
    scaled = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return Image.fromarray(np.rint(np.clip(scaled, 0, 255)).astype(np.uint8), "L")


def _to_array(img, image_size: int, channels: int) -> np.ndarray:
    """A decoded PIL image -> uint8 (channels, image_size, image_size)."""
    from PIL import Image, ImageOps

    img = to_8bit(ImageOps.exif_transpose(img))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
    a = np.asarray(img, dtype=np.uint8)
    return np.ascontiguousarray(a[None] if channels == 1 else a.transpose(2, 0, 1))


def _open_regular(path):
    """A binary file object for ``path`` if it is a regular file, else DataError. Opened
    with O_NONBLOCK, so that a FIFO (say one named x.jpg) cannot block, then checked with
    fstat on the open descriptor (no window between the check and the open)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) \
        | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(mode):
            raise DataError(f"cannot read image {printable(path)}: not a regular file "
                            f"({_file_kind(mode)})", "not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _file_kind(mode) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "not a file"


def open_image(path, draft=None):
    """A loaded PIL image from the file ``path`` (closed again), or DataError with a short
    ``reason``: not a regular file, not an image, corrupt or truncated, missing, or too
    large (more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``; Pillow itself only refuses twice
    that). ``draft`` = (mode, (w, h)) lets a JPEG decode at a reduced size."""
    from PIL import Image, UnidentifiedImageError

    try:
        with _open_regular(path) as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)   # refused below
            with Image.open(f) as img:
                limit = Image.MAX_IMAGE_PIXELS
                if limit and img.width * img.height > limit:
                    raise Image.DecompressionBombError(
                        f"{img.width} x {img.height} = {img.width * img.height} pixels, more "
                        f"than PIL.Image.MAX_IMAGE_PIXELS = {limit}")
                if draft is not None:
                    img.draft(*draft)                                # JPEG only
                img.load()
                return img
    except DataError:
        raise
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
    raise DataError(f"cannot read image {printable(path)}: {reason} ({printable(detail)})",
                    reason)


def decode(path, image_size: int, channels: int) -> np.ndarray:
    """Read one image file -> uint8 (channels, image_size, image_size).

    Raises DataError for a file that cannot be used (see ``open_image``)."""
    _check_format(image_size, channels)
    img = open_image(path, ("L" if channels == 1 else "RGB", (image_size, image_size)))
    return _to_array(img, image_size, channels)


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


def list_files(folder, skipped: Optional[dict] = None) -> list:
    """The visible regular files under ``folder`` (recursively, following symlinks), sorted.

    Each directory is entered once, known by (device, inode): a symlink loop or a second
    link to a folder adds nothing, and a file reached twice (links) is listed once. Hidden
    entries are ignored. Entries that are not regular files (FIFOs, sockets, devices),
    broken links and folders that cannot be read are counted in ``skipped`` (reason ->
    count) when it is given. Nothing here opens a file."""
    skipped = {} if skipped is None else skipped

    def skip(reason):
        skipped[reason] = skipped.get(reason, 0) + 1

    out, seen_dirs, seen_files = [], set(), set()
    stack = [os.fspath(folder)]
    while stack:
        here = stack.pop()
        try:
            st = os.stat(here)
            if (st.st_dev, st.st_ino) in seen_dirs:
                continue
            seen_dirs.add((st.st_dev, st.st_ino))
            with os.scandir(here) as it:
                entries = sorted((e for e in it if not e.name.startswith(".")),
                                 key=lambda e: e.name, reverse=True)
        except OSError:
            skip("unreadable folder")
            continue
        for e in entries:
            try:
                st = os.stat(e.path)                    # follows links
            except OSError:
                skip("broken link")
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(e.path)
            elif not stat.S_ISREG(st.st_mode):
                skip("not a regular file")
            elif (st.st_dev, st.st_ino) not in seen_files:
                seen_files.add((st.st_dev, st.st_ino))
                out.append(e.path)
    return sorted(out)


def _read_split(folder, class_names, image_size, channels, skipped, log, progress):
    """Decode folder/<class>/* for the given classes -> (uint8 images, int64 labels)."""
    paths = [(p, label) for label, name in enumerate(class_names)
             for p in list_files(os.path.join(folder, name), skipped)
             if os.path.isdir(os.path.join(folder, name))]
    images, labels = [], []
    with warnings.catch_warnings(), \
            _progress.bar(len(paths), f"reading {printable(folder)}",
                          enabled=None if progress else False, unit="img", leave=False) as bar:
        # Pillow's UserWarnings (say "Corrupt EXIF data") concern images it still decodes.
        warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
        for p, label in paths:
            try:
                images.append(decode(p, image_size, channels))
                labels.append(label)
            except DataError as e:
                skipped[e.reason] = skipped.get(e.reason, 0) + 1
                log(f"skipped: {e}")
            bar.update(1)
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
    class_names = [n for n in folders if list_files(os.path.join(train, n))]
    for n in folders:
        if n not in class_names:
            log(f"class folder {printable(os.path.join(train, n))} holds no files: not a class")
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
                   if n not in class_names and list_files(os.path.join(test, n))]
        if unknown:
            raise DataError(f"{printable(test)} has class folders that {printable(train)} has "
                            f"no images for: {[printable(n) for n in unknown]}")
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
