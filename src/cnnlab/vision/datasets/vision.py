"""``VisionDataset``: what torchvision's image data sets share (transforms on each sample)."""
from __future__ import annotations

from ...utils.data import Dataset

__all__ = ["VisionDataset"]


class VisionDataset(Dataset):
    """A data set of (image, target) samples with optional ``transform`` (on the image) and
    ``target_transform`` (on the target); subclasses implement ``_raw(index)``."""

    def __init__(self, root=None, transform=None, target_transform=None):
        self.root = root
        self.transform = transform
        self.target_transform = target_transform

    def _raw(self, index: int):
        """The (image, target) of sample ``index`` before the transforms."""
        raise NotImplementedError

    def __getitem__(self, index: int):
        img, target = self._raw(index)
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target
