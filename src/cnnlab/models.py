"""The two networks of the course's cats-vs-dogs lab, sized from the data.

``build(arch, channels, image_size, num_classes)`` returns a :class:`~cnnlab.layers.Sequential`
whose parameter names ("0.weight", "3.bias", ...) are those of the equal ``torch.nn.Sequential``:

    simple   Conv2d(C, 16, 3, stride 1, padding 2), ReLU, MaxPool2d(2, 2), Flatten,
             Linear(16 * S' * S', classes)                      S' = (S + 2) // 2
    lab      3 x [Conv2d(., 16 | 32 | 64, 3, padding 1), ReLU, MaxPool2d(2, 2)], Flatten,
             Linear(64 * S' * S', 128), ReLU, Linear(128, classes)    S' = S // 8 (28 -> 3)

Weights are drawn in layer order from one seeded NumPy Generator, so the same seed gives the
same network on every backend and device.
"""
from __future__ import annotations

import numpy as np

from ._checks import ArgumentError, conv2d_output_shape, pool2d_output_shape
from .layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential

__all__ = ["ARCHITECTURES", "build", "simple", "lab"]


def _conv_block(layers, c_in, c_out, size, padding, rng, dtype):
    """Append Conv 3x3 + ReLU + MaxPool 2/2; return the spatial size after it."""
    layers += [Conv2d(c_in, c_out, 3, stride=1, padding=padding, dtype=dtype, rng=rng), ReLU(),
               MaxPool2d(2, 2)]
    size = conv2d_output_shape(size, 3, 1, padding)
    return pool2d_output_shape(size, 2, 2)


def simple(channels: int = 1, image_size: int = 28, num_classes: int = 2, *, rng=None,
           dtype=np.float32) -> Sequential:
    """Conv 16 filters 3x3 stride 1 padding 2, ReLU, MaxPool 2/2, Linear to the classes."""
    rng = np.random.default_rng(rng)
    layers: list = []
    h, w = _conv_block(layers, channels, 16, image_size, 2, rng, dtype)
    layers += [Flatten(), Linear(16 * h * w, num_classes, dtype=dtype, rng=rng)]
    return Sequential(*layers)


def lab(channels: int = 1, image_size: int = 28, num_classes: int = 2, *, rng=None,
        dtype=np.float32) -> Sequential:
    """Three blocks Conv 3x3 padding 1 (16, 32, 64 filters) + ReLU + MaxPool 2/2, then
    Linear 128, ReLU, Linear to the classes."""
    rng = np.random.default_rng(rng)
    layers: list = []
    size, c_in = image_size, channels
    for c_out in (16, 32, 64):
        size = _conv_block(layers, c_in, c_out, size, 1, rng, dtype)
        c_in = c_out
    layers += [Flatten(), Linear(64 * size[0] * size[1], 128, dtype=dtype, rng=rng), ReLU(),
               Linear(128, num_classes, dtype=dtype, rng=rng)]
    return Sequential(*layers)


ARCHITECTURES = {"simple": simple, "lab": lab}


def build(arch: str, channels: int = 1, image_size: int = 28, num_classes: int = 2, *,
          rng=None, dtype=np.float32) -> Sequential:
    """The named architecture ("simple" or "lab") for (channels, image_size, image_size)
    inputs and ``num_classes`` outputs; NumPy parameters of ``dtype`` drawn from ``rng``
    (a seed or a Generator). Move it with ``model.to("cuda")``."""
    if arch not in ARCHITECTURES:
        raise ArgumentError(f"unknown architecture {arch!r}; choose one of "
                            f"{sorted(ARCHITECTURES)}")
    for name, value, least in (("channels", channels, 1), ("num_classes", num_classes, 1),
                               ("image_size", image_size, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ArgumentError(f"{name} must be a positive integer, got {value!r}")
    try:
        return ARCHITECTURES[arch](int(channels), int(image_size), int(num_classes), rng=rng,
                                   dtype=dtype)
    except ArgumentError as e:
        raise ArgumentError(f"image_size {image_size} is too small for the {arch!r} "
                            f"architecture ({e})") from None
