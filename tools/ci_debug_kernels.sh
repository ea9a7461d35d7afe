#!/usr/bin/env bash
# Build the compiled twin with Cython's bounds and initialisation checks on
# (-Ccmake.define.CNNLAB_DEBUG=ON) and run the kernel tests on it.
#
# The debug build goes into its own target folder (not the environment's cnnlab) and its
# own CMake build folder, build/debug-<wheel tag>, so a second run recompiles only what
# changed and the release build's cache is left alone. The tests then import it through
# PYTHONPATH (the child processes of the crash tests inherit it) and use the active
# environment's numpy, torch and pytest: run this after the test extra is installed.
#
#   tools/ci_debug_kernels.sh                 # the kernel tests, the compiled twin only
#   CNNLAB_DEBUG_TESTS="tests/test_ops.py" tools/ci_debug_kernels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
target="$(mktemp -d)/site"
trap 'rm -rf "$(dirname "$target")"' EXIT

echo "== debug build (CNNLAB_DEBUG=ON: bounds checks) into $target"
python -m pip install -q --no-deps --target "$target" \
    -Ccmake.define.CNNLAB_DEBUG=ON -Cbuild-dir="build/debug-{wheel_tag}" .
export PYTHONPATH="$target${PYTHONPATH:+:$PYTHONPATH}"
python - <<PY
import cnnlab, cnnlab._core
assert cnnlab.__file__.startswith("$target"), cnnlab.__file__
assert "cython" in cnnlab.backends(), cnnlab.backends()
print("debug build in use:", cnnlab._core.__file__)
PY

# The tests that aim at the compiled kernels' edges, on the compiled twin (and the
# twin-independent ones in those files): every op's cases, wide paddings, sizes past the
# 32-bit limits, threads and forks, and the fuzz harness (25 cases per op, compared with
# the torch twin). The gradient and property suites run on the release build only.
tests=${CNNLAB_DEBUG_TESTS:-"tests/test_ops.py tests/test_wide_padding.py tests/test_sizes.py
  tests/test_threads.py tests/test_parallel.py tests/test_fuzz.py"}
# shellcheck disable=SC2086
CNNLAB_FUZZ_CASES="${CNNLAB_FUZZ_CASES:-25}" python -m pytest -q -p no:cacheprovider \
    -k "cython or fuzz or not (numpy or torch)" $tests
echo "== debug kernels done in $((SECONDS - start)) s"
