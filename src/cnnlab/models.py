"""The networks of the course's cats-vs-dogs lab, as ``nn.Module`` subclasses shaped like the
course's ``CNNClassifier``: ``conv_layers`` (an ``nn.Sequential`` of conv blocks), a
``view(x.size(0), -1)``, ``fc_layers`` (an ``nn.Sequential`` of Linear layers)::

    lab      3 x [Conv2d(., 16 | 32 | 64, 3, padding=1), ReLU, MaxPool2d(2, 2)],
             Linear(64 * S' * S', 128), ReLU, Linear(128, classes)        S' = S // 8
    simple   Conv2d(C, 16, 3, padding=2), ReLU, MaxPool2d(2, 2),
             Linear(16 * S' * S', classes)                                S' = (S + 2) // 2

The state_dict keys ("conv_layers.0.weight", "fc_layers.2.bias", ...) are those of the
same class written in torch, so weights move between the two by ``load_state_dict``.
Weights are torch's initialisation drawn from one ``cnnlab.Generator`` in layer order, so
the same seed gives the same network on every backend and device.
"""
from __future__ import annotations

import numpy as np

from . import nn
from ._checks import ArgumentError, conv2d_output_shape, pool2d_output_shape
from ._types import as_dtype
from .random import Generator, resolve, use_generator

__all__ = ["CNNClassifier", "ARCHITECTURES", "build", "simple", "lab"]


class CNNClassifier(nn.Module):
    """Conv blocks (Conv2d 3x3 with ``padding``, ReLU, MaxPool2d(2, 2)) with ``filters``
    output channels each, then Linear(flat, ``hidden``), ReLU, Linear(hidden, classes) (or
    a single Linear when ``hidden`` is None). Input (N, channels, image_size, image_size)
    -> logits (N, num_classes)."""

    def __init__(self, channels: int = 1, image_size: int = 28, num_classes: int = 2,
                 filters=(16, 32, 64), hidden=128, padding: int = 1, dtype=None):
        super().__init__()
        blocks, c_in, size = [], channels, (image_size, image_size)
        for c_out in filters:
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=padding, dtype=dtype), nn.ReLU(),
                       nn.MaxPool2d(2, 2)]
            size = pool2d_output_shape(conv2d_output_shape(size, 3, 1, padding), 2, 2)
            c_in = c_out
        self.conv_layers = nn.Sequential(*blocks)
        flat = c_in * size[0] * size[1]
        if hidden is None:
            self.fc_layers = nn.Sequential(nn.Linear(flat, num_classes, dtype=dtype))
        else:
            self.fc_layers = nn.Sequential(nn.Linear(flat, hidden, dtype=dtype), nn.ReLU(),
                                           nn.Linear(hidden, num_classes, dtype=dtype))

    def forward(self, x):
        x = self.conv_layers(x)
        x = x.view(x.size(0), -1)
        x = self.fc_layers(x)
        return x


def _generator(generator):
    """A Generator from a Generator, an int seed, or None (the default generator)."""
    if generator is None or isinstance(generator, Generator):
        return resolve(generator)
    return Generator().manual_seed(generator)


def lab(channels: int = 1, image_size: int = 28, num_classes: int = 2, *, generator=None,
        dtype="float32") -> CNNClassifier:
    """Three conv blocks (16, 32, 64 filters, padding 1), Linear 128, ReLU, Linear."""
    with use_generator(_generator(generator)):
        return CNNClassifier(channels, image_size, num_classes, (16, 32, 64), 128, 1, dtype)


def simple(channels: int = 1, image_size: int = 28, num_classes: int = 2, *, generator=None,
           dtype="float32") -> CNNClassifier:
    """One conv block (16 filters, padding 2), then a Linear layer to the classes."""
    with use_generator(_generator(generator)):
        return CNNClassifier(channels, image_size, num_classes, (16,), None, 2, dtype)


ARCHITECTURES = {"simple": simple, "lab": lab}


def build(arch: str, channels: int = 1, image_size: int = 28, num_classes: int = 2, *,
          generator=None, dtype="float32") -> CNNClassifier:
    """The named architecture ("simple" or "lab") for (channels, image_size, image_size)
    inputs and ``num_classes`` outputs, on "cpu"; its weights drawn from ``generator`` (a
    cnnlab.Generator or an int seed; default: cnnlab's default generator). Move it with
    ``model.to(device)``."""
    if arch not in ARCHITECTURES:
        raise ArgumentError(f"unknown architecture {arch!r}; choose one of "
                            f"{sorted(ARCHITECTURES)}")
    for name, value in (("channels", channels), ("num_classes", num_classes),
                        ("image_size", image_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ArgumentError(f"{name} must be a positive integer, got {value!r}")
    if not as_dtype(dtype).is_floating_point:
        raise ArgumentError(f"dtype must be float32 or float64, got {dtype}")
    try:
        return ARCHITECTURES[arch](int(channels), int(image_size), int(num_classes),
                                   generator=generator, dtype=dtype)
    except ArgumentError as e:
        raise ArgumentError(f"image_size {image_size} is too small for the {arch!r} "
                            f"architecture ({e})") from None
