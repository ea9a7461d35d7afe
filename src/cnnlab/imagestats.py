"""What the training images looked like, so a prediction can say when an image is unlike them.

A few numbers describe each image as the network sees it (uint8, (C, H, W), values 0..255):

    brightness   the mean pixel value / 255
    contrast     the standard deviation of the pixel values / 255
    midtones     the share of pixels strictly between 10% and 90% gray: silhouettes and
                 line drawings have few, photographs many
    colour       the mean over pixels of (max - min over R, G, B) / 255: 0 for gray images
                 (only for images decoded in colour)

``summarize(images)`` keeps, per number, the 1st and 99th percentiles and the mean over the
training images (a small JSON-able dict stored in checkpoints). ``unusual(image, summary)``
lists the numbers of one image that lie outside the training range widened by a quarter
of its width plus ``SLACK``; ``describe`` words them for ``python -m cnnlab.predict``.
``training_data(name, images)`` is what a checkpoint stores about its training set
({"name", "images", "stats"}); ``check_training_data`` refuses a malformed one.
"""
from __future__ import annotations

import numpy as np

__all__ = ["FEATURES", "features", "summarize", "unusual", "describe", "SLACK",
           "training_data", "check_training_data"]

FEATURES = ("brightness", "contrast", "midtones", "colour")
SLACK = 0.05
_LOW, _HIGH = 0.1 * 255, 0.9 * 255


def features(images: np.ndarray) -> dict:
    """{name: float64 (N,)} for uint8 images (N, C, H, W); "colour" only when C == 3."""
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images (N, C, H, W), got {images.dtype} "
                         f"{images.shape}")
    flat = images.reshape(len(images), -1).astype(np.float32)
    out = {"brightness": flat.mean(axis=1, dtype=np.float64) / 255,
           "contrast": flat.std(axis=1, dtype=np.float64) / 255,
           "midtones": ((flat > _LOW) & (flat < _HIGH)).mean(axis=1, dtype=np.float64)}
    if images.shape[1] == 3:
        spread = images.max(axis=1).astype(np.float32) - images.min(axis=1)
        out["colour"] = spread.reshape(len(images), -1).mean(axis=1, dtype=np.float64) / 255
    return out


def summarize(images: np.ndarray, colour_images=None) -> dict:
    """{name: {"p1", "p99", "mean"}} over the training images; "colour" from
    ``colour_images`` (the same images decoded with 3 channels) when the images
    themselves have one channel."""
    values = features(images)
    if colour_images is not None and "colour" not in values:
        values["colour"] = features(colour_images)["colour"]
    return {name: {"p1": float(np.percentile(v, 1)), "p99": float(np.percentile(v, 99)),
                   "mean": float(v.mean())} for name, v in values.items()}


def unusual(image: np.ndarray, summary: dict, colour_image=None) -> list:
    """[(name, value, low, high)] for the numbers of ``image`` (uint8 (C, H, W)) outside the
    widened training range; "colour" from ``colour_image`` ((3, H, W)) if given."""
    values = {k: float(v[0]) for k, v in features(np.asarray(image)[None]).items()}
    if colour_image is not None:
        values["colour"] = float(features(np.asarray(colour_image)[None])["colour"][0])
    out = []
    for name in FEATURES:
        if name not in values or name not in summary:
            continue
        s = summary[name]
        margin = 0.25 * (s["p99"] - s["p1"]) + SLACK
        low, high = s["p1"] - margin, s["p99"] + margin
        if not low <= values[name] <= high:
            out.append((name, values[name], s["p1"], s["p99"]))
    return out


def describe(found: list) -> str:
    """``unusual``'s list in words: "midtones 0.83 (training 0.02..0.11), ..."."""
    return ", ".join(f"{name} {value:.2f} (training images {low:.2f}..{high:.2f})"
                     for name, value, low, high in found)


def training_data(name: str, images: np.ndarray, colour_images=None) -> dict:
    """{"name", "images" (the count), "stats" (``summarize``)} for uint8 training images
    (N, C, H, W): what a checkpoint keeps so that a prediction can say what the model saw."""
    return {"name": str(name), "images": int(len(images)),
            "stats": summarize(images, colour_images)}


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


def check_training_data(value) -> None:
    """Raise ValueError naming the first wrong entry of a stored ``training_data``."""
    if not isinstance(value, dict) or set(value) != {"name", "images", "stats"}:
        raise ValueError(f"must be a dict with 'name', 'images' and 'stats', got "
                         f"{str(value)[:80]}")
    if not isinstance(value["name"], str) or not 0 < len(value["name"]) <= 4096:
        raise ValueError(f"'name' must be a non-empty string, got {str(value['name'])[:80]}")
    n = value["images"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"'images' must be a positive count, got {str(n)[:80]}")
    stats = value["stats"]
    if not isinstance(stats, dict) or not set(stats) <= set(FEATURES):
        raise ValueError(f"'stats' must map some of {', '.join(FEATURES)} to ranges")
    for name, s in stats.items():
        if not (isinstance(s, dict) and set(s) == {"p1", "p99", "mean"}
                and all(_number(v) for v in s.values()) and s["p1"] <= s["p99"]):
            raise ValueError(f"'stats' {name!r} must be finite p1 <= p99 and a mean, got "
                             f"{str(s)[:80]}")
