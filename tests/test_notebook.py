"""docs/tutorial.ipynb: in step with docs/tutorial.md (regenerating it gives the same
bytes), a valid notebook, and it runs top to bottom in a Jupyter kernel (nbclient) without
an error, its figures shown inline.
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"
MARKDOWN = ROOT / "docs" / "tutorial.md"


def _converter():
    spec = importlib.util.spec_from_file_location("md_to_ipynb", ROOT / "tools" / "md_to_ipynb.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebook_is_in_step_with_the_markdown():
    expected = _converter().render(MARKDOWN.read_text(encoding="utf-8"))
    assert NOTEBOOK.read_text(encoding="utf-8") == expected, \
        "docs/tutorial.ipynb is out of step: run python tools/md_to_ipynb.py"


def test_converter_cells():
    split = _converter().split
    text = "# A\n\ntext\n\n```python\nx = 1\n```\n\n```bash\nls\n```\n## B\nmore\n"
    assert split(text) == [("markdown", "# A\n\ntext"), ("code", "x = 1"),
                           ("markdown", "```bash\nls\n```"), ("markdown", "## B\nmore")]
    with pytest.raises(ValueError, match="unclosed"):
        split("```python\nx = 1\n")


def test_notebook_is_valid():
    nbformat = pytest.importorskip("nbformat")
    nbformat.validate(nbformat.read(NOTEBOOK, as_version=4))


def test_notebook_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
    nb = nbformat.read(tmp_path / NOTEBOOK.name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    assert sys.executable  # the kernel is this interpreter's ipykernel
