"""Threads and processes: every op gives the same results when called from 4 Python threads
at once, with 1 or 2 kernel threads, and in a child forked after the parent ran a kernel
(GNU OpenMP is not fork-safe: a hang there is a failure, caught by a timeout of 30 s).
"""
from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import cnnlab
from cnnlab import functional as F
from cnnlab import reference as R
from _child import fork_and_wait

_rng = np.random.default_rng(7)
X = _rng.permutation(3 * 8 * 12 * 12).reshape(3, 8, 12, 12) / 100.0   # distinct values
W = _rng.standard_normal((8, 4, 3, 3))                  # conv2d, groups=2
WT = _rng.standard_normal((8, 3, 3, 3))                 # conv_transpose2d: 8 -> 3 channels
B = _rng.standard_normal(8)
G_CONV = _rng.standard_normal((3, 8, 12, 12))
G_TCONV = _rng.standard_normal((3, 3, 25, 25))
G_POOL = _rng.standard_normal((3, 8, 6, 6))

# name -> (api, T) -> result; api is cnnlab.functional or cnnlab.reference
OPS = {
    "conv2d": lambda f, T: f.conv2d(T(X), T(W), T(B), padding=1, groups=2),
    "conv2d_backward": lambda f, T: f.conv2d_backward(T(G_CONV), T(X), T(W), padding=1,
                                                      groups=2),
    "conv_transpose2d": lambda f, T: f.conv_transpose2d(T(X), T(WT), None, stride=2),
    "conv_transpose2d_backward": lambda f, T: f.conv_transpose2d_backward(
        T(G_TCONV), T(X), T(WT), stride=2),
    "max_pool2d": lambda f, T: f.max_pool2d(T(X), 3, stride=2, padding=1, return_indices=True),
    "max_pool2d_backward": lambda f, T: f.max_pool2d_backward(T(G_POOL), T(X), 3, stride=2,
                                                              padding=1),
    "avg_pool2d": lambda f, T: f.avg_pool2d(T(X), 2),
    "avg_pool2d_backward": lambda f, T: f.avg_pool2d_backward(T(G_POOL), T(X), 2),
}

FORK_TIMEOUT_S = 30

_expected_cache = {}


def expected(name):
    """The reference's result of an op, computed once per session."""
    if name not in _expected_cache:
        _expected_cache[name] = OPS[name](R, lambda a: a)
    return _expected_cache[name]


def _as_tuple(r):
    return r if isinstance(r, tuple) else (r,)


def assert_same(got, want):
    for a, e in zip(_as_tuple(got), _as_tuple(want), strict=True):
        if e.dtype == np.int64:
            np.testing.assert_array_equal(a, e)
        else:
            np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-10)


@pytest.fixture
def restore_threads():
    n = cnnlab.get_num_threads()
    yield
    cnnlab.set_num_threads(n)


@pytest.mark.parametrize("name", list(OPS))
def test_four_python_threads_at_once(twin, name):
    def work(_):
        with cnnlab.use_backend(twin):            # a new thread starts at the default backend
            return twin.to_numpy(OPS[name](F, twin.to_twin))

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, range(8)))
    for r in results:
        assert_same(r, expected(name))


@pytest.mark.parametrize("name", list(OPS))
def test_one_and_two_kernel_threads_agree(twin, name, restore_threads):
    for n in (1, 2):
        cnnlab.set_num_threads(n)
        assert_same(twin.to_numpy(OPS[name](F, twin.to_twin)), expected(name))


def test_num_threads_round_trip(restore_threads):
    for n in (1, 3, 2):
        cnnlab.set_num_threads(n)
        assert cnnlab.get_num_threads() == n
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="positive int"):
            cnnlab.set_num_threads(bad)
    assert cnnlab.get_num_threads() == 2


def test_openmp_enabled_is_a_bool():
    enabled = cnnlab.openmp_enabled()
    assert isinstance(enabled, bool)
    if "cython" not in cnnlab.backends():
        assert not enabled


# --------------------------------------------------------------------------- fork


def _child(backend, conn):
    try:
        with cnnlab.use_backend(backend):
            y = F.conv2d(X, W, B, padding=1, groups=2)
            gx = F.max_pool2d_backward(G_POOL, X, 3, stride=2, padding=1)
        conn.send((y, gx))
    except BaseException as e:  # report, do not hang
        conn.send(repr(e))
    finally:
        conn.close()


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="no fork here")
@pytest.mark.parametrize("backend", cnnlab.backends())
def test_kernel_in_forked_child_after_parent_used_it(backend, restore_threads):
    cnnlab.set_num_threads(2)
    with cnnlab.use_backend(backend):
        F.conv2d(X, W, B, padding=1, groups=2)           # the parent's thread pool is up
    result = fork_and_wait(_child, (backend,), FORK_TIMEOUT_S)
    assert result != "hung", f"the forked child hung (backend {backend!r})"
    assert not isinstance(result, str), result
    assert_same(result[0], expected("conv2d"))
    assert_same(result[1], expected("max_pool2d_backward"))


# (N, C_in, C_out, size, stride): the direct kernels, Winograd, im2col
REPEAT_LAYERS = [(8, 3, 16, 20, 1), (8, 16, 16, 12, 1), (8, 5, 6, 15, 2)]


@pytest.mark.parametrize("layer", REPEAT_LAYERS, ids=lambda c: "x".join(map(str, c)))
def test_two_kernel_threads_give_the_same_bits_on_every_call(twin, layer, restore_threads):
    """Work items go to whichever thread is free (forward, input gradient; the direct
    weight gradient's runs of items, each with its own partial sum) or in a fixed split
    (im2col's weight gradient, per-thread sums): either way, repeated calls agree bit for
    bit."""
    n, c, k, s, stride = layer
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((n, c, s, s)), rng.standard_normal((k, c, 3, 3))
    gy = rng.standard_normal(R.conv2d(x, w, stride=stride, padding=1).shape)
    cnnlab.set_num_threads(2)
    for dtype in (np.float32, np.float64):
        T = lambda a: twin.to_twin(a.astype(dtype))  # noqa: E731
        runs = [[twin.to_numpy(r) for r in (F.conv2d(T(x), T(w), None, stride, 1),)
                 + F.conv2d_backward(T(gy), T(x), T(w), stride=stride, padding=1)]
                for _ in range(6)]
        for run in runs[1:]:
            for a, e in zip(run, runs[0], strict=True):
                np.testing.assert_array_equal(a, e)
