"""Backend selection: backends(), get/set/use_backend, CNNLAB_BACKEND, and which kind of
array comes back (NumPy in -> NumPy out whatever the backend; tensors in -> tensors out)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import cnnlab
from cnnlab import functional as F

needs_torch = pytest.mark.skipif("torch" not in cnnlab.backends(),
                                 reason="torch backend not available")
X = np.arange(2 * 3 * 6 * 6, dtype=np.float64).reshape(2, 3, 6, 6) % 11
W = np.ones((4, 3, 3, 3))
TESTS = Path(__file__).resolve().parent


@pytest.fixture
def restore_backend():
    before = cnnlab.get_backend()
    yield
    cnnlab.set_backend(before)


def _python(code, **env):
    """Run ``code`` in a fresh interpreter with extra environment variables."""
    full = {k: v for k, v in os.environ.items() if k != "CNNLAB_BACKEND"}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                          text=True, timeout=120)


def test_backends_lists_numpy_first_class():
    names = cnnlab.backends()
    assert isinstance(names, list) and "numpy" in names
    assert set(names) <= {"cython", "numpy", "torch"}
    order = ["cython", "numpy", "torch"]                 # fastest first
    assert names == [n for n in order if n in names]


def test_default_backend_is_the_fastest_numpy_one():
    r = _python("import cnnlab; print(cnnlab.get_backend())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("cython" if "cython" in cnnlab.backends() else "numpy")


def test_set_backend(restore_backend):
    cnnlab.set_backend("numpy")
    assert cnnlab.get_backend() == "numpy"
    for name in cnnlab.backends():
        cnnlab.set_backend(name)
        assert cnnlab.get_backend() == name


def test_use_backend_is_scoped_and_nests(restore_backend):
    cnnlab.set_backend("numpy")
    for name in cnnlab.backends():
        with cnnlab.use_backend(name) as selected:
            assert selected == name and cnnlab.get_backend() == name
            with cnnlab.use_backend("numpy"):
                assert cnnlab.get_backend() == "numpy"
            assert cnnlab.get_backend() == name
        assert cnnlab.get_backend() == "numpy"


def test_use_backend_restores_after_an_exception(restore_backend):
    cnnlab.set_backend("numpy")
    other = cnnlab.backends()[-1]
    with pytest.raises(KeyError):
        with cnnlab.use_backend(other):
            raise KeyError("boom")
    assert cnnlab.get_backend() == "numpy"


def test_use_backend_is_per_thread(restore_backend):
    """use_backend is a context variable: another thread keeps the process default."""
    cnnlab.set_backend("numpy")
    other = cnnlab.backends()[-1]
    seen = []
    with cnnlab.use_backend(other):
        t = threading.Thread(target=lambda: seen.append(cnnlab.get_backend()))
        t.start()
        t.join()
        assert cnnlab.get_backend() == other
    assert seen == ["numpy"]


@pytest.mark.parametrize("call", [cnnlab.set_backend,
                                  lambda n: cnnlab.use_backend(n).__enter__()],
                         ids=["set_backend", "use_backend"])
def test_unknown_backend_is_a_value_error(call, restore_backend):
    before = cnnlab.get_backend()
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        call("cuda")
    assert cnnlab.get_backend() == before


@pytest.mark.parametrize("name", ["numpy", "torch", "cython"])
def test_cnnlab_backend_environment_variable(name):
    if name not in cnnlab.backends():
        pytest.skip(f"{name} not available")
    r = _python("import cnnlab; print(cnnlab.get_backend())", CNNLAB_BACKEND=name)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == name


def test_cnnlab_backend_environment_variable_unknown():
    r = _python("import cnnlab, numpy as np\n"
                "cnnlab.functional.avg_pool2d(np.zeros((1, 1, 2, 2)), 2)",
                CNNLAB_BACKEND="nosuch")
    assert r.returncode != 0
    assert "ValueError" in r.stderr and "unknown backend 'nosuch'" in r.stderr


def test_numpy_backend_gives_numpy(restore_backend):
    cnnlab.set_backend("numpy")
    y = F.conv2d(X, W, padding=1)
    assert type(y) is np.ndarray and y.shape == (2, 4, 6, 6) and y.dtype == np.float64


@needs_torch
def test_numpy_arrays_through_the_torch_backend_come_back_as_numpy(restore_backend):
    cnnlab.set_backend("torch")
    results = [F.conv2d(X, W, padding=1), *F.conv2d_backward(np.ones((2, 4, 6, 6)), X, W,
                                                             padding=1),
               *F.max_pool2d(X, 2, return_indices=True), F.avg_pool2d(X[0], 2)]
    for r in results:
        assert type(r) is np.ndarray
    assert results[5].dtype == np.int64 and results[6].shape == (3, 3, 3)


@needs_torch
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_tensors_come_back_as_tensors_whatever_the_backend(backend, restore_backend):
    import torch
    if backend not in cnnlab.backends():
        pytest.skip(f"{backend} not available")
    cnnlab.set_backend(backend)
    x, w = torch.from_numpy(X), torch.from_numpy(W).float()
    assert isinstance(F.conv2d(x, torch.from_numpy(W)), torch.Tensor)
    y, idx = F.max_pool2d(x.float(), 2, return_indices=True)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    assert idx.dtype == torch.int64
    gx, gw, gb = F.conv2d_backward(torch.ones(2, 4, 4, 4), x.float(), w)
    assert all(isinstance(t, torch.Tensor) for t in (gx, gw, gb))


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@needs_torch
@pytest.mark.skipif(not _cuda(), reason="no CUDA device")
def test_tensors_stay_on_their_device():
    import torch
    x = torch.from_numpy(X).cuda()
    y = F.conv2d(x, torch.from_numpy(W).cuda(), padding=1)
    assert y.device == x.device


def test_expect_backends_guard_fails_the_session():
    """CNNLAB_EXPECT_BACKENDS naming a backend that is not here stops pytest (exit code 3)
    before any test runs: CI's guard against a silent fallback to NumPy."""
    env = {k: v for k, v in os.environ.items()}
    env["CNNLAB_EXPECT_BACKENDS"] = "numpy, nosuch"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "--collect-only", str(TESTS / "test_backends.py")], env=env,
                       capture_output=True, text=True, timeout=120, cwd=TESTS.parent)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "nosuch" in r.stdout + r.stderr



def test_placement_rule_shared_by_the_commands():
    """--device names a torch device: it selects torch, and refuses another backend."""
    from cnnlab._dispatch import placement
    assert placement("numpy", None) == ("numpy", None)
    assert placement(None, None) == (cnnlab.get_backend(), None
                                     if cnnlab.get_backend() != "torch" else "cpu")
    with pytest.raises(ValueError, match="--device cpu needs --backend torch, not numpy"):
        placement("numpy", "cpu")
    if "torch" in cnnlab.backends():
        assert placement(None, "cpu") == ("torch", "cpu")
        assert placement("torch", None) == ("torch", "cpu")


def test_predict_refuses_device_with_another_backend(capsys, tmp_path):
    from cnnlab import predict
    status = predict.main(["--checkpoint", str(tmp_path / "none.npz"), "--backend", "numpy",
                           "--device", "cpu", "x.png"])
    assert status != 0
    assert "--device cpu needs --backend torch, not numpy" in capsys.readouterr().err


def test_every_twin_exports_the_contract():
    """The twins behind ``_dispatch`` export the same kernel names (the compiled one adds
    ``openmp_enabled``), each a callable."""
    from cnnlab import _dispatch
    contract = set(_dispatch._load("numpy").__all__)
    for name in cnnlab.backends():
        module = _dispatch._load(name)
        assert set(module.__all__) - {"openmp_enabled"} == contract, name
        assert all(callable(getattr(module, f)) for f in contract), name
