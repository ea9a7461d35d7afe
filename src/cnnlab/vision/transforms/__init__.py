"""``cnnlab.vision.transforms``: torchvision.transforms' names for preparing images.

    from cnnlab.vision import transforms
    transform = transforms.Compose([transforms.Resize((64, 64)), transforms.ToTensor(),
                                    transforms.Normalize((0.5,), (0.5,))])

``transforms.py`` holds the classes, ``functional.py`` the functions they call.
"""
from . import functional
from .functional import InterpolationMode
from .transforms import (CenterCrop, ColorJitter, Compose, Grayscale, Lambda, Normalize, Pad,
                         RandomCrop, RandomHorizontalFlip, RandomRotation, RandomVerticalFlip,
                         Resize, ToTensor)

__all__ = ["functional", "InterpolationMode", "Compose", "ToTensor", "Normalize", "Resize",
           "CenterCrop", "Pad", "RandomCrop", "RandomHorizontalFlip", "RandomVerticalFlip",
           "RandomRotation", "ColorJitter", "Grayscale", "Lambda"]
