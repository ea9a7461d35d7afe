"""Shared test fixtures: run the same test on every twin (backend) of cnnlab.

Use in any test file::

    def test_something(twin):                   # runs once per available twin
        x = twin.to_twin(np_array)              # ndarray, or a torch tensor for "torch"
        y = F.conv2d(x, twin.to_twin(w))        # the fixture selected the backend already
        y = twin.to_numpy(y)                    # back to NumPy; asserts the type came back
                                                # as it went in (tensor in -> tensor out)

``twin`` is a ``str`` ("cython", "numpy" or "torch") with two helpers. Its params, i.e. the
test ids, are:

    cython        NumPy arrays, compiled backend          (when the extension is built)
    cython-avx2   the same, on its AVX2 builds            (where the CPU runs AVX-512 too:
                                                           _core._isa(1) for the test)
    numpy         NumPy arrays, NumPy backend             (always)
    torch-numpy   NumPy arrays, backend "torch"           (when cnnlab._torch imports)
    torch         torch tensors in, torch tensors out     (when cnnlab._torch imports)

The backend is selected with ``cnnlab.use_backend`` for the test's duration. It is a context
variable: a new ``threading.Thread`` starts from the default backend, so wrap work sent
to other threads in ``with cnnlab.use_backend(twin):`` (``twin`` is a valid name).
The fixtures ``to_twin`` and ``to_numpy`` are the same two helpers, for tests that prefer them.

Environment:
    CNNLAB_EXPECT_BACKENDS=cython,numpy,torch   fail the session when one is missing (CI: a
                                                silent fallback to NumPy is a failure)
    CI=1                                        hypothesis profile "ci" (derandomized, fewer
                                                examples); otherwise profile "dev"
"""
from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import cnnlab

# ---------------------------------------------------------------- CUDA comparisons
# cuDNN may compute float32 convolutions in TF32 on Ampere and newer GPUs (about 1e-3
# relative); the tests compare GPU results with CPU ones at float32 precision, so off.
try:
    import torch as _torch
    if _torch.cuda.is_available():
        _torch.backends.cudnn.allow_tf32 = False
        _torch.backends.cuda.matmul.allow_tf32 = False
except ImportError:
    pass

# ---------------------------------------------------------------- hypothesis profiles

_quiet = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
          HealthCheck.data_too_large]
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=40,
                          suppress_health_check=_quiet, print_blob=True)
settings.register_profile("dev", deadline=None, max_examples=25, suppress_health_check=_quiet)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# ---------------------------------------------------------------- which backends are here

AVAILABLE = cnnlab.backends()


def expected_backends() -> list:
    """Backends listed in env CNNLAB_EXPECT_BACKENDS (comma separated), in that order."""
    raw = os.environ.get("CNNLAB_EXPECT_BACKENDS", "")
    return [name.strip() for name in raw.split(",") if name.strip()]


def missing_backends() -> list:
    return [name for name in expected_backends() if name not in AVAILABLE]


def pytest_configure(config):
    # torch's notice that padding='same' with an even kernel copies the input: expected.
    config.addinivalue_line("filterwarnings", "ignore:Using padding='same':UserWarning")


def pytest_sessionstart(session):
    missing = missing_backends()
    if missing:
        pytest.exit(f"CNNLAB_EXPECT_BACKENDS asks for {missing}, but cnnlab.backends() is "
                    f"{AVAILABLE}: the build fell back silently", returncode=3)


def pytest_report_header(config):
    profile = settings.get_current_profile_name()
    return f"cnnlab backends: {AVAILABLE}; hypothesis profile: {profile}"


# ---------------------------------------------------------------- the twin fixture


def _is_tensor(a) -> bool:
    return type(a).__module__.startswith("torch") and hasattr(a, "device")


class Twin(str):
    """A backend name (``str``) that also knows how to feed its operands.

    ``tensors`` is True for the param that passes torch tensors; ``isa``, where not None,
    the compiled twin's instruction-set level its hand-vectorised C runs at
    (``_core._isa``: 1 for its AVX2 builds).
    """

    tensors: bool
    isa: int | None

    def __new__(cls, name: str, tensors: bool = False, isa: int | None = None):
        self = super().__new__(cls, name)
        self.tensors = tensors
        self.isa = isa
        return self

    @contextlib.contextmanager
    def selected(self):
        """This twin's backend (and build) for the block; the level is set back on
        leaving, whatever the block raised."""
        with cnnlab.use_backend(str(self)):
            if self.isa is None:
                yield self
                return
            from cnnlab import _core
            was = _core._isa()
            _core._isa(self.isa)
            try:
                yield self
            finally:
                _core._isa(was)

    def to_twin(self, a):
        """A NumPy array as this twin's input: a torch tensor with the same values (and,
        where torch can, the same strides) for the tensor param, else unchanged. None and
        non-arrays pass through."""
        if not self.tensors or not isinstance(a, np.ndarray):
            return a
        import torch
        try:
            if a.flags.writeable:
                return torch.from_numpy(a)
        except ValueError:  # negative strides: torch cannot view them
            pass
        return torch.from_numpy(a.copy())

    def to_numpy(self, r):
        """A result back as NumPy (tuples element-wise). Asserts the result has the input's
        kind: a tensor for the tensor param, an ndarray otherwise."""
        if isinstance(r, tuple):
            return tuple(self.to_numpy(v) for v in r)
        if self.tensors:
            assert _is_tensor(r), f"torch tensors in must give tensors out, got {type(r)}"
            return r.detach().cpu().numpy()
        assert isinstance(r, np.ndarray), f"NumPy arrays in must give arrays out, got {type(r)}"
        return r


def _twin_params():
    params = []
    for name in AVAILABLE:
        if name == "torch":
            params.append(pytest.param(Twin("torch", False), id="torch-numpy"))
            params.append(pytest.param(Twin("torch", True), id="torch"))
        else:
            params.append(pytest.param(Twin(name), id=name))
        if name == "cython" and _compiled_isa() == 2:
            params.append(pytest.param(Twin(name, isa=1), id="cython-avx2"))
    return params


def _compiled_isa() -> int:
    """The best build of the compiled twin's C this CPU runs (2 AVX-512, 1 AVX2, 0)."""
    from cnnlab import _core
    return _core._CPU_ISA


TWIN_PARAMS = _twin_params()


@pytest.fixture(params=TWIN_PARAMS)
def twin(request):
    """Each available twin in turn, selected with ``cnnlab.use_backend``; yields a
    :class:`Twin` (the backend's name, plus ``to_twin``/``to_numpy``)."""
    with request.param.selected():
        yield request.param


@pytest.fixture(scope="session")
def twins():
    """All the twin params as a list of :class:`Twin`, for a test that loops over them
    itself (e.g. to compute an expensive expected value once). Select each with
    ``with t.selected():`` (or ``cnnlab.use_backend(t)``, which leaves the build as it
    is)."""
    return [p.values[0] for p in TWIN_PARAMS]


@pytest.fixture
def to_twin(twin):
    """``to_twin(a)``: a NumPy array as the current twin's input (see :class:`Twin`)."""
    return twin.to_twin


@pytest.fixture
def to_numpy(twin):
    """``to_numpy(r)``: a result of the current twin back as NumPy (see :class:`Twin`)."""
    return twin.to_numpy


# ---------------------------------------------------------------- comparing results

#: Agreement tolerances per dtype (twin vs oracle).
TOLERANCE = {
    np.dtype(np.float64): dict(rtol=1e-10, atol=1e-10),
    np.dtype(np.float32): dict(rtol=1e-5, atol=1e-5),
}


def _assert_close(actual, expected, dtype=None):
    """``actual`` has ``dtype`` (if given) and ``expected``'s shape, and matches it within
    TOLERANCE of that dtype; NaNs must sit at the same places."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    dtype = np.dtype(dtype or actual.dtype)
    assert actual.dtype == dtype, f"dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == expected.shape, f"shape {actual.shape}, expected {expected.shape}"
    np.testing.assert_allclose(actual, expected.astype(np.float64), equal_nan=True,
                               **TOLERANCE[dtype])


@pytest.fixture
def assert_close():
    """``assert_close(actual, expected, dtype=None)``: dtype, shape, then values within
    the tolerance of the dtype (float64 rtol 1e-10; float32 rtol 1e-5, atol 1e-5)."""
    return _assert_close


@pytest.fixture
def rng():
    """A fresh, seeded NumPy generator per test (reproducible, independent of order)."""
    return np.random.default_rng(20240611)
