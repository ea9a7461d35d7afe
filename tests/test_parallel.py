"""Thread counts: validated and capped (set_num_threads, OMP_NUM_THREADS), and a forked
child that never hangs, whatever it calls. Each case runs in a child process with a time
limit: before, 10**6 threads crashed in GOMP_parallel or exited with "libgomp: Thread
creation failed", 2**63 broke every later kernel with OverflowError, and a forked child
that asked for 2 threads hung forever. Results are compared with the naive reference.
"""
from __future__ import annotations

import multiprocessing as mp

import pytest

import cnnlab
from cnnlab import _parallel
from _child import describe, run_code

BACKENDS = cnnlab.backends()

# Pools 20000 planes (more than any thread count tried here) and convolves 128 groups,
# compared with NumPy's reductions.
KERNELS = """
import warnings
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 10000, 2, 2))
w = rng.standard_normal((64, 1, 2, 2))
np.testing.assert_allclose(F.max_pool2d(x, 2), x.max(axis=(2, 3), keepdims=True))
np.testing.assert_allclose(F.avg_pool2d_backward(np.ones((2, 10000, 1, 1)), x, 2),
                           np.full(x.shape, 0.25))
xc = x[:, :64]
np.testing.assert_allclose(F.conv2d(xc, w, groups=64), (xc * w[None, :, 0]).sum(
    axis=(2, 3), keepdims=True), rtol=1e-10, atol=1e-14)
"""


def _ok(backend, code, env=None, timeout=60):
    out = run_code(backend, code, timeout=timeout, env=env)
    assert out.status == "ok", describe(out)
    return out.value


@pytest.mark.parametrize("backend", BACKENDS)
def test_set_num_threads_caps_huge_counts(backend):
    value = _ok(backend, """
import warnings
result = []
for asked in (10**6, 2**63, 2**200):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cnnlab.set_num_threads(asked)
    assert any("at most MAX_THREADS" in str(c.message) for c in caught), caught
""" + KERNELS.replace("\n", "\n    ") + """
    result.append(cnnlab.get_num_threads())
""")
    assert value == (_parallel.MAX_THREADS,) * 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_omp_num_threads_is_capped_the_same_way(backend):
    value = _ok(backend, KERNELS + "result = cnnlab.get_num_threads()",
                env={"OMP_NUM_THREADS": "100000"})
    assert value == _parallel.MAX_THREADS


def test_max_threads_is_four_per_cpu():
    import os
    assert _parallel.MAX_THREADS == max(4, 4 * (os.cpu_count() or 1))


def test_set_num_threads_takes_numpy_integers_and_refuses_the_rest():
    import numpy as np
    n = cnnlab.get_num_threads()
    try:
        cnnlab.set_num_threads(np.int64(2))
        assert cnnlab.get_num_threads() == 2 and type(cnnlab.get_num_threads()) is int
        for bad in (0, -3, 2.0, True, "2", None, np.float64(2)):
            with pytest.raises(ValueError, match="positive int"):
                cnnlab.set_num_threads(bad)
    finally:
        cnnlab.set_num_threads(n)


# --------------------------------------------------------------------------- fork

FORK = """
import warnings
from _child import fork_and_wait

def kernels_in_child(conn):
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cnnlab.set_num_threads(2)                   # what used to hang
        rng = np.random.default_rng(1)
        x, w = rng.standard_normal((4, 6, 9, 9)), rng.standard_normal((4, 3, 3, 3))
        y = F.conv2d(x, w, padding=1, groups=2)
        np.testing.assert_allclose(y, R.conv2d(x, w, padding=1, groups=2), rtol=1e-10)
        g = F.conv2d_backward(y, x, w, padding=1, groups=2)
        for a, b in zip(g, R.conv2d_backward(y, x, w, padding=1, groups=2)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(F.max_pool2d_backward(x, x, 3, 1, 1),
                                   R.max_pool2d_backward(x, x, 3, 1, 1))
        np.testing.assert_allclose(F.avg_pool2d(x, 3, 2, 1), R.avg_pool2d(x, 3, 2, 1))
        conn.send((cnnlab.get_num_threads(), [str(c.message) for c in caught]))
    except BaseException as e:
        conn.send(repr(e))

cnnlab.set_num_threads(2)
before = fork_and_wait(kernels_in_child)    # no kernel ran yet: the child may use 2 threads
rng = np.random.default_rng(0)
F.conv2d(rng.standard_normal((8, 4, 16, 16)), rng.standard_normal((4, 4, 3, 3)))
F.max_pool2d(rng.standard_normal((8, 4, 16, 16)), 2)        # the parent's pool is up
after = fork_and_wait(kernels_in_child)
result = [before, after, cnnlab.get_num_threads()]
"""


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="no fork here")
@pytest.mark.parametrize("backend", BACKENDS)
def test_forked_child_that_asks_for_threads_never_hangs(backend):
    before, after, parent_threads = _ok(backend, FORK, timeout=120)
    assert before != "hung" and after != "hung", (before, after)
    assert not isinstance(before, str) and not isinstance(after, str), (before, after)
    assert before == (2, ())                    # a child forked before any kernel ran
    threads, warned = after                     # forked after the parent's threads ran
    assert parent_threads == 2
    if backend == "cython" and cnnlab.openmp_enabled():
        assert threads == 1 and any("forked" in m for m in warned), after
