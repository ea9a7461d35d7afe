#!/usr/bin/env bash
# Build cnnlab's three distribution files here and check each one:
#
#   cnnlab-V.tar.gz                       sdist (python -m build: isolated, from the tree)
#   cnnlab-V-cpXY-cpXY-manylinux_*.whl    compiled twin, built from the sdist in a fresh
#                                         build environment, repaired by auditwheel (the
#                                         OpenMP runtime copied into cnnlab.libs/)
#   cnnlab-V-py3-none-any.whl             pure wheel (CNNLAB_PURE_PYTHON=1), from the sdist
#
# Checks: tools/check_dist.py on all three (tags, files, licences, data, one version);
# then each wheel, and the sdist (a source build), installed into a fresh venv with its
# dependencies and run through tools/smoke.py (import, twin, numbers, one training epoch).
#
# Usage: tools/build_wheels.sh [--out DIR] [--venvs DIR] [--no-sdist-smoke]
#   --out DIR         where the files go (default dist/; old cnnlab files there are removed)
#   --venvs DIR       keep the wheels' smoke venvs as DIR/compiled and DIR/pure (.ci/run
#                     runs the test suite in them); default: temporary, removed
#   --no-sdist-smoke  skip installing the sdist (one more compile, ~30 s)
# Env: PYTHON (default python3) picks the interpreter, hence the wheel's Python tag.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
source tools/lib.sh

out=dist venvs="" sdist_smoke=1
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --venvs) venvs="$2"; shift 2 ;;
        --no-sdist-smoke) sdist_smoke=0; shift ;;
        *) echo "usage: $0 [--out DIR] [--venvs DIR] [--no-sdist-smoke]" >&2; exit 2 ;;
    esac
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
out="$(cd "$out" && pwd)"
venvs="${venvs:-$work/venvs}"
rm -f "$out"/cnnlab-*.whl "$out"/cnnlab-*.tar.gz
tools_venv

build() {
    # sdist, and the compiled wheel built from it (python -m build's default).
    python -m build --outdir "$work/raw" . >"$work/build.log" 2>&1 \
        || { tail -40 "$work/build.log"; return 1; }
    grep -E "cnnlab: OpenMP|cnnlab: no OpenMP|Created" "$work/build.log" || true
    auditwheel repair --wheel-dir "$out" "$work"/raw/cnnlab-*.whl >"$work/repair.log" 2>&1 \
        || { cat "$work/repair.log"; return 1; }
    grep "Fixed-up wheel" "$work/repair.log"
    mv "$work"/raw/cnnlab-*.tar.gz "$out/"
    # The pure wheel, from the same sdist.
    tar -xzf "$out"/cnnlab-*.tar.gz -C "$work"
    CNNLAB_PURE_PYTHON=1 python -m build --wheel --outdir "$out" "$work"/cnnlab-*/ \
        >"$work/pure.log" 2>&1 || { tail -40 "$work/pure.log"; return 1; }
    ls -l "$out"
}

smoke() {  # smoke KIND FILE VENV: install FILE (and its dependencies) into a fresh VENV
    make_venv "$3"
    venv_pip "$3" install -q --no-compile "$2"
    (cd "$work" && "$3/bin/python" "$repo/tools/smoke.py" --expect "$1")
}

step "build: sdist, compiled wheel from it (auditwheel repair), pure wheel" build
step "check_dist: tags, files, licences, data" python tools/check_dist.py "$out"
step "smoke: compiled wheel in a fresh venv" \
    smoke compiled "$(ls "$out"/cnnlab-*-manylinux*.whl)" "$venvs/compiled"
step "smoke: pure wheel in a fresh venv" \
    smoke pure "$(ls "$out"/cnnlab-*-py3-none-any.whl)" "$venvs/pure"
if [ "$sdist_smoke" = 1 ]; then
    step "smoke: sdist built and installed in a fresh venv" \
        smoke compiled "$(ls "$out"/cnnlab-*.tar.gz)" "$work/sdist-venv"
fi
step_report
