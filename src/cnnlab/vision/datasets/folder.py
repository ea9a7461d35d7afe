"""``ImageFolder``: one class per sub-folder, torchvision's layout and attributes.

How the pieces fit::

    find_classes(root)      the sorted visible sub-folders -> (classes, class_to_idx)
    make_dataset(...)       per class, the files under its folder (recursively, sorted,
                            hidden ones skipped) whose extension is an image's (or that
                            ``is_valid_file`` accepts) -> [(path, class_index), ...]
    verification            (default with the default loader) each file is decoded once
                            by ``cnnlab.data.decode``: corrupt, truncated, non-image and
                            over-limit files are skipped and counted in ``skipped``
    __getitem__(i)          loader(path) -> transform; target_transform(class_index)

Unlike torchvision, hidden folders (".ipynb_checkpoints", ".git") are not classes, and a
broken file never reaches the training loop: it is skipped when the data set is made.
"""
from __future__ import annotations

import os
from typing import Callable, Optional

from ... import data as _data
from .vision import VisionDataset

__all__ = ["IMG_EXTENSIONS", "ImageFolder", "DatasetFolder", "pil_loader", "default_loader",
           "find_classes", "make_dataset", "has_file_allowed_extension"]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def has_file_allowed_extension(filename: str, extensions) -> bool:
    return filename.lower().endswith(extensions if isinstance(extensions, str)
                                     else tuple(extensions))


def pil_loader(path):
    """The image at ``path`` as an RGB Pillow image (torchvision's default loader)."""
    from PIL import Image
    with open(path, "rb") as f:
        img = Image.open(f)
        return img.convert("RGB")


default_loader = pil_loader


def _walk_order(path: str) -> tuple:
    """torchvision's order: folder by folder (sorted paths), files sorted in each."""
    return os.path.dirname(path), os.path.basename(path)


def find_classes(directory) -> tuple:
    """(sorted class names, {name: index}) from the visible sub-folders of ``directory``."""
    directory = os.fspath(directory)
    classes = sorted(e.name for e in os.scandir(directory)
                     if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"Couldn't find any class folder in {directory}.")
    return classes, {name: i for i, name in enumerate(classes)}


def make_dataset(directory, class_to_idx=None, extensions=None, is_valid_file=None,
                 allow_empty: bool = False, skipped: Optional[dict] = None) -> list:
    """[(path, class_index)] of the files of each class, class by class, paths sorted.
    Files ignored for their extension are counted in ``skipped`` under "not an image
    extension"."""
    directory = os.fspath(directory)
    if class_to_idx is None:
        _, class_to_idx = find_classes(directory)
    if (extensions is None) == (is_valid_file is None):
        raise ValueError("Both extensions and is_valid_file cannot be None or not None at "
                         "the same time")
    if extensions is not None:
        def is_valid_file(path):
            return has_file_allowed_extension(path, extensions)
    instances, found = [], set()
    for name in sorted(class_to_idx):
        for path in sorted(_data.list_files(os.path.join(directory, name), skipped),
                           key=_walk_order):
            if is_valid_file(path):
                instances.append((path, class_to_idx[name]))
                found.add(name)
            elif skipped is not None:
                skipped["not an image extension"] = skipped.get("not an image extension", 0) + 1
    empty = set(class_to_idx) - found
    if empty and not allow_empty:
        raise _no_valid_file(empty, extensions, skipped)
    return instances


def _no_valid_file(empty, extensions, skipped) -> FileNotFoundError:
    msg = f"Found no valid file for the classes {', '.join(sorted(empty))}. "
    if extensions is not None:
        msg += ("Supported extensions are: "
                + (extensions if isinstance(extensions, str) else ", ".join(extensions)))
    if skipped:
        msg += f" (skipped: {skipped})"
    return FileNotFoundError(msg)


class DatasetFolder(VisionDataset):
    """Samples ``(loader(path), class_index)`` from ``root/<class>/**/<file>``.

    Attributes as torchvision's: ``classes``, ``class_to_idx``, ``samples`` (sorted
    (path, class_index) pairs), ``targets``; and ``skipped`` ({reason: count}) with
    ``skipped_files`` ([(path, reason)]) for the files left out. ``verify`` (default: with
    the default loader) decodes each file once now, so unreadable ones are left out."""

    def __init__(self, root, loader: Callable, extensions=None, transform=None,
                 target_transform=None, is_valid_file=None, allow_empty: bool = False,
                 verify: Optional[bool] = None):
        super().__init__(os.fspath(root), transform, target_transform)
        self.loader = loader
        self.extensions = extensions
        self.skipped: dict = {}
        self.skipped_files: list = []
        classes, class_to_idx = self.find_classes(self.root)
        samples = make_dataset(self.root, class_to_idx, extensions, is_valid_file,
                               allow_empty=True, skipped=self.skipped)
        if verify is None:
            verify = loader is default_loader
        if verify:
            samples = [s for s in samples if self._readable(s[0])]
        empty = set(range(len(classes))) - {c for _, c in samples}
        if empty and not allow_empty:
            raise _no_valid_file({classes[c] for c in empty}, extensions, self.skipped)
        self.classes = classes
        self.class_to_idx = class_to_idx
        self.samples = samples
        self.targets = [c for _, c in samples]

    def _readable(self, path) -> bool:
        try:
            _data.decode(path, 8, 3)
            return True
        except _data.DataError as e:
            self.skipped[e.reason] = self.skipped.get(e.reason, 0) + 1
            self.skipped_files.append((path, e.reason))
            return False

    @staticmethod
    def make_dataset(directory, class_to_idx, extensions=None, is_valid_file=None,
                     allow_empty: bool = False) -> list:
        return make_dataset(directory, class_to_idx, extensions, is_valid_file, allow_empty)

    def find_classes(self, directory) -> tuple:
        return find_classes(directory)

    def _raw(self, index: int):
        path, target = self.samples[index]
        return self.loader(path), target

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self):
        lines = [f"Dataset {type(self).__name__}", f"    Number of datapoints: {len(self)}",
                 f"    Root location: {self.root}"]
        if self.skipped:
            lines.append(f"    Skipped: {self.skipped}")
        if self.transform is not None:
            lines.append("    " + repr(self.transform).replace("\n", "\n    "))
        return "\n".join(lines)


class ImageFolder(DatasetFolder):
    """``root/<class>/<image>`` as (image, class_index) samples: torchvision's ImageFolder
    (RGB Pillow images by default), with unreadable files skipped and counted."""

    def __init__(self, root, transform=None, target_transform=None,
                 loader: Callable = default_loader, is_valid_file=None,
                 allow_empty: bool = False, verify: Optional[bool] = None):
        super().__init__(root, loader, IMG_EXTENSIONS if is_valid_file is None else None,
                         transform=transform, target_transform=target_transform,
                         is_valid_file=is_valid_file, allow_empty=allow_empty, verify=verify)
        self.imgs = self.samples
