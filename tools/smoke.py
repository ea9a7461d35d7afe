"""Smoke-test an installed cnnlab: run it with the Python of the environment to check.

    python tools/smoke.py --expect compiled     the compiled twin, with OpenMP
    python tools/smoke.py --expect pure         the NumPy twin alone

It checks what a user meets first: the package imports from the environment (not from a
source tree), its version is the installed distribution's, the expected twin is there
and computes what the naive loops of ``cnnlab.reference`` compute, ``python -m cnnlab``
answers, and one training epoch of ``python -m cnnlab.train`` runs to the end.
Flags of the training command used here: ``--epochs`` and ``--out`` only.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"smoke: FAILED: {message}")


def run(*args: str, cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Smoke-test the cnnlab installed in this Python.")
    p.add_argument("--expect", choices=["compiled", "pure"], required=True)
    args = p.parse_args(argv)

    import numpy as np

    import cnnlab
    from cnnlab import functional as F
    from cnnlab import reference

    location = Path(cnnlab.__file__).resolve().parent
    print(f"cnnlab {cnnlab.__version__} from {location}")
    print(f"backends {cnnlab.backends()}, default {cnnlab.get_backend()}, "
          f"OpenMP {cnnlab.openmp_enabled()}, {cnnlab.get_num_threads()} threads")
    check(Path(sys.prefix).resolve() in location.parents,
          f"cnnlab imported from {location}, not from this environment ({sys.prefix})")
    check(metadata.version("cnnlab") == cnnlab.__version__,
          f"installed metadata says {metadata.version('cnnlab')}, __version__ {cnnlab.__version__}")

    if args.expect == "compiled":
        check("cython" in cnnlab.backends(), f"no compiled twin: {cnnlab.backends()}")
        check(cnnlab.get_backend() == "cython", f"default backend {cnnlab.get_backend()}")
        check(cnnlab.openmp_enabled(), "the compiled twin was built without OpenMP")
    else:
        check("cython" not in cnnlab.backends(), f"a pure install with {cnnlab.backends()}")
        check(not cnnlab.openmp_enabled(), "openmp_enabled() without a compiled twin")

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 8))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    for kwargs in ({}, dict(stride=2, padding=1), dict(padding=2, dilation=2)):
        got = F.conv2d(x, w, b, **kwargs)
        want = reference.conv2d(x, w, b, **kwargs)
        check(np.allclose(got, want, rtol=1e-10, atol=1e-10),
              f"conv2d{kwargs} on {cnnlab.get_backend()} differs from the naive loops")
    y = F.conv2d(x.astype(np.float32), w.astype(np.float32))
    check(y.dtype == np.float32 and y.shape == (2, 4, 7, 6), f"float32 conv2d gave {y.dtype} {y.shape}")
    print("conv2d agrees with cnnlab.reference")

    with tempfile.TemporaryDirectory() as tmp:
        listing = run("-m", "cnnlab", cwd=tmp)
        check(listing.returncode == 0 and all(c in listing.stdout for c in ("train", "predict", "show")),
              f"python -m cnnlab:\n{listing.stdout}{listing.stderr}")
        version = run("-m", "cnnlab", "--version", cwd=tmp)
        check(version.stdout.split() == ["cnnlab", cnnlab.__version__],
              f"python -m cnnlab --version printed {version.stdout!r}{version.stderr}")

        out = os.path.join(tmp, "run")
        start = time.perf_counter()
        train = run("-m", "cnnlab.train", "--epochs", "1", "--out", out, cwd=tmp)
        seconds = time.perf_counter() - start
        check(train.returncode == 0,
              f"python -m cnnlab.train --epochs 1 exited {train.returncode}:\n"
              f"{train.stdout[-2000:]}{train.stderr[-2000:]}")
        check(os.path.isdir(out) and os.listdir(out), f"training wrote nothing to {out}")
        last = [line for line in train.stdout.splitlines() if line.strip()][-3:]
        print(f"one training epoch in {seconds:.1f} s:", *last, sep="\n  ")
    print(f"smoke: ok ({args.expect})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
