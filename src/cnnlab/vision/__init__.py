"""``cnnlab.vision``: torchvision's names for images. ``datasets`` (ImageFolder, the bundled
silhouettes) and ``transforms`` (Compose, Resize, ToTensor, Normalize, random
augmentations), on Pillow images and cnnlab Tensors. torchvision is not needed."""
from . import datasets, transforms

__all__ = ["datasets", "transforms"]
