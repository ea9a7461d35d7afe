"""cnnlab.summary against the real torchsummary.summary on the equal torch network.

The expected text is what torchsummary 1.5.1 prints for the torch network (captured from
its stdout); nothing expected is computed from cnnlab's output.
"""
from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import numpy as np
import pytest

import cnnlab
from cnnlab import models
from cnnlab import nn as cn
from cnnlab.summary import summary

torch = pytest.importorskip("torch")
torchsummary = pytest.importorskip("torchsummary")
nn = torch.nn


def _torchsummary(net, input_size, **kwargs):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        torchsummary.summary(net, input_size, device="cpu", **kwargs)
    return out.getvalue()


def _ours(model, input_size, **kwargs):
    out = io.StringIO()
    assert summary(model, input_size, file=out, **kwargs) is None
    return out.getvalue()


class TorchClassifier(nn.Module):
    """The course's CNNClassifier in torch: conv blocks, view, fully connected layers."""

    def __init__(self, c, side, k, filters=(16, 32, 64), hidden=128, padding=1):
        super().__init__()
        blocks, ch = [], c
        for out in filters:
            blocks += [nn.Conv2d(ch, out, 3, padding=padding), nn.ReLU(), nn.MaxPool2d(2, 2)]
            ch = out
        self.conv_layers = nn.Sequential(*blocks)
        flat = ch * side * side
        self.fc_layers = nn.Sequential(nn.Linear(flat, k)) if hidden is None else \
            nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, k))

    def forward(self, x):
        x = self.conv_layers(x)
        return self.fc_layers(x.view(x.size(0), -1))


def _block(m):
    """A module with its own forward and parameters of its own (a row after its children)."""
    class Scaled(m.Module):
        def __init__(self):
            super().__init__()
            self.conv = m.Conv2d(3, 3, 3, padding=1)
            self.bn = m.BatchNorm2d(3)
            self.weight = m.Parameter(cnnlab.ones(3) if m is cn else torch.ones(3))

        def forward(self, x):
            return self.bn(self.conv(x)) + x

    return m.Sequential(Scaled(), m.AdaptiveAvgPool2d(2), m.Flatten(), m.Linear(12, 2))


NETS = [
    ("lab-28x1", lambda: models.build("lab", 1, 28, 2), lambda: TorchClassifier(1, 3, 2),
     (1, 28, 28)),
    ("lab-64x3", lambda: models.build("lab", 3, 64, 5), lambda: TorchClassifier(3, 8, 5),
     (3, 64, 64)),
    ("simple-28x1", lambda: models.build("simple", 1, 28, 2),
     lambda: TorchClassifier(1, 15, 2, (16,), None, 2), (1, 28, 28)),
    ("mixed", lambda: cn.Sequential(cn.Conv2d(3, 8, 3, stride=2), cn.ReLU(),
                                    cn.Sequential(cn.ConvTranspose2d(8, 4, 4, stride=2),
                                                  cn.AvgPool2d(3)),
                                    cn.Dropout(0.2), cn.Flatten(), cn.Linear(4 * 5 * 5, 7)),
     lambda: nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(),
                           nn.Sequential(nn.ConvTranspose2d(8, 4, 4, stride=2), nn.AvgPool2d(3)),
                           nn.Dropout(0.2), nn.Flatten(), nn.Linear(4 * 5 * 5, 7)), (3, 15, 15)),
    ("block", lambda: _block(cn), lambda: _block(nn), (3, 6, 6)),
]


@pytest.mark.parametrize("name,ours,theirs,input_size", NETS, ids=[n[0] for n in NETS])
def test_summary_equals_torchsummary(name, ours, theirs, input_size, capsys):
    expected = _torchsummary(theirs(), input_size)
    assert summary(ours(), input_size) is None     # printed once, nothing to echo again
    assert capsys.readouterr().out == expected


def test_batch_size_and_frozen_layers_like_torchsummary():
    ours, theirs = models.build("simple", 1, 28, 2), TorchClassifier(1, 15, 2, (16,), None, 2)
    ours.conv_layers[0].weight.requires_grad = False
    theirs.conv_layers[0].weight.requires_grad = False
    expected = _torchsummary(theirs, (1, 28, 28), batch_size=16)
    assert _ours(ours, (1, 28, 28), batch_size=16) == expected
    assert "Non-trainable params: 160" in expected


def test_summary_of_a_torch_placed_model_leaves_it_as_it_was():
    model = cn.Sequential(cn.Linear(4, 3), cn.Dropout(0.5), cn.ReLU()).to("torch:cpu")
    state = cnnlab.get_rng_state().numpy()
    text = _ours(model, (4,))
    assert "Linear-1" in text and "[-1, 3]" in text
    assert model.training and np.array_equal(cnnlab.get_rng_state().numpy(), state)
    assert torch.is_tensor(model[0].weight._data)


def test_float64_sizes_use_eight_bytes():
    """torchsummary assumes 4-byte floats; a float64 cnnlab model reports its real size,
    from the parameter count torchsummary finds for the float32 twin."""
    expected = _torchsummary(TorchClassifier(1, 3, 2), (1, 28, 28))
    total = int(next(line for line in expected.splitlines()
                     if line.startswith("Total params:")).split(":")[1].replace(",", ""))
    text = _ours(models.build("lab", dtype=np.float64), (1, 28, 28))
    assert f"Total params: {total:,}" in text
    assert f"Params size (MB): {total * 8 / 1024 ** 2:0.2f}" in text


def test_exported_from_package():
    assert cnnlab.summary is summary


def test_a_repl_shows_the_table_once():
    """In Python's REPL the table is printed once, and nothing is echoed after it (the
    REPL echoes what the last expression returns; summary returns None, as torchsummary
    does). The control line shows that the REPL does echo values."""
    code = ("import cnnlab\nfrom cnnlab import models\n"
            "m = models.build('simple', 1, 28, 2)\n"
            "cnnlab.summary(m, (1, 28, 28))\n"
            "'echoed' + '!'\n")
    r = subprocess.run([sys.executable, "-i", "-q"], input=code, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    expected = _torchsummary(TorchClassifier(1, 15, 2, (16,), None, 2), (1, 28, 28))
    assert r.stdout == expected + "'echoed!'\n"
