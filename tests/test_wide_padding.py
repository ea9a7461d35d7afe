"""Convolutions whose zero padding is wider than the input (a large kernel on a tiny image).

The compiled twin has a fast path for stride-1 convolutions as wide as their input, which
copies shifted stretches of the input plane; with padding wider than the input those
stretches miss the plane entirely. A memory error there would end the whole test session,
so each twin runs in a child process and is compared with the naive reference loops.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

import cnnlab

CHILD = r"""
import sys
import numpy as np
import cnnlab
from cnnlab import functional as F, reference as R

cases = [((1, 1, 1, 1), (1, 1, 5, 5), dict(padding=2)),
         ((1, 1, 1, 2), (1, 1, 1, 7), dict(padding=(0, 3))),
         ((1, 1, 1, 1), (1, 1, 1, 4), dict(padding="same", dilation=(1, 3))),
         ((2, 3, 2, 3), (4, 3, 5, 7), dict(padding=(2, 3))),
         ((1, 2, 1, 1), (2, 1, 3, 3), dict(padding=(3, 1), groups=2))]
rng = np.random.default_rng(0)
with cnnlab.use_backend(sys.argv[1]):
    for xs, ws, kw in cases:
        x, w = rng.standard_normal(xs), rng.standard_normal(ws)
        y = F.conv2d(x, w, **kw)
        np.testing.assert_allclose(y, R.conv2d(x, w, **kw), rtol=1e-10, atol=1e-12)
        g = rng.standard_normal(y.shape)
        for ours, ref in zip(F.conv2d_backward(g, x, w, **kw), R.conv2d_backward(g, x, w, **kw)):
            np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
        if kw.get("padding") != "same":
            # the transposed convolution's backward runs conv2d on the wide-padded geometry
            t_kw = dict(kw, groups=kw.get("groups", 1))
            wt = rng.standard_normal((ws[1] * t_kw["groups"], ws[0] // t_kw["groups"]) + ws[2:])
            xt = rng.standard_normal((xs[0], wt.shape[0], 4, 4))
            try:
                yt = F.conv_transpose2d(xt, wt, **t_kw)
            except cnnlab.ArgumentError:
                continue
            gt = rng.standard_normal(yt.shape)
            for ours, ref in zip(F.conv_transpose2d_backward(gt, xt, wt, **t_kw),
                                 R.conv_transpose2d_backward(gt, xt, wt, **t_kw)):
                np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
print("ok")
"""


@pytest.mark.parametrize("backend", cnnlab.backends())
def test_padding_wider_than_the_input(backend):
    r = subprocess.run([sys.executable, "-c", CHILD, backend], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
