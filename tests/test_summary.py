"""cnnlab.summary against the real torchsummary.summary on the equal torch network.

The expected text is what torchsummary 1.5.1 prints for the torch network (captured from
its stdout); nothing expected is computed from cnnlab's output.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

import cnnlab
from cnnlab import layers as L
from cnnlab import models
from cnnlab.summary import summary

torch = pytest.importorskip("torch")
torchsummary = pytest.importorskip("torchsummary")
nn = torch.nn


def _torchsummary(net, input_size, **kwargs):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        torchsummary.summary(net, input_size, device="cpu", **kwargs)
    return out.getvalue()


def _lab(c, k, side):
    blocks, ch = [], c
    for out in (16, 32, 64):
        blocks += [nn.Conv2d(ch, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2)]
        ch = out
    return nn.Sequential(*blocks, nn.Flatten(), nn.Linear(64 * side * side, 128), nn.ReLU(),
                         nn.Linear(128, k))


NETS = [
    ("lab-28x1", lambda: models.build("lab", 1, 28, 2), lambda: _lab(1, 2, 3), (1, 28, 28)),
    ("lab-64x3", lambda: models.build("lab", 3, 64, 5), lambda: _lab(3, 5, 8), (3, 64, 64)),
    ("simple-28x1", lambda: models.build("simple", 1, 28, 2),
     lambda: nn.Sequential(nn.Conv2d(1, 16, 3, 1, 2), nn.ReLU(), nn.MaxPool2d(2, 2),
                           nn.Flatten(), nn.Linear(16 * 15 * 15, 2)), (1, 28, 28)),
    ("mixed", lambda: L.Sequential(L.Conv2d(3, 8, 3, stride=2, rng=0), L.ReLU(),
                                   L.Sequential(L.ConvTranspose2d(8, 4, 4, stride=2, rng=1),
                                                L.AvgPool2d(3)),
                                   L.Dropout(0.2), L.Flatten(), L.Linear(4 * 5 * 5, 7, rng=2)),
     lambda: nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(),
                           nn.Sequential(nn.ConvTranspose2d(8, 4, 4, stride=2), nn.AvgPool2d(3)),
                           nn.Dropout(0.2), nn.Flatten(), nn.Linear(4 * 5 * 5, 7)), (3, 15, 15)),
]


@pytest.mark.parametrize("name,ours,theirs,input_size", NETS, ids=[n[0] for n in NETS])
def test_summary_equals_torchsummary(name, ours, theirs, input_size, capsys):
    expected = _torchsummary(theirs(), input_size)
    text = summary(ours(), input_size)
    assert capsys.readouterr().out == text       # printed and returned
    assert text == expected


def test_batch_size_and_frozen_layers_like_torchsummary():
    ours, theirs = models.build("simple", 1, 28, 2), nn.Sequential(
        nn.Conv2d(1, 16, 3, 1, 2), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Flatten(),
        nn.Linear(3600, 2))
    ours.layers[0].weight.requires_grad = False
    theirs[0].weight.requires_grad = False
    expected = _torchsummary(theirs, (1, 28, 28), batch_size=16)
    assert summary(ours, (1, 28, 28), batch_size=16, file=None) == expected
    assert "Non-trainable params: 160" in expected


def test_summary_of_a_torch_placed_model_leaves_it_as_it_was():
    model = L.Sequential(L.Linear(4, 3, rng=0), L.Dropout(0.5, rng=1), L.ReLU())
    model.to("cpu")
    state = model.layers[1].rng.bit_generator.state
    text = summary(model, (4,), file=None)
    assert "Linear-1" in text and "[-1, 3]" in text
    assert model.training and model.layers[1].rng.bit_generator.state == state
    assert torch.is_tensor(model.layers[0].weight.data)


def test_float64_sizes_use_eight_bytes():
    """torchsummary assumes 4-byte floats; a float64 cnnlab model reports its real size,
    from the parameter count torchsummary finds for the float32 twin."""
    expected = _torchsummary(_lab(1, 2, 3), (1, 28, 28))
    total = int(next(line for line in expected.splitlines()
                     if line.startswith("Total params:")).split(":")[1].replace(",", ""))
    text = summary(models.build("lab", dtype=np.float64), (1, 28, 28), file=None)
    assert f"Total params: {total:,}" in text
    assert f"Params size (MB): {total * 8 / 1024 ** 2:0.2f}" in text


def test_exported_from_package():
    assert cnnlab.summary is summary
