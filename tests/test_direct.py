"""Convolutions in the shapes the compiled twin computes with its direct kernel (float32, at
most 4 input channels, stride 1, no dilation, one group, at least 4 output channels and 8
output columns; AVX2+FMA CPUs): rows of 16 columns (partial blocks at the right edge),
paddings from 0 to wider than the kernel, 'same', odd kernels, output channels not a
multiple of 4. Every twin runs them against the naive loops (``cnnlab.reference``), float32
within the suite's tolerance.
"""
from __future__ import annotations

import numpy as np
import pytest

from cnnlab import _checks
from cnnlab import functional as F
from cnnlab import reference as R

# (N, C_in, C_out, H, W, kernel, padding)
CASES = [
    (2, 3, 16, 12, 16, 3, 1),
    (1, 1, 5, 9, 13, 3, 0),
    (2, 3, 7, 6, 30, 5, 2),
    (1, 4, 8, 7, 8, 3, 4),
    (3, 2, 9, 5, 17, (3, 1), "same"),
    (0, 3, 4, 8, 8, 3, 1),
]


def _ids(case):
    return "x".join(str(v) for v in case)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_direct_shapes_match_reference(twin, case, assert_close, rng):
    n, c, k, h, w, kernel, padding = case
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((k, c, kh, kw)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    y = twin.to_numpy(F.conv2d(twin.to_twin(x), twin.to_twin(wt), twin.to_twin(b),
                               padding=padding))
    want = R.conv2d(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64),
                    padding=padding)
    assert_close(y, want, np.float32)
    assert_close(twin.to_numpy(F.conv2d(twin.to_twin(x), twin.to_twin(wt), None,
                                        padding=padding)),
                 want - b.astype(np.float64)[:, None, None], np.float32)


def test_compiled_twin_takes_the_direct_kernel_for_these_shapes():
    core = pytest.importorskip("cnnlab._core")
    if not core._DIRECT_AVAILABLE:
        pytest.skip("this CPU or compiler has no AVX2+FMA: the layers stay on im2col")
    for n, c, k, h, w, kernel, padding in CASES:
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        spec = _checks.conv2d_spec((n, c, h, w), (k, c, kh, kw), None, 1, padding, 1, 1)
        assert core._algorithm((n, c, h, w), k, spec, np.float32) == "direct"
        assert core._algorithm((n, c, h, w), k, spec, np.float64) == "im2col"
