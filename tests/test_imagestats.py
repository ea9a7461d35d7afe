"""cnnlab.imagestats: each number by hand on small images, and the rule that lets a
prediction warn: the training images themselves almost never look unusual, a colour
photograph given to the silhouette model always does."""
from __future__ import annotations

import numpy as np
import pytest

from cnnlab import data, imagestats as S


def test_features_by_hand():
    img = np.array([[[0, 255], [128, 20]]], np.uint8)[None]           # (1, 1, 2, 2)
    f = S.features(img)
    assert f["brightness"][0] == pytest.approx((0 + 255 + 128 + 20) / 4 / 255)
    assert f["contrast"][0] == pytest.approx(np.std([0, 255, 128, 20]) / 255)
    assert f["midtones"][0] == 0.25                  # only 128 lies in (25.5, 229.5)
    assert "colour" not in f
    rgb = np.zeros((1, 3, 1, 2), np.uint8)
    rgb[0, :, 0, 0] = (200, 100, 50)                  # spread 150; the other pixel gray
    assert S.features(rgb)["colour"][0] == pytest.approx(150 / 255 / 2)
    with pytest.raises(ValueError, match="expected uint8 images"):
        S.features(np.zeros((2, 2)))


@pytest.fixture(scope="module")
def silhouettes():
    gray, _, _ = data.bundled(28, 1)
    rgb, _, _ = data.bundled(28, 3)
    return gray, rgb, S.summarize(gray, rgb)


def test_training_images_rarely_look_unusual(silhouettes):
    gray, rgb, summary = silhouettes
    assert summary["colour"] == {"p1": 0.0, "p99": 0.0, "mean": 0.0}
    flagged = sum(bool(S.unusual(gray[i], summary, rgb[i])) for i in range(len(gray)))
    assert flagged <= len(gray) // 100


def test_a_colour_photo_looks_unusual_to_the_silhouette_model(silhouettes):
    _, _, summary = silhouettes
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, 28)
    photo = np.stack([np.outer(ramp, 1 - ramp) * 200 + 30, np.outer(1 - ramp, ramp) * 150 + 60,
                      np.full((28, 28), 90.0)]) + rng.normal(0, 12, (3, 28, 28))
    photo = np.clip(photo, 0, 255).astype(np.uint8)
    gray = np.round(photo.astype(float).T @ [0.299, 0.587, 0.114]).T.astype(np.uint8)[None]
    found = S.unusual(gray, summary, photo)
    assert {name for name, *_ in found} >= {"midtones", "colour"}
    text = S.describe(found)
    assert "colour 0." in text and "(training images 0.00..0.00)" in text
