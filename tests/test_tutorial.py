"""docs/tutorial.md runs: its ```python blocks are executed in order, in one namespace, in a
temporary folder; the options of its ```bash commands must parse."""
from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest
from PIL import Image

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)


def blocks(language):
    """[(first line number, code)] of the fenced blocks of ``language``."""
    text = TUTORIAL.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(2)) + 1, m.group(2))
            for m in FENCE.finditer(text) if m.group(1) == language]


def test_fences_are_closed():
    text = TUTORIAL.read_text(encoding="utf-8")
    fences = [line for line in text.splitlines() if line.startswith("```")]
    assert len(fences) % 2 == 0
    assert len(fences) // 2 == len(blocks("python")) + len(blocks("bash"))


def test_python_blocks_run(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")        # sections 10 and 11 draw with cnnlab.show
    pytest.importorskip("scipy")
    code = blocks("python")
    assert len(code) >= 20
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "tutorial"}
    for line, source in code:
        # pad with newlines so a traceback names the line of docs/tutorial.md
        exec(compile("\n" * (line - 1) + source, str(TUTORIAL), "exec"), namespace)
    for name in ("curves.png", "filters.png"):
        with Image.open(tmp_path / "pictures" / name) as im:
            assert im.format == "PNG"


def test_bash_commands_parse():
    """Every ``python -m cnnlab.<tool> ...`` line names a tool whose parser accepts it."""
    commands = []
    for _, source in blocks("bash"):
        for line in source.splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("python -m cnnlab."):
                commands.append(shlex.split(line))
    assert {c[2] for c in commands} >= {"cnnlab.train", "cnnlab.show"}
    for command in commands:
        module = importlib.import_module(command[2])
        module.build_parser().parse_args(command[3:])
