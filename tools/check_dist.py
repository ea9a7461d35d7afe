"""Check cnnlab's distribution files before anyone installs them.

    python tools/check_dist.py dist/                          every cnnlab wheel and sdist there
    python tools/check_dist.py --compiled wheelhouse/         ... and each wheel must be compiled
    python tools/check_dist.py --release dist/*               ... and publishable (project URLs)

What a file must hold, independent of how it was built:

- every file: the version in its name, in its metadata and in ``__version__`` agree; the
  metadata names the MIT licence (PEP 639) and each ``License-File`` it lists is inside.
- a wheel: the package as the source tree has it (every module and data file under
  ``src/cnnlab``, compared with the sdist when one is given, else with ``--source``), no
  Cython/C sources. ``py3-none-any`` holds no compiled code; any other wheel holds the
  compiled twin (``cnnlab/_core.*``) and the OpenMP runtime its repair tool copied in, and
  has a tag an installer accepts elsewhere (``manylinux``/``musllinux``, not ``linux``).
- an sdist: all a build needs (pyproject.toml, CMakeLists.txt, the ``.pyx``, README,
  licences, the bundled data) and no build output.

Standard library only: cibuildwheel runs it in its build containers after the repair.
"""
from __future__ import annotations

import argparse
import fnmatch
import os
import re
import sys
import tarfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath

PACKAGE = "cnnlab"
SOURCES = ("*.pyx", "*.pxd", "*.pxi", "*.c", "*.h", "*.cpp")      # never in a wheel
BUILD_OUTPUT = ("*.so", "*.pyd", "*.dylib", "*.dll", "*.pyc", "*.html", "*.o")
OPENMP_RUNTIMES = ("*libgomp*", "*libomp*", "*libiomp*", "*vcomp*.dll")
SDIST_NEEDS = ("pyproject.toml", "CMakeLists.txt", "README.md", "LICENSE",
               "src/cnnlab/__init__.py", "src/cnnlab/_core.pyx",
               "src/cnnlab/datasets/LICENSE", "src/cnnlab/datasets/catsdogs.npz")
VERSION_LINE = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.M)


def _matches(name: str, patterns) -> bool:
    base = PurePosixPath(name).name
    return any(fnmatch.fnmatch(base, p) for p in patterns)


def _package_files(names, root: str) -> set:
    """Paths relative to ``root`` (e.g. ``cnnlab-0.1.0/src/cnnlab``) of the files below it,
    sources and build output left out: what a wheel's ``cnnlab/`` must hold."""
    prefix = root.rstrip("/") + "/"
    return {n[len(prefix):] for n in names
            if n.startswith(prefix) and not n.endswith("/") and "__pycache__/" not in n
            and not _matches(n, SOURCES + BUILD_OUTPUT)}


def source_tree_files(project: Path) -> set:
    """The package files of a source checkout (``project/src/cnnlab``)."""
    root = project / "src" / PACKAGE
    if not root.is_dir():
        raise SystemExit(f"check_dist: no package at {root}")
    names = [f"{PACKAGE}/{p.relative_to(root).as_posix()}" for p in root.rglob("*") if p.is_file()]
    return _package_files(names, PACKAGE)


class Dist:
    """One wheel or sdist: its member names, and text members on demand."""

    def __init__(self, path: Path):
        self.path = path
        self.is_wheel = path.suffix == ".whl"
        if self.is_wheel:
            with zipfile.ZipFile(path) as z:
                self.names = z.namelist()
        else:
            with tarfile.open(path) as t:
                self.names = [m.name + ("/" if m.isdir() else "") for m in t.getmembers()]
        self.top = self.names[0].split("/")[0] if not self.is_wheel else ""
        # where the metadata and the licence files are: NAME-V.dist-info/{METADATA,licenses/}
        # in a wheel, NAME-V/{PKG-INFO,<the files themselves>} in an sdist
        self.dist_info = next((n.split("/")[0] for n in self.names
                               if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)), "")

    def read(self, name: str) -> str:
        if self.is_wheel:
            with zipfile.ZipFile(self.path) as z:
                return z.read(name).decode("utf-8")
        with tarfile.open(self.path) as t:
            return t.extractfile(name).read().decode("utf-8")

    def metadata(self):
        name = f"{self.dist_info}/METADATA" if self.is_wheel else f"{self.top}/PKG-INFO"
        return HeaderParser().parsestr(self.read(name))

    def license_path(self, license_file: str) -> str:
        return (f"{self.dist_info}/licenses/{license_file}" if self.is_wheel
                else f"{self.top}/{license_file}")


def check_common(d: Dist, meta, version: str, problems: list, release: bool):
    if meta["Name"] != PACKAGE:
        problems.append(f"metadata Name is {meta['Name']!r}")
    if meta["Version"] != version:
        problems.append(f"metadata Version {meta['Version']} differs from the file name's {version}")
    init = f"{PACKAGE}/__init__.py" if d.is_wheel else f"{d.top}/src/{PACKAGE}/__init__.py"
    found = VERSION_LINE.search(d.read(init)) if init in d.names else None
    if not found or found.group(1) != version:
        problems.append(f"__version__ in {init} is {found and found.group(1)}, the file says {version}")
    if meta["License-Expression"] != "MIT":
        problems.append(f"License-Expression is {meta['License-Expression']!r}, expected 'MIT'")
    license_files = meta.get_all("License-File") or []
    if "LICENSE" not in license_files:
        problems.append(f"License-File does not list LICENSE: {license_files}")
    if not any(f.endswith("datasets/LICENSE") for f in license_files):
        problems.append("License-File does not list the bundled data's licence")
    for lf in license_files:
        if d.license_path(lf) not in d.names:
            problems.append(f"License-File {lf} is not in the file ({d.license_path(lf)})")
    if release and not meta.get_all("Project-URL"):
        problems.append("no Project-URL: add [project.urls] to pyproject.toml before a release")


def check_wheel(d: Dist, tags: str, expect: str | None, reference: set | None,
                problems: list) -> str:
    pure = tags == "py3-none-any"
    if expect == "compiled" and pure:
        problems.append("expected a compiled wheel, got py3-none-any")
    if expect == "pure" and not pure:
        problems.append(f"expected a pure wheel, got {tags}")
    sources = [n for n in d.names if _matches(n, SOURCES)]
    if sources:
        problems.append(f"sources in the wheel: {sources}")
    extensions = [n for n in d.names if re.fullmatch(rf"{PACKAGE}/_core\.[^/]*\.(so|pyd)", n)]
    runtimes = [n for n in d.names if _matches(n, OPENMP_RUNTIMES)]
    if pure:
        compiled = [n for n in d.names if _matches(n, ("*.so", "*.pyd", "*.dylib", "*.dll"))]
        if compiled:
            problems.append(f"compiled files in a pure wheel: {compiled}")
        what = "pure"
    else:
        platform = tags.split("-")[-1]
        if re.match(r"linux_", platform):
            problems.append(f"platform tag {platform}: not repaired (run auditwheel repair)")
        if len(extensions) != 1:
            problems.append(f"expected one compiled twin cnnlab/_core.*, found {extensions}")
        if not runtimes:
            problems.append("no OpenMP runtime bundled (libgomp/libomp/vcomp140)")
        what = f"{platform}, OpenMP runtime {', '.join(runtimes) or 'missing'}"
    if reference is not None:
        have = _package_files(d.names, PACKAGE)
        missing = sorted(reference - have)
        extra = sorted(have - reference)
        if missing:
            problems.append(f"missing from the wheel (in the source tree): {missing}")
        if extra:
            problems.append(f"in the wheel but not in the source tree: {extra}")
    return what


def check_sdist(d: Dist, problems: list) -> str:
    root = d.top + "/"
    missing = [n for n in SDIST_NEEDS if root + n not in d.names]
    if missing:
        problems.append(f"missing from the sdist: {missing}")
    built = [n for n in d.names if n.startswith((root + "build/", root + "dist/"))
             or _matches(n, BUILD_OUTPUT)]
    if built:
        problems.append(f"build output in the sdist: {built[:5]}")
    return f"{len(_package_files(d.names, root + 'src/' + PACKAGE))} package files"


def check(path: Path, expect: str | None, source: Path | None, sdist_reference: set | None,
          release: bool) -> list:
    d = Dist(path)
    problems: list = []
    if d.is_wheel:  # name-version[-build]-python-abi-platform.whl
        parts = path.name[:-len(".whl")].split("-")
        version, tags = parts[1], "-".join(parts[-3:])
    else:
        m = re.fullmatch(rf"{PACKAGE}-(.+)\.tar\.gz", path.name)
        version = m.group(1) if m else "?"
    meta = d.metadata()
    check_common(d, meta, version, problems, release)
    if d.is_wheel:
        reference = sdist_reference if sdist_reference is not None else (
            source_tree_files(source) if source else None)
        what = check_wheel(d, tags, expect, reference, problems)
    else:
        what = check_sdist(d, problems)
    status = "FAIL" if problems else "ok"
    print(f"{status:4}  {path.name}  ({what}; {len(d.names)} members)")
    for p in problems:
        print(f"      - {p}")
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="+", type=Path, help="wheels, sdists or folders holding them")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--compiled", dest="expect", action="store_const", const="compiled",
                      help="every wheel must be compiled")
    kind.add_argument("--pure", dest="expect", action="store_const", const="pure",
                      help="every wheel must be py3-none-any")
    p.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[1],
                   help="source checkout whose src/cnnlab a wheel must match, when no sdist "
                        "is among the files (default: this script's checkout)")
    p.add_argument("--release", action="store_true", help="also require publishable metadata")
    args = p.parse_args(argv)

    files = []
    for path in args.paths:
        if path.is_dir():
            files += sorted(path.glob(f"{PACKAGE}-*.whl")) + sorted(path.glob(f"{PACKAGE}-*.tar.gz"))
        else:
            files.append(path)
    if not files:
        print(f"check_dist: no {PACKAGE} wheel or sdist in {[str(p) for p in args.paths]}")
        return 1
    sdists = [f for f in files if f.name.endswith(".tar.gz")]
    sdist_reference = None
    if sdists:
        d = Dist(sdists[0])
        sdist_reference = _package_files(d.names, f"{d.top}/src/{PACKAGE}")
    source = args.source if (args.source / "src" / PACKAGE).is_dir() else None
    failed = sum(bool(check(f, args.expect, source, sdist_reference, args.release)) for f in files)
    print(f"check_dist: {len(files) - failed} ok, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
