#!/usr/bin/env python3
"""Make a Jupyter notebook from a Markdown tutorial: docs/tutorial.md -> docs/tutorial.ipynb.

The .md is the one source; the notebook is generated, never edited by hand:

    python tools/md_to_ipynb.py                  # rewrite docs/tutorial.ipynb
    python tools/md_to_ipynb.py --check          # exit 1 if the notebook is out of step
    python tools/md_to_ipynb.py IN.md OUT.ipynb

Each ```python block becomes a code cell (in order; outputs empty). The text between them,
```bash and other blocks included, becomes Markdown cells, a new one at each heading. The
output is byte-for-byte reproducible (nbformat 4.5 JSON, sorted keys, numbered cell ids), so
a test can regenerate it and compare. Only the standard library is needed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "docs" / "tutorial.md"
TARGET = ROOT / "docs" / "tutorial.ipynb"
NOTE = ("*This notebook is generated from `docs/tutorial.md` by `tools/md_to_ipynb.py`: "
        "edit the Markdown file, then regenerate.*")


def split(markdown: str) -> list:
    """[(kind, text)] with kind "code" (a python block's body) or "markdown"."""
    pieces, lines, fence = [], [], None

    def flush(kind):
        text = "\n".join(lines).strip("\n")
        if text.strip():
            pieces.append((kind, text))
        lines.clear()

    for line in markdown.splitlines():
        if fence is None and line.startswith("```"):
            fence = line[3:].strip().split(" ")[0] or "text"
            if fence == "python":
                flush("markdown")
                continue
        elif fence is not None and line.strip() == "```":
            was, fence = fence, None
            if was == "python":
                flush("code")
                continue
        elif fence is None and line.startswith("#"):
            flush("markdown")
        lines.append(line)
    if fence is not None:
        raise ValueError(f"unclosed ```{fence} block at the end of the file")
    flush("markdown")
    return pieces


def _source(text: str) -> list:
    """nbformat's multi-line string: lines keeping their newline, the last one without."""
    return text.splitlines(keepends=True)


def notebook(markdown: str) -> dict:
    """The notebook (nbformat 4.5, as a dict) for ``markdown``."""
    cells = []
    for i, (kind, text) in enumerate([("markdown", NOTE)] + split(markdown)):
        cell = {"cell_type": kind, "id": f"cell-{i:03d}", "metadata": {},
                "source": _source(text)}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        cells.append(cell)
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                        "name": "python3"},
                         "language_info": {"name": "python"}}}


def render(markdown: str) -> str:
    """The notebook file's text for ``markdown``."""
    return json.dumps(notebook(markdown), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=SOURCE)
    parser.add_argument("target", nargs="?", type=Path, default=TARGET)
    parser.add_argument("--check", action="store_true",
                        help="do not write: exit 1 if the target differs from a regeneration")
    args = parser.parse_args(argv)
    text = render(args.source.read_text(encoding="utf-8"))
    if args.check:
        current = args.target.read_text(encoding="utf-8") if args.target.exists() else None
        if current != text:
            print(f"{args.target} is out of step with {args.source}: run "
                  f"python tools/md_to_ipynb.py", file=sys.stderr)
            return 1
        return 0
    args.target.write_text(text, encoding="utf-8")
    print(f"wrote {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
