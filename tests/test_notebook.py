"""cnnlab in Jupyter. In a real kernel (nbclient, ipykernel): ``summary`` shows its table
once, figures from ``cnnlab.show`` display inline (image/png outputs), training with a
progress bar runs. docs/tutorial.ipynb: in step with docs/tutorial.md (regenerating it gives
the same bytes), a valid notebook, and (a slow test) it runs top to bottom without an
error, with its figures inline.
"""
from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import re
import time
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


def _execute(nb, folder, timeout=300):
    """Run every cell of ``nb`` (in place) in a fresh python3 kernel started in ``folder``;
    a cell that raises fails the test (nbclient's CellExecutionError names it)."""
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}}).execute()
    return nb


def _text(cell) -> str:
    """Everything a cell shows as text: its streams and its results' text/plain."""
    return "".join(o.text if o.output_type == "stream" else
                   o.get("data", {}).get("text/plain", "") for o in cell.outputs)


def _pngs(cell) -> list:
    """(width, height) of each image/png a cell shows."""
    from PIL import Image
    return [Image.open(io.BytesIO(base64.b64decode(o.data["image/png"]))).size
            for o in cell.outputs if "image/png" in o.get("data", {})]


def test_a_kernel_shows_the_summary_once_and_figures_inline(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("matplotlib")
    from cnnlab import models
    from cnnlab.summary import summary

    code = nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook(cells=[
        code("import numpy as np\nimport cnnlab\nfrom cnnlab import models, show\n"
             "model = models.build('lab', 1, 28, 2)\ncnnlab.summary(model, (1, 28, 28))"),
        code("show.filters_figure(model.conv_layers[0].weight)"),
        code("from cnnlab import loop\n"
             "from cnnlab.utils.data import DataLoader, TensorDataset\n"
             "data = TensorDataset(cnnlab.randn(8, 1, 28, 28), cnnlab.randint(0, 2, (8,)))\n"
             "optimizer = cnnlab.optim.SGD(model.parameters(), lr=0.01)\n"
             "history = loop.fit(model, DataLoader(data, batch_size=4), None, optimizer, 2)\n"
             "show.curves_figure(history)"),
    ])
    summary_cell, filters_cell, fit_cell = _execute(nb, tmp_path).cells
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        summary(models.build("lab", 1, 28, 2), (1, 28, 28))
    assert _text(summary_cell) == table.getvalue()          # once, and nothing echoed
    assert [o.output_type for o in summary_cell.outputs] == ["stream"]
    assert _pngs(filters_cell) == [(400, 450)]               # 16 filters: 4 x 4 tiles
    assert _pngs(fit_cell) == [(900, 360)]
    assert not [o for o in fit_cell.outputs if o.output_type == "stream"
                and o.name == "stderr" and "Error" in o.text]


@pytest.mark.slow
def test_notebook_runs(tmp_path):
    """The tutorial, top to bottom, in a kernel: no error; each cell that ends with a
    figure of cnnlab.show shows it as a PNG; the cell that ends with summary() shows the
    table once."""
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("matplotlib")
    start = time.perf_counter()
    nb = _execute(nbformat.read(NOTEBOOK, as_version=4), tmp_path)
    print(f"docs/tutorial.ipynb ran in {time.perf_counter() - start:.1f} s")
    cells = [c for c in nb.cells if c.cell_type == "code"]
    figures = [c for c in cells if re.fullmatch(r"show\.\w+_figure\([^()]*\)",
                                                c.source.splitlines()[-1])]
    assert len(figures) >= 4                       # curves, filters, feature maps, prediction
    for cell in figures:
        assert len(_pngs(cell)) == 1, cell.source
    tables = [c for c in cells if c.source.splitlines()[-1].startswith("cnnlab.summary(")]
    assert len(tables) == 1 and _text(tables[0]).count("Total params") == 1
