"""cnnlab._malloc: the first backward(), or the first cnnlab.functional call, keeps glibc from
handing freed activations back to the kernel (each check in a child process, since the
setting is process-wide)."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")

# A training step's pattern: a few MB of activations allocated, all freed at the end of the
# backward, allocated again by the next forward. Prints the minor page faults of 20 steps.
WARMUPS = {"nothing": "",
           "backward": "x = cnnlab.ones(2, requires_grad=True); (x * 2).sum().backward()",
           "functional": "cnnlab.functional.relu(np.ones(2, np.float32))"}
STEPS = """
import resource, numpy as np, cnnlab, cnnlab.functional
{warmup}
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    saved = [np.ones(512 * 1024, np.float32) for _ in range(6)]   # 6 x 2 MiB
    del saved
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(warmup: str, **env) -> int:
    out = subprocess.run([sys.executable, "-c", STEPS.format(warmup=WARMUPS[warmup])],
                         capture_output=True, text=True, check=True,
                         env=dict(os.environ, **env))
    return int(out.stdout.strip().splitlines()[-1])


def _applied(**env) -> str:
    code = ("from cnnlab import _malloc; import cnnlab; x = cnnlab.ones(1, requires_grad=True);"
            " x.sum().backward(); print(_malloc.keep_freed_memory())")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env=dict(os.environ, **env)).stdout.strip()


@glibc
def test_freed_activations_stay_in_the_process():
    step = 6 * 2 * 1024 * 1024 // 4096   # one step's pages (4 KiB pages)
    untuned = _faults("nothing")
    # glibc's default: later steps fault their pages in again (all of them, or every other
    # one once some import has already raised glibc's dynamic threshold)
    assert untuned > 5 * step, untuned
    for warmup in ("backward", "functional"):
        tuned = _faults(warmup)
        assert tuned < 2 * step, (warmup, tuned)    # only the first step faults its pages in


@glibc
def test_the_setting_can_be_refused():
    assert _applied() == "True"
    assert _applied(CNNLAB_MALLOC_TUNING="0") == "False"
    assert _applied(MALLOC_TRIM_THRESHOLD_="1000000") == "False"   # the user's own choice
