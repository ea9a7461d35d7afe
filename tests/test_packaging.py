"""What an install of cnnlab must be: the package the tests import is the installed one,
its version is the distribution's, and ``python -m cnnlab`` lists the real commands.

CNNLAB_EXPECT_INSTALLED_IN=DIR (.ci/run sets it to the venv under test) makes the first
test fail unless ``cnnlab`` was imported from below DIR: CI runs the suite against an
installed wheel, and this proves it never picked up a source tree instead.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import cnnlab

PACKAGE_DIR = Path(cnnlab.__file__).resolve().parent
REPO = Path(__file__).resolve().parents[1]


def _python_m(*args):
    return subprocess.run([sys.executable, "-m", "cnnlab", *args], capture_output=True,
                          text=True, timeout=120, check=True).stdout


def test_imports_the_installed_package():
    prefix = os.environ.get("CNNLAB_EXPECT_INSTALLED_IN")
    if not prefix:
        pytest.skip("CNNLAB_EXPECT_INSTALLED_IN is not set (CI sets it)")
    assert Path(prefix).resolve() in PACKAGE_DIR.parents, (
        f"cnnlab was imported from {PACKAGE_DIR}, not from the install in {prefix}")
    assert REPO / "src" not in PACKAGE_DIR.parents


def test_one_version_number():
    assert metadata.version("cnnlab") == cnnlab.__version__
    assert _python_m("--version").split() == ["cnnlab", cnnlab.__version__]


def _commands_in_package():
    """Modules of the package that run as ``python -m cnnlab.<name>`` (they end in an
    ``if __name__ == "__main__":`` block), found by parsing their source."""
    found = set()
    for path in PACKAGE_DIR.glob("*.py"):
        if path.stem.startswith("_"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
                    and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"):
                found.add(path.stem)
    return found


def test_python_m_cnnlab_lists_every_command(capsys):
    from cnnlab.__main__ import COMMANDS, main
    assert set(COMMANDS) == _commands_in_package(), (
        "cnnlab/__main__.py COMMANDS must list each python -m cnnlab.<name> module")
    assert main([]) == 0
    listing = capsys.readouterr().out
    for name in COMMANDS:
        assert any(line.split()[:1] == [name] for line in listing.splitlines()), listing
    assert ", ".join(cnnlab.backends()) in listing
