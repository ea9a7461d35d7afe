"""The bundled cats-vs-dogs silhouettes as a torchvision-style data set, and as a folder.

``CatsDogs(train=True)`` gives ``(PIL image "L" 28x28, label)`` samples like torchvision's
MNIST: ``data`` (uint8 (N, 28, 28)), ``targets``, ``classes`` (["cat", "dog"]). The
file has no test split, so one is drawn: ``cnnlab.data.split_indices`` (stratified, 20% per
class by default) with ``split_seed``; train=True and train=False with the same seed are
disjoint and together the whole set.

``save_image_folder(dataset, folder)`` writes any such data set as ``folder/<class>/*.png``;
``export_catsdogs(root)`` writes both halves in the Kaggle layout
(``root/train/<class>/*.png``, ``root/test/<class>/*.png``), for ImageFolder and the course's
``Dataset`` code.
"""
from __future__ import annotations

import os

import numpy as np

from ... import data as _data
from .vision import VisionDataset

__all__ = ["CatsDogs", "save_image_folder", "export_catsdogs"]


class CatsDogs(VisionDataset):
    """The 1,989 silhouettes, split by ``split_seed`` (anything ``numpy.random.default_rng``
    takes) into ``1 - test_fraction`` for ``train=True`` and ``test_fraction`` for
    ``train=False``."""

    classes = list(_data.CLASS_NAMES)

    def __init__(self, train: bool = True, transform=None, target_transform=None,
                 split_seed=0, test_fraction: float = 0.2):
        images, labels, _ = _data.bundled(28, 1)
        train_idx, test_idx = _data.split_indices(labels, test_fraction, split_seed)
        self.indices = train_idx if train else test_idx   # positions in the bundled file
        self.data = np.ascontiguousarray(images[self.indices, 0])
        self.targets = labels[self.indices].tolist()
        self.train = train
        super().__init__(None, transform, target_transform)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    def _raw(self, index: int):
        from PIL import Image
        return Image.fromarray(self.data[index]), self.targets[index]

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self):
        return (f"Dataset CatsDogs\n    Number of datapoints: {len(self)}\n    Split: "
                f"{'Train' if self.train else 'Test'}")


def save_image_folder(dataset, folder, names=None) -> str:
    """Write ``dataset``'s samples (Pillow image or uint8 (H, W) array, class index) as
    ``folder/<dataset.classes[label]>/<name>.png``; ``names`` (default: the sample's
    position, zero-padded) names the files. Returns ``folder``."""
    from PIL import Image

    folder = os.fspath(folder)
    for name in dataset.classes:
        os.makedirs(os.path.join(folder, name), exist_ok=True)
    width = len(str(max(len(dataset) - 1, 0)))
    for i in range(len(dataset)):
        img, label = dataset[i]
        if isinstance(img, np.ndarray):
            img = Image.fromarray(img)
        stem = f"{i:0{width}d}" if names is None else str(names[i])
        img.save(os.path.join(folder, dataset.classes[label], f"{stem}.png"))
    return folder


def export_catsdogs(root, split_seed=0, test_fraction: float = 0.2) -> str:
    """The silhouettes in the Kaggle layout under ``root`` (train/ and test/, each with
    cat/ and dog/); files are named by their position in the bundled file. Returns
    ``root``."""
    root = os.fspath(root)
    for train, part in ((True, "train"), (False, "test")):
        ds = CatsDogs(train=train, split_seed=split_seed, test_fraction=test_fraction)
        save_image_folder(ds, os.path.join(root, part), names=[f"{i:04d}" for i in ds.indices])
    return root
