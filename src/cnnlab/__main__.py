"""``python -m cnnlab``: the commands cnnlab installs, and which kernels this install has.

    python -m cnnlab              the commands, one line each, and the installed twins
    python -m cnnlab --version    the version number (cnnlab.__version__)
"""
from __future__ import annotations

import argparse
import sys

import cnnlab

#: ``python -m cnnlab.<name>``: what it does, in one line.
COMMANDS = {
    "train": "train a CNN classifier (default: the course's network on the bundled cats and dogs)",
    "predict": "class probabilities of image files under a trained checkpoint",
    "show": "pictures of what a trained CNN sees: filters, feature maps, probabilities",
}


def _listing() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"cnnlab {cnnlab.__version__}: 2-D CNNs written from scratch, and still fast.",
             "", "commands (python -m cnnlab.<command> --help for their options):"]
    lines += [f"  {name:<{width}}  {what}" for name, what in COMMANDS.items()]
    openmp = "with OpenMP" if cnnlab.openmp_enabled() else "without OpenMP"
    compiled = (f"compiled twin installed ({openmp})" if "cython" in cnnlab.backends()
                else "no compiled twin: this is the pure-Python install")
    lines += ["", f"backends: {', '.join(cnnlab.backends())}; {compiled}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cnnlab", description="List cnnlab's commands and installed backends.")
    parser.add_argument("--version", action="version", version=f"cnnlab {cnnlab.__version__}")
    parser.parse_args(argv)
    print(_listing())
    return 0


if __name__ == "__main__":
    sys.exit(main())
