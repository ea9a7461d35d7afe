"""Helpers shared by the tests of cnnlab's tensors, autograd, nn and optim (imported by those
test modules; not a test module itself).

``placement`` (a fixture, imported into a test module to use it) runs a test once per
place a cnnlab Tensor can live, with the backend selected for the test's duration:

    cython, numpy   device "cpu": NumPy arrays, computed by that backend
    torch-numpy     device "cpu", backend "torch": NumPy arrays through torch's kernels
    torch           device "torch:cpu": torch tensors, the torch twin (the GPU code path)
    cuda            device "cuda": torch tensors on a GPU (only where one is available)

It yields the device string. ``close(ours, ref, tol)`` compares an array-like with a
reference relative to the reference's largest magnitude (what the course-code tests use:
float64 1e-10, float32 1e-4).
"""
from __future__ import annotations

import numpy as np
import pytest

import cnnlab

try:
    import torch
except ImportError:  # pragma: no cover - torch is in the test extra
    torch = None

TOL = {"float64": 1e-10, "float32": 1e-4}


def _placements():
    out = [pytest.param((b, "cpu"), id=b) for b in cnnlab.backends() if b != "torch"]
    if "torch" in cnnlab.backends():
        out.append(pytest.param(("torch", "cpu"), id="torch-numpy"))
        out.append(pytest.param(("torch", "torch:cpu"), id="torch"))
        if torch.cuda.is_available():
            out.append(pytest.param(("torch", "cuda"), id="cuda"))
    return out


PLACEMENTS = _placements()


@pytest.fixture(params=PLACEMENTS)
def placement(request):
    """The device string of each place a Tensor can live (see the module docstring)."""
    backend, device = request.param
    with cnnlab.use_backend(backend):
        yield device


def np_of(a) -> np.ndarray:
    """A NumPy copy of a cnnlab Tensor, a torch tensor or an array (float64 for floats)."""
    if isinstance(a, cnnlab.Tensor):
        a = a.numpy(force=True)
    elif torch is not None and isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    return a.astype(np.float64) if a.dtype.kind == "f" else a


def close(ours, ref, tol: float, what: str = "") -> None:
    """max |ours - ref| <= tol * max |ref| (shapes equal)."""
    o, r = np_of(ours), np_of(ref)
    assert o.shape == r.shape, f"{what}: shape {o.shape}, expected {r.shape}"
    scale = max(float(np.abs(r).max()) if r.size else 0.0, 1e-30)
    err = float(np.abs(o - r).max()) / scale if r.size else 0.0
    assert err <= tol, f"{what}: relative error {err:.3g} > {tol}"


def on(device, a, dtype=None, requires_grad=False) -> "cnnlab.Tensor":
    """A cnnlab Tensor on ``device`` with the values of the NumPy array ``a``."""
    t = cnnlab.tensor(np.asarray(a), dtype=dtype, device=device)
    return t.requires_grad_() if requires_grad else t


def copy_weights(ours, theirs) -> None:
    """Load a torch module's weights (and buffers) into the equal cnnlab module."""
    ours.load_state_dict(theirs.state_dict())
