"""How the commands (``train``, ``predict``, ``show``) end: an exit status, and for an error
one line on stderr (names printed with control characters escaped), never a traceback.

    2    a checkpoint that cannot be used (CheckpointError); argparse's own errors
    1    anything else the user can fix: data, settings, files, memory, a stopped run
    130  Ctrl-C
"""
from __future__ import annotations

import sys
from typing import Callable

from .checkpoint import CheckpointError
from .data import printable

__all__ = ["run"]


def run(prog: str, body: Callable[[], int]) -> int:
    """``body()``'s exit status, or the status and one line for the error it raised."""
    try:
        return body()
    except CheckpointError as e:
        print(f"{prog}: error: {printable(e)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{prog}: error: out of memory", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError, ImportError) as e:
        print(f"{prog}: error: {printable(e)}", file=sys.stderr)
        return 1
