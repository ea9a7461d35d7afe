"""GNU OpenMP's wait policy: the compiled twin loads its OpenMP runtime with a short spin
(``cnnlab._parallel.SPIN_COUNT``) unless the user chose one, and leaves the environment as it
found it. Checked in child processes: libgomp prints its settings when it loads with
``OMP_DISPLAY_ENV=VERBOSE``.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import cnnlab
from cnnlab import _parallel

pytestmark = pytest.mark.skipif("cython" not in cnnlab.backends(),
                                reason="the compiled twin is not built")

CHILD = ("import os, cnnlab; cnnlab.backends(); "
         "print('env', os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))")


def _child(**env):
    base = {k: v for k, v in os.environ.items()
            if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         env=dict(base, OMP_DISPLAY_ENV="VERBOSE", **env), timeout=60)
    assert out.returncode == 0, out.stderr
    if "GOMP_SPINCOUNT = " not in out.stderr:
        pytest.skip("this OpenMP runtime does not print GNU OpenMP's settings")
    spin = out.stderr.split("GOMP_SPINCOUNT = '")[1].split("'")[0]
    return spin, out.stdout.split("env ")[1].split()


def test_default_loads_with_a_short_spin_and_restores_the_environment():
    spin, env = _child()
    assert spin == _parallel.SPIN_COUNT
    assert env == ["None", "None"]


@pytest.mark.parametrize("env, want", [({"GOMP_SPINCOUNT": "123"}, "123"),
                                       ({"OMP_WAIT_POLICY": "PASSIVE"}, "0")])
def test_a_users_choice_wins(env, want):
    spin, seen = _child(**env)
    assert spin == want
    assert seen == [env.get("GOMP_SPINCOUNT", "None"), env.get("OMP_WAIT_POLICY", "None")]
