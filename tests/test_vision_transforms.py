"""cnnlab.vision.transforms against torchvision's documented semantics.

There is no torchvision here, so each expected value comes from something independent of
cnnlab: Pillow's own calls (resize, crop, rotate, ImageEnhance, convert), NumPy slicing and
``np.rot90``, the formulas torchvision documents (ToTensor: uint8 / 255 as float32;
Normalize: (x - mean) / std; Resize: the shorter edge to ``size``, the longer one
``int(size * long / short)``; CenterCrop: offset ``int(round((H - h) / 2))``) computed
with torch's own arithmetic where it applies, and torchvision's error messages.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageEnhance

import cnnlab
from cnnlab.vision import transforms as T
from cnnlab.vision.transforms import functional as F

torch = pytest.importorskip("torch")


def gradient_image(w=7, h=5, mode="RGB"):
    """Distinct pixel values, so any misplaced pixel shows."""
    a = (np.arange(h * w * 3).reshape(h, w, 3) * 7 % 251).astype(np.uint8)
    img = Image.fromarray(a)
    return img if mode == "RGB" else img.convert(mode)


def arr(img) -> np.ndarray:
    return np.asarray(img)


# ------------------------------------------------------------------ ToTensor, Normalize


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "1"])
def test_to_tensor_uint8_modes(mode):
    img = gradient_image(mode=mode)
    t = T.ToTensor()(img)
    hwc = np.array(img, np.uint8).reshape(img.height, img.width, len(img.getbands()))
    if mode == "1":
        hwc = hwc * 255
    expected = torch.from_numpy(hwc).permute(2, 0, 1).float().div(255)  # torchvision's rule
    assert isinstance(t, cnnlab.Tensor) and t.dtype == cnnlab.float32
    assert tuple(t.shape) == tuple(expected.shape)
    np.testing.assert_array_equal(t.numpy(), expected.numpy())
    assert 0.0 <= t.numpy().min() and t.numpy().max() <= 1.0


def test_to_tensor_keeps_non_uint8_values():
    f = Image.fromarray(np.array([[0.5, 300.0]], np.float32))                  # mode "F"
    i = Image.fromarray(np.array([[70000, -3]], np.int32))                     # mode "I"
    np.testing.assert_array_equal(T.ToTensor()(f).numpy(), [[[0.5, 300.0]]])
    ti = T.ToTensor()(i)
    assert ti.dtype == cnnlab.int32 and ti.numpy().tolist() == [[[70000, -3]]]


def test_to_tensor_ndarrays():
    hw = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(T.ToTensor()(hw).numpy(),
                                  torch.from_numpy(hw[None]).float().div(255).numpy())
    hwc = np.random.default_rng(0).random((2, 3, 4))
    t = T.ToTensor()(hwc)
    assert t.dtype == cnnlab.float64 and t.shape == (4, 2, 3)
    np.testing.assert_array_equal(t.numpy(), hwc.transpose(2, 0, 1))


@pytest.mark.parametrize("bad, kind, message", [
    ([1, 2], TypeError, "pic should be PIL Image or ndarray. Got <class 'list'>"),
    (np.zeros((1, 2, 3, 4), np.uint8), ValueError, "pic should be 2/3 dimensional. Got 4 "
                                                   "dimensions."),
])
def test_to_tensor_errors(bad, kind, message):
    with pytest.raises(kind) as e:
        T.ToTensor()(bad)
    assert str(e.value) == message


def test_normalize_is_torchs_arithmetic():
    x = np.random.default_rng(1).random((3, 4, 5)).astype(np.float32)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    got = T.Normalize(mean, std)(cnnlab.tensor(x))
    m, s = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
    np.testing.assert_array_equal(got.numpy(), ((torch.from_numpy(x) - m) / s).numpy())
    batch = cnnlab.tensor(np.stack([x, x]))
    np.testing.assert_array_equal(T.Normalize(mean, std)(batch).numpy()[1], got.numpy())


def test_normalize_inplace_and_not():
    t = cnnlab.ones(1, 2, 2)
    out = T.Normalize((0.5,), (0.5,))(t)
    assert t.numpy().tolist() == [[[1.0, 1.0], [1.0, 1.0]]]     # input untouched
    assert out.numpy().tolist() == [[[1.0, 1.0], [1.0, 1.0]]]   # (1 - 0.5) / 0.5
    t2 = cnnlab.zeros(1, 2, 2)
    T.Normalize((0.5,), (0.25,), inplace=True)(t2)
    assert t2.numpy().tolist() == [[[-2.0, -2.0], [-2.0, -2.0]]]


@pytest.mark.parametrize("value, kind, message", [
    (cnnlab.zeros(3, 2, 2, dtype=cnnlab.int64), TypeError,
     "Input tensor should be a float tensor. Got cnnlab.int64."),
    (cnnlab.zeros(2, 2), ValueError, "Expected tensor to be a tensor image of size (..., C, H, "
                                     "W). Got tensor.size() = cnnlab.Size([2, 2])."),
])
def test_normalize_errors(value, kind, message):
    with pytest.raises(kind) as e:
        T.Normalize((0.5,), (0.5,))(value)
    assert str(e.value) == message


def test_normalize_zero_std():
    with pytest.raises(ValueError, match="std evaluated to zero after conversion to "
                                         "cnnlab.float32, leading to division by zero."):
        T.Normalize((0.5, 0.5), (1.0, 0.0))(cnnlab.zeros(2, 2, 2))


# ------------------------------------------------------------------ Resize, crops


@pytest.mark.parametrize("w, h, size, expected_hw", [
    (40, 30, 20, (20, 26)),           # shorter edge (h) to 20, w = int(20 * 40 / 30)
    (30, 40, 20, (26, 20)),           # shorter edge (w) to 20
    (40, 30, [15], (15, 20)),         # a 1-item sequence is the shorter edge too
    (40, 30, (10, 12), (10, 12)),     # (h, w) exactly
    (33, 33, 7, (7, 7)),
])
def test_resize_sizes_and_pixels(w, h, size, expected_hw):
    img = gradient_image(w, h)
    out = T.Resize(size)(img)
    assert (out.height, out.width) == expected_hw
    reference = img.resize((expected_hw[1], expected_hw[0]), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(arr(out), arr(reference))


def test_resize_max_size_and_identity():
    img = gradient_image(40, 10)
    out = T.Resize(10, max_size=25)(img)      # 10 x 40 would pass 25: longer edge to 25
    assert (out.height, out.width) == (int(25 * 10 / 40), 25)
    assert T.Resize(10)(img) is img           # already the size: the same image
    with pytest.raises(ValueError, match="must be strictly greater than the requested size"):
        T.Resize(10, max_size=10)(img)
    nearest = T.Resize((3, 4), interpolation=T.InterpolationMode.NEAREST)(img)
    np.testing.assert_array_equal(arr(nearest), arr(img.resize((4, 3), Image.Resampling.NEAREST)))


@pytest.mark.parametrize("size, kind, message", [
    ((1, 2, 3), ValueError, "If size is a sequence, it should have 1 or 2 values"),
    (1.5, TypeError, "Size should be int or sequence. Got <class 'float'>"),
])
def test_resize_argument_errors(size, kind, message):
    with pytest.raises(kind) as e:
        T.Resize(size)(gradient_image())
    assert str(e.value) == message


@pytest.mark.parametrize("w, h, size, top, left", [
    (7, 5, 3, 1, 2),        # round(1.0), round(2.0)
    (7, 5, (2, 4), 2, 2),   # round(1.5) = 2 (Python rounds half to even), round(1.5) = 2
    (7, 7, 2, 2, 2),        # round(2.5) = 2
    (6, 6, 6, 0, 0),
])
def test_center_crop_offsets(w, h, size, top, left):
    img = gradient_image(w, h)
    ch, cw = (size, size) if isinstance(size, int) else size
    out = T.CenterCrop(size)(img)
    np.testing.assert_array_equal(arr(out), arr(img)[top:top + ch, left:left + cw])


def test_center_crop_pads_a_small_image_with_zeros():
    img = gradient_image(3, 2)
    out = arr(T.CenterCrop((4, 6))(img))
    expected = np.zeros((4, 6, 3), np.uint8)
    expected[1:3, 1:4] = arr(img)        # pad left (6-3)//2 = 1, top (4-2)//2 = 1
    np.testing.assert_array_equal(out, expected)


def _windows(big: np.ndarray, h: int, w: int) -> set:
    return {(i, j) for i in range(big.shape[0] - h + 1) for j in range(big.shape[1] - w + 1)}


def _where(out: np.ndarray, big: np.ndarray) -> list:
    h, w = out.shape[:2]
    return [(i, j) for i, j in _windows(big, h, w)
            if np.array_equal(big[i:i + h, j:j + w], out)]


def test_random_crop_is_a_window_and_reaches_them_all():
    img = gradient_image(6, 5)
    crop = T.RandomCrop((3, 4))
    cnnlab.manual_seed(0)
    seen = set()
    for _ in range(200):
        places = _where(arr(crop(img)), arr(img))
        assert len(places) == 1
        seen.add(places[0])
    assert seen == _windows(arr(img), 3, 4)
    cnnlab.manual_seed(0)
    first = [arr(crop(img)).tolist() for _ in range(5)]
    cnnlab.manual_seed(0)
    assert [arr(crop(img)).tolist() for _ in range(5)] == first


def test_random_crop_padding():
    img = gradient_image(4, 3)
    padded = np.zeros((3 + 4, 4 + 4, 3), np.uint8)
    padded[2:5, 2:6] = arr(img)
    out = T.RandomCrop(5, padding=2)(img)
    assert _where(arr(out), padded)
    edge = np.pad(arr(img), ((1, 1), (1, 1), (0, 0)), mode="edge")
    out = T.RandomCrop((5, 6), padding=1, padding_mode="edge")(img)
    np.testing.assert_array_equal(arr(out), edge)
    grown = T.RandomCrop((6, 9), pad_if_needed=True, fill=(9, 9, 9))(img)
    assert (grown.height, grown.width) == (6, 9)
    with pytest.raises(ValueError, match=r"Required crop size \(6, 9\) is larger than input "
                                         r"image size \(3, 4\)"):
        T.RandomCrop((6, 9))(img)


def test_horizontal_flip():
    img = gradient_image()
    np.testing.assert_array_equal(arr(T.RandomHorizontalFlip(p=1.0)(img)), arr(img)[:, ::-1])
    assert T.RandomHorizontalFlip(p=0.0)(img) is img
    cnnlab.manual_seed(1)
    flips = [T.RandomHorizontalFlip()(img) is not img for _ in range(400)]
    assert 150 < sum(flips) < 250
    cnnlab.manual_seed(1)
    assert [T.RandomHorizontalFlip()(img) is not img for _ in range(400)] == flips


def test_rotation_by_fixed_angles():
    img = gradient_image(7, 7)
    ninety = T.RandomRotation((90, 90))(img)
    np.testing.assert_array_equal(arr(ninety), np.rot90(arr(img)))   # counter-clockwise
    odd = gradient_image(8, 5)
    out = T.RandomRotation((30, 30), fill=(1, 2, 3))(odd)
    reference = odd.rotate(30, Image.Resampling.NEAREST, False, None, fillcolor=(1, 2, 3))
    np.testing.assert_array_equal(arr(out), arr(reference))
    grown = T.RandomRotation((45, 45), expand=True)(odd)
    assert (grown.width, grown.height) == odd.rotate(45, expand=True).size


def test_rotation_angles_are_drawn_from_the_range():
    cnnlab.manual_seed(0)
    angles = [T.RandomRotation.get_params([-10.0, 25.0]) for _ in range(300)]
    assert -10 <= min(angles) < -7 and 22 < max(angles) < 25
    with pytest.raises(ValueError, match="If degrees is a single number, it must be positive."):
        T.RandomRotation(-3)
    with pytest.raises(ValueError, match="degrees should be a sequence of length 2."):
        T.RandomRotation([1, 2, 3])
    assert T.RandomRotation(10).degrees == [-10.0, 10.0]


# ------------------------------------------------------------------ colour


def test_color_jitter_fixed_factors_are_pillows_enhancers():
    img = gradient_image()
    for kw, enhancer, factor in (("brightness", ImageEnhance.Brightness, 1.5),
                                 ("contrast", ImageEnhance.Contrast, 0.4),
                                 ("saturation", ImageEnhance.Color, 0.0)):
        out = T.ColorJitter(**{kw: (factor, factor)})(img)
        np.testing.assert_array_equal(arr(out), arr(enhancer(img).enhance(factor)))


def test_saturation_zero_is_grayscale_and_hue_shift():
    img = gradient_image()
    gray = arr(T.ColorJitter(saturation=(0.0, 0.0))(img)).astype(int)
    assert (np.abs(gray[..., 0] - gray[..., 1]) <= 1).all()
    red = Image.new("RGB", (2, 2), (255, 0, 0))
    shifted = arr(T.ColorJitter(hue=(1 / 3, 1 / 3))(red))[0, 0]          # a third of a turn
    assert shifted[1] == 255 and shifted[0] < 10 and shifted[2] < 10     # -> green
    gray_img = img.convert("L")
    assert T.ColorJitter(hue=0.3)(gray_img) is gray_img                   # no hue to shift


def test_color_jitter_ranges_and_errors():
    j = T.ColorJitter(brightness=0.5, contrast=1.5, saturation=(0.2, 0.3), hue=0.1)
    assert j.brightness == (0.5, 1.5) and j.contrast == (0.0, 2.5)
    assert j.saturation == (0.2, 0.3) and j.hue == (-0.1, 0.1)
    assert T.ColorJitter().brightness is None
    cnnlab.manual_seed(0)
    order, b, c, s, h = T.ColorJitter.get_params(j.brightness, j.contrast, j.saturation, j.hue)
    assert sorted(order) == [0, 1, 2, 3] and 0.5 <= b <= 1.5 and -0.1 <= h <= 0.1
    for kwargs, kind, message in (
            (dict(brightness=-1), ValueError, "If brightness is a single number, it must be "
                                              "non negative."),
            (dict(hue=0.7), ValueError, "hue values should be between (-0.5, 0.5), but got "
                                        "[-0.7, 0.7]."),
            (dict(contrast=(2, 1)), ValueError, "contrast values should be between (0, inf), "
                                                "but got [2.0, 1.0]."),
            (dict(saturation="x"), TypeError, "saturation should be a single number or a "
                                              "list/tuple with length 2.")):
        with pytest.raises(kind) as e:
            T.ColorJitter(**kwargs)
        assert str(e.value) == message


def test_grayscale_is_pillows_luma():
    img = gradient_image()
    rgb = arr(img).astype(np.int64)
    luma = (rgb[..., 0] * 299 + rgb[..., 1] * 587 + rgb[..., 2] * 114) / 1000
    one = arr(T.Grayscale()(img))
    assert one.ndim == 2 and np.abs(one - luma).max() <= 0.5 + 1e-9
    three = arr(T.Grayscale(3)(img))
    assert three.shape == rgb.shape and (three == one[..., None]).all()
    with pytest.raises(ValueError, match="num_output_channels should be either 1 or 3"):
        T.Grayscale(2)(img)


# ------------------------------------------------------------------ Compose and types


def test_compose_chains_and_prints_like_torchvision():
    img = gradient_image(40, 30)
    pipeline = T.Compose([T.Resize((16, 16)), T.Grayscale(), T.ToTensor(),
                          T.Normalize((0.5,), (0.5,))])
    out = pipeline(img)
    by_hand = (np.asarray(img.resize((16, 16), Image.Resampling.BILINEAR).convert("L"),
                          np.float32)[None] / np.float32(255) - np.float32(0.5)) / np.float32(0.5)
    np.testing.assert_array_equal(out.numpy(), by_hand)
    assert repr(pipeline).splitlines() == [
        "Compose(", "    Resize(size=(16, 16), interpolation=bilinear, max_size=None, "
        "antialias=True)", "    Grayscale(num_output_channels=1)", "    ToTensor()",
        "    Normalize(mean=(0.5,), std=(0.5,))", ")"]


@pytest.mark.parametrize("transform", [T.Resize(4), T.CenterCrop(2), T.RandomCrop(2),
                                       T.RandomHorizontalFlip(1.0), T.RandomRotation(5),
                                       T.ColorJitter(0.2), T.Grayscale()])
def test_pil_transforms_refuse_other_types(transform):
    with pytest.raises(TypeError, match="img should be PIL Image"):
        transform(np.zeros((4, 4, 3), np.uint8))


def test_functional_helpers():
    img = gradient_image(7, 5)
    assert F.get_dimensions(img) == [3, 5, 7] and F.get_image_size(img) == [7, 5]
    assert F.get_dimensions(cnnlab.zeros(2, 3, 4)) == [2, 3, 4]
    np.testing.assert_array_equal(arr(F.vflip(img)), arr(img)[::-1])
    np.testing.assert_array_equal(arr(F.crop(img, 1, 2, 3, 4)), arr(img)[1:4, 2:6])
    np.testing.assert_array_equal(arr(F.pad(img, [1, 2], padding_mode="reflect")),
                                  np.pad(arr(img), ((2, 2), (1, 1), (0, 0)), mode="reflect"))
