"""Progress bars that show where someone watches and stay silent elsewhere.

``bar(total, desc, enabled=None)`` is a ``tqdm`` bar. With ``enabled=None`` it is on in a
terminal (stderr is a TTY) and in a Jupyter kernel (where tqdm alone would switch itself
off, because a notebook's output stream is not a TTY), and off when output goes to a file,
a pipe or a CI log. In Jupyter it is ``tqdm.auto``'s widget when ipywidgets is installed,
else tqdm's text bar. ``in_notebook()`` tells whether the code runs in a Jupyter kernel.
"""
from __future__ import annotations

import sys

__all__ = ["bar", "in_notebook", "interactive"]


def in_notebook() -> bool:
    """True inside a Jupyter (ipykernel) kernel."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except AttributeError:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def interactive() -> bool:
    """Someone watches: a Jupyter kernel, or stderr is a terminal."""
    if in_notebook():
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _widgets() -> bool:
    import importlib.util
    return importlib.util.find_spec("ipywidgets") is not None


def bar(total=None, desc: str = "", enabled=None, **kwargs):
    """A tqdm bar over ``total`` steps (see the module docstring); ``kwargs`` go to tqdm."""
    on = interactive() if enabled is None else bool(enabled)
    if on and in_notebook() and _widgets():
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(total=total, desc=desc, disable=not on, file=sys.stderr, **kwargs)
