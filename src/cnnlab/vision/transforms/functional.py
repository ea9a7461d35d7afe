"""torchvision.transforms.functional's image functions, on Pillow images and cnnlab Tensors.

Geometry and colour work on ``PIL.Image`` s (Pillow does the pixels); ``to_tensor`` turns a
Pillow image or an (H, W[, C]) ndarray into a (C, H, W) Tensor, ``normalize`` works on
tensors. Sizes are (height, width), Pillow's are (width, height): each function converts.
Semantics, defaults and error messages are torchvision's.
"""
from __future__ import annotations

import numbers
import sys
import warnings
from collections.abc import Sequence
from enum import Enum

import numpy as np

from ..._array import ns
from ...tensor import Tensor, from_numpy
from ..._types import get_default_dtype

__all__ = ["InterpolationMode", "to_tensor", "normalize", "resize", "crop", "center_crop",
           "pad", "hflip", "vflip", "rotate", "to_grayscale", "rgb_to_grayscale",
           "adjust_brightness", "adjust_contrast", "adjust_saturation", "adjust_hue",
           "get_dimensions", "get_image_size", "get_image_num_channels"]


class InterpolationMode(Enum):
    """Interpolation methods, as torchvision names them."""

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


_PIL_FILTER = {InterpolationMode.NEAREST: 0, InterpolationMode.NEAREST_EXACT: 0,
               InterpolationMode.LANCZOS: 1, InterpolationMode.BILINEAR: 2,
               InterpolationMode.BICUBIC: 3, InterpolationMode.BOX: 4,
               InterpolationMode.HAMMING: 5}
_FROM_INT = {0: InterpolationMode.NEAREST, 1: InterpolationMode.LANCZOS,
             2: InterpolationMode.BILINEAR, 3: InterpolationMode.BICUBIC,
             4: InterpolationMode.BOX, 5: InterpolationMode.HAMMING}


def interpolation_mode(value) -> InterpolationMode:
    """An InterpolationMode from itself or from a Pillow filter number (with torchvision's
    warning)."""
    if isinstance(value, int) and not isinstance(value, bool) and value in _FROM_INT:
        warnings.warn("Argument 'interpolation' of type int is deprecated since 0.13 and will "
                      "be removed in 0.15. Please use InterpolationMode enum.")
        return _FROM_INT[value]
    if not isinstance(value, InterpolationMode):
        raise TypeError("Argument interpolation should be a InterpolationMode or a "
                        "corresponding Pillow integer constant")
    return value


def _is_pil(img) -> bool:
    from PIL import Image
    return isinstance(img, Image.Image)


def _pil(img):
    if not _is_pil(img):
        raise TypeError(f"img should be PIL Image. Got {type(img)}")
    return img


def get_dimensions(img) -> list:
    """[channels, height, width] of a Pillow image or a (..., C, H, W) Tensor."""
    if isinstance(img, Tensor):
        shape = list(img.shape)
        return ([1] + shape) if len(shape) == 2 else shape[-3:]
    img = _pil(img)
    return [len(img.getbands()), img.height, img.width]


def get_image_size(img) -> list:
    """[width, height], as torchvision's."""
    _, h, w = get_dimensions(img)
    return [w, h]


def get_image_num_channels(img) -> int:
    return get_dimensions(img)[0]


# --------------------------------------------------------------------------- conversion


def to_tensor(pic) -> Tensor:
    """A Pillow image or an (H, W) / (H, W, C) ndarray -> a (C, H, W) Tensor. uint8 data
    (modes L, RGB, RGBA, P, 1, ...) becomes the default float dtype divided by 255, so in
    [0, 1]; other data ("I", "I;16", "F" images, non-uint8 arrays) keeps its values."""
    if isinstance(pic, np.ndarray):
        if pic.ndim not in (2, 3):
            raise ValueError(f"pic should be 2/3 dimensional. Got {pic.ndim} dimensions.")
        a = pic[:, :, None] if pic.ndim == 2 else pic
        a = np.ascontiguousarray(a.transpose(2, 0, 1))
    elif _is_pil(pic):
        little = sys.byteorder == "little"
        kinds = {"I": np.int32, "I;16" if little else "I;16B": np.int16, "F": np.float32}
        a = np.array(pic, kinds.get(pic.mode, np.uint8), copy=True)
        if pic.mode == "1":
            a = 255 * a
        a = np.ascontiguousarray(a.reshape(pic.height, pic.width, len(pic.getbands()))
                                 .transpose(2, 0, 1))
    else:
        raise TypeError(f"pic should be PIL Image or ndarray. Got {type(pic)}")
    if a.dtype == np.uint8:
        float_type = get_default_dtype().numpy
        a = a.astype(float_type) / float_type.type(255)
    return from_numpy(a)


def normalize(tensor: Tensor, mean, std, inplace: bool = False) -> Tensor:
    """``(tensor - mean[c]) / std[c]`` per channel c of a float (..., C, H, W) Tensor."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"img should be Tensor Image. Got {type(tensor)}")
    if not tensor.dtype.is_floating_point:
        raise TypeError(f"Input tensor should be a float tensor. Got {tensor.dtype}.")
    if tensor.ndim < 3:
        raise ValueError(f"Expected tensor to be a tensor image of size (..., C, H, W). Got "
                         f"tensor.size() = {tensor.size()}.")
    a = tensor._data
    dt = tensor.dtype.numpy
    m, s = np.asarray(mean, dtype=dt), np.asarray(std, dtype=dt)
    if (s == 0).any():
        raise ValueError(f"std evaluated to zero after conversion to {tensor.dtype}, leading "
                         f"to division by zero.")
    if m.ndim == 1:
        m = m.reshape(-1, 1, 1)
    if s.ndim == 1:
        s = s.reshape(-1, 1, 1)
    if not isinstance(a, np.ndarray):       # the torch twin: the constants on its device
        m, s = ns(a).asarray(m, a), ns(a).asarray(s, a)
    out = (a - m) / s
    if inplace:
        return tensor._set(out)
    return Tensor._make(out)


# --------------------------------------------------------------------------- geometry


def _resized_size(height: int, width: int, size: list, max_size):
    """torchvision's rule: [h, w] given, or the shorter edge to ``size[0]`` keeping the
    aspect ratio (the longer edge truncated), then capped by ``max_size``."""
    if len(size) == 2:
        if max_size is not None:
            raise ValueError("max_size should only be passed if size specifies the length of "
                             "the smaller edge, i.e. size should be an int or a sequence of "
                             "length 1 in torchscript mode.")
        return [int(size[0]), int(size[1])]
    short, long = (width, height) if width <= height else (height, width)
    new_short = int(size[0])
    new_long = int(new_short * long / short)
    if max_size is not None:
        if max_size <= new_short:
            raise ValueError(f"max_size = {max_size} must be strictly greater than the "
                             f"requested size for the smaller edge size = {size}")
        if new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    return [new_h, new_w]


def resize(img, size, interpolation=InterpolationMode.BILINEAR, max_size=None,
           antialias=True):
    """Resize to ``size`` = (h, w), or the shorter edge to ``size`` (an int, or a 1-item
    sequence). Pillow always antialiases."""
    img = _pil(img)
    mode = interpolation_mode(interpolation)
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = [int(size)]
    elif not isinstance(size, Sequence) or len(size) not in (1, 2):
        raise TypeError(f"Got inappropriate size arg: {size}")
    new_h, new_w = _resized_size(img.height, img.width, list(size), max_size)
    if [img.height, img.width] == [new_h, new_w]:
        return img
    return img.resize((new_w, new_h), _PIL_FILTER[mode])


def crop(img, top: int, left: int, height: int, width: int):
    """The box of ``height`` x ``width`` from (top, left); outside the image is 0."""
    return _pil(img).crop((left, top, left + width, top + height))


def _padding(padding) -> list:
    """[left, top, right, bottom] from an int, or a 1-, 2- or 4-item sequence."""
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        return [int(padding)] * 4
    if not isinstance(padding, (tuple, list)):
        raise TypeError("Got inappropriate padding arg")
    if len(padding) == 1:
        return [int(padding[0])] * 4
    if len(padding) == 2:
        return [int(padding[0]), int(padding[1])] * 2
    if len(padding) == 4:
        return [int(p) for p in padding]
    raise ValueError(f"Padding must be an int or a 1, 2, or 4 element tuple, not a "
                     f"{len(padding)} element tuple")


def _fill(fill, img, name: str = "fillcolor") -> dict:
    """torchvision's fill rule for Pillow: None -> 0; a number -> every band; a sequence
    of one value or one per band; ints except for "F" images."""
    bands = len(img.getbands())
    if fill is None:
        fill = 0
    if isinstance(fill, (int, float)) and bands > 1:
        fill = tuple([fill] * bands)
    if isinstance(fill, (list, tuple)):
        if len(fill) == 1:
            fill = tuple(fill) * bands
        elif len(fill) != bands:
            raise ValueError(f"The number of elements in 'fill' does not match the number of "
                             f"channels of the image ({len(fill)} != {bands})")
        fill = tuple(fill)
    if img.mode != "F":
        fill = tuple(int(x) for x in fill) if isinstance(fill, tuple) else int(fill)
    return {name: fill}


def pad(img, padding, fill=0, padding_mode: str = "constant"):
    """Pad the borders: ``padding`` int, (left/right, top/bottom) or (left, top, right,
    bottom); ``padding_mode`` constant (``fill``), edge, reflect or symmetric."""
    from PIL import Image, ImageOps

    img = _pil(img)
    if not isinstance(fill, (numbers.Number, str, tuple, list)):
        raise TypeError("Got inappropriate fill arg")
    if padding_mode not in ("constant", "edge", "reflect", "symmetric"):
        raise ValueError("Padding mode should be either constant, edge, reflect or symmetric")
    left, top, right, bottom = _padding(padding)
    if padding_mode == "constant":
        if min(left, top, right, bottom) < 0:
            img = img.crop((max(-left, 0), max(-top, 0), img.width - max(-right, 0),
                            img.height - max(-bottom, 0)))
            left, top, right, bottom = (max(p, 0) for p in (left, top, right, bottom))
        opts = _fill(fill, img, name="fill")
        palette = img.getpalette() if img.mode == "P" else None
        out = ImageOps.expand(img, border=(left, top, right, bottom), **opts)
        if palette is not None:
            out.putpalette(palette)
        return out
    crop_box = [max(-p, 0) for p in (left, top, right, bottom)]
    if any(crop_box):
        img = img.crop((crop_box[0], crop_box[1], img.width - crop_box[2],
                        img.height - crop_box[3]))
    left, top, right, bottom = (max(p, 0) for p in (left, top, right, bottom))
    palette = img.getpalette() if img.mode == "P" else None
    a = np.asarray(img)
    widths = ((top, bottom), (left, right)) + (((0, 0),) if a.ndim == 3 else ())
    out = Image.fromarray(np.pad(a, widths, padding_mode))
    if palette is not None:
        out.putpalette(palette)
    return out


def center_crop(img, output_size):
    """The central (h, w) box (an int: square); an image smaller than the box is padded
    with zeros first. The offset is ``round((H - h) / 2)``."""
    if isinstance(output_size, numbers.Number):
        output_size = (int(output_size), int(output_size))
    elif isinstance(output_size, (tuple, list)) and len(output_size) == 1:
        output_size = (output_size[0], output_size[0])
    _, image_height, image_width = get_dimensions(img)
    crop_height, crop_width = output_size
    if crop_width > image_width or crop_height > image_height:
        padding_ltrb = [
            (crop_width - image_width) // 2 if crop_width > image_width else 0,
            (crop_height - image_height) // 2 if crop_height > image_height else 0,
            (crop_width - image_width + 1) // 2 if crop_width > image_width else 0,
            (crop_height - image_height + 1) // 2 if crop_height > image_height else 0,
        ]
        img = pad(img, padding_ltrb, fill=0)
        _, image_height, image_width = get_dimensions(img)
        if crop_width == image_width and crop_height == image_height:
            return img
    top = int(round((image_height - crop_height) / 2.0))
    left = int(round((image_width - crop_width) / 2.0))
    return crop(img, top, left, crop_height, crop_width)


def hflip(img):
    """Mirror left-right."""
    from PIL import Image
    return _pil(img).transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def vflip(img):
    """Mirror top-bottom."""
    from PIL import Image
    return _pil(img).transpose(Image.Transpose.FLIP_TOP_BOTTOM)


def rotate(img, angle: float, interpolation=InterpolationMode.NEAREST, expand: bool = False,
           center=None, fill=None):
    """Rotate by ``angle`` degrees counter-clockwise about ``center`` (default: the
    image's centre); ``expand`` grows the canvas to hold the whole result; uncovered
    pixels get ``fill``."""
    img = _pil(img)
    mode = interpolation_mode(interpolation)
    return img.rotate(angle, _PIL_FILTER[mode], expand, center, **_fill(fill, img))


# --------------------------------------------------------------------------- colour


def to_grayscale(img, num_output_channels: int = 1):
    """Pillow's luma ("L": R*299/1000 + G*587/1000 + B*114/1000), repeated to 3 bands
    for ``num_output_channels=3``."""
    from PIL import Image

    img = _pil(img)
    if num_output_channels == 1:
        return img.convert("L")
    if num_output_channels == 3:
        gray = np.asarray(img.convert("L"), dtype=np.uint8)
        return Image.fromarray(np.dstack([gray, gray, gray]))
    raise ValueError("num_output_channels should be either 1 or 3")


rgb_to_grayscale = to_grayscale


def _enhance(kind: str, img, factor: float):
    from PIL import ImageEnhance
    return getattr(ImageEnhance, kind)(_pil(img)).enhance(factor)


def adjust_brightness(img, brightness_factor: float):
    """Blend with black: 0 black, 1 the image, 2 twice as bright (Pillow's Brightness)."""
    if brightness_factor < 0:
        raise ValueError(f"brightness_factor ({brightness_factor}) is not non-negative.")
    return _enhance("Brightness", img, brightness_factor)


def adjust_contrast(img, contrast_factor: float):
    """Blend with the mean gray level (Pillow's Contrast)."""
    if contrast_factor < 0:
        raise ValueError(f"contrast_factor ({contrast_factor}) is not non-negative.")
    return _enhance("Contrast", img, contrast_factor)


def adjust_saturation(img, saturation_factor: float):
    """Blend with the grayscale image (Pillow's Color)."""
    if saturation_factor < 0:
        raise ValueError(f"saturation_factor ({saturation_factor}) is not non-negative.")
    return _enhance("Color", img, saturation_factor)


def adjust_hue(img, hue_factor: float):
    """Shift the hue channel (HSV, 8-bit, wrapping) by ``hue_factor`` in [-0.5, 0.5] of a
    turn; grayscale images are returned unchanged."""
    from PIL import Image

    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f"hue_factor ({hue_factor}) is not in [-0.5, 0.5].")
    img = _pil(img)
    if img.mode in ("L", "1", "I", "F"):
        return img
    h, s, v = img.convert("HSV").split()
    shifted = np.array(h, dtype=np.uint8) + np.uint8(int(hue_factor * 255) % 256)
    return Image.merge("HSV", (Image.fromarray(shifted), s, v)).convert(img.mode)
