"""Crafted checkpoint files (the cases of issue 9 and the kinds around them), loaded in a
child process with an address-space limit: each is refused with one CheckpointError line
naming the file, cheaply (the child's peak memory stays near what a good checkpoint
takes), and ``python -m cnnlab.predict`` answers each with one line and exit status 2.

Under the memory limit a runaway allocation would end as "too large to load into memory";
every case therefore expects its own, specific message.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from cnnlab import checkpoint, models, optim, serialization
from _child import run_code, describe

MEMORY_GB = 3          # the child's address-space limit (imports take ~1.5 GB of it)
EXTRA_MB = 150         # what loading any crafted file may add to the child's peak RSS


def _raw(path, header: dict, body: bytes = b"", metadata=None, length=None):
    """A safetensors file written by hand: the 8-byte length (or a lying ``length``), the
    JSON header, the body."""
    if metadata is not None:
        header = dict(header, __metadata__=metadata)
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text) if length is None else length) + text + body)
    return str(path)


def _structure_of(good):
    """(header without metadata, body, metadata) of a good checkpoint."""
    raw = open(good, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__")
    return header, raw[8 + n:], meta


def _with_entry(good, dst, key, value):
    """The good checkpoint with one top-level entry of its structure replaced."""
    header, body, meta = _structure_of(good)
    structure = json.loads(meta[serialization.STRUCTURE_KEY])
    for item in structure["dict"]:
        if item[0] == key:
            item[1] = value
    meta = dict(meta, **{serialization.STRUCTURE_KEY: json.dumps(structure)})
    return _raw(dst, header, body, meta)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    d = tmp_path_factory.mktemp("crafted")
    model = models.build("simple", 1, 28, 2, generator=0)
    opt = optim.Adam(model.parameters())
    good = str(d / "good.safetensors")
    checkpoint.save(good, model, arch="simple", class_names=["cat", "dog"], image_size=28,
                    channels=1, optimizer=opt)
    header, body, meta = _structure_of(good)
    blob = open(good, "rb").read()
    out = []

    def case(name, path, message):
        out.append((name, str(path), message))

    with open(d / "truncated", "wb") as f:
        f.write(blob[:len(blob) // 2])
    case("truncated file", d / "truncated", "not a valid safetensors file")
    case("header length beyond the file", _raw(d / "lying", header, body, meta,
                                                length=10 * len(blob)), "but the file has")
    # a 5 MB file whose tensor declares 2^30 zeros
    case("2^30 declared zeros in 5 MB", _raw(
        d / "zeros", {"conv_layers.0.weight": {"dtype": "F32", "shape": [2**30],
                                               "data_offsets": [0, 2**32]}},
        b"\0" * (5 << 20), meta), "not a valid safetensors file")
    # a declared shape of 2^62 x 0 elements: no data, an absurd shape
    huge = dict(header)
    huge["conv_layers.0.bias"] = {"dtype": "F32", "shape": [2**62, 0],
                                  "data_offsets": [len(body), len(body)]}
    case("2^62 x 0 shape", _raw(d / "shape", huge, body, meta),
         "not a valid safetensors file")     # its offsets no longer tile the body
    wrong = dict(header)
    wrong["conv_layers.0.bias"] = dict(header["conv_layers.0.bias"], dtype="I32")
    case("dtype mismatch", _raw(d / "dtype", wrong, body, meta),
         "tensor 'conv_layers.0.bias' has dtype I32, expected F32")
    # metadata JSON padded with 2^28 spaces (a sparse file: the header length says it all)
    sparse = d / "padded"
    with open(sparse, "wb") as f:
        f.write(struct.pack("<Q", 2**28 + 2) + b"{")
        f.truncate(8 + 2**28 + 2)
    case("header padded with 2^28 spaces", sparse, "more than the 4194304 allowed")
    padded = json.dumps(dict(header, __metadata__=meta)).encode()
    padded = padded[:-1] + b" " * (3 << 20) + b"}"
    with open(d / "spaces", "wb") as f:
        f.write(struct.pack("<Q", len(padded)) + padded + body)
    case("3 MB of spaces, then a good checkpoint", d / "spaces", None)
    case("image_size 10**12", _with_entry(good, d / "size12", "image_size", 10**12),
         "'image_size' has an invalid value 1000000000000")
    case("image_size 4096 without its weights", _with_entry(good, d / "size4k",
                                                            "image_size", 4096),
         "needs more weights than the")
    case("1000 classes at 4096", _with_entry(
        _with_entry(good, d / "classes0", "class_names", [str(i) for i in range(1000)]),
        d / "classes", "image_size", 4096), "needs more weights than the")
    case("nested 10^6 deep", _raw(d / "deep", header, body, dict(
        meta, **{serialization.STRUCTURE_KEY: "[" * 10**6 + "]" * 10**6})), "")
    case("100,000 history entries", _with_entry(good, d / "history", "history",
                                                  [{"dict": [["a", 1]]}] * 100000), None)
    fifo = d / "fifo.safetensors"
    os.mkfifo(fifo)
    case("FIFO", fifo, "not a regular file")
    case("folder", d, "not a regular file")
    np.savez(d / "old.npz", meta=np.array("{}"), w=np.zeros(3))
    case("old .npz checkpoint", d / "old.npz", "the checkpoint format changed")
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.ones(2)}, d / "pickle.pt")
    case("torch.save (zip + pickle)", d / "pickle.pt", "never unpickles")
    with open(d / "raw.pkl", "wb") as f:
        f.write(b"\x80\x04\x95" + b"\0" * 64)       # a pickle protocol-4 prefix
    case("raw pickle", d / "raw.pkl", "")
    from PIL import Image
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(d / "x.png")
    return good, str(d / "x.png"), out


CHILD = r'''
import contextlib, io, resource, time
from cnnlab import checkpoint, predict

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024   # MB

checkpoint.load(GOOD)                       # imports done, a good checkpoint's cost
base = peak()
result = []
for name, path, expect in CASES:
    start = time.perf_counter()
    try:
        checkpoint.load(path)
        message = None
    except checkpoint.CheckpointError as e:
        message = str(e)
    seconds = time.perf_counter() - start
    grew = peak() - base
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = predict.main(["--checkpoint", path, IMAGE])
    result.append([name, message, grew, round(seconds, 3), code, err.getvalue()])
'''


def test_crafted_checkpoints_are_refused_cheaply(cases, capsys):
    good, image, todo = cases
    code = (f"GOOD, IMAGE, CASES = {good!r}, {image!r}, {[list(c) for c in todo]!r}\n"
            + CHILD)
    outcome = run_code("default", code, timeout=120, memory_gb=MEMORY_GB)
    assert outcome.status == "ok", describe(outcome)
    with capsys.disabled():
        print()
        for name, message, grew, seconds, _, _ in outcome.value:
            print(f"  {name:<40} +{grew:4d} MB peak RSS  {seconds:6.3f} s  {message}")
    for (name, path, expect), (_, message, grew, _, status, err) in zip(todo, outcome.value):
        assert grew <= EXTRA_MB, (name, grew)
        if expect is None:          # a good checkpoint under the padding
            assert message is None, (name, message)
            assert status == 0, (name, err)
            continue
        assert message is not None, name
        assert message.startswith(f"checkpoint {path}") and "\n" not in message
        assert expect in message, (name, message)
        assert "too large to load into memory" not in message, (name, message)
        assert status == 2 and err.count("\n") == 1 and "Traceback" not in err, (name, err)


def test_predict_command_on_a_crafted_file_prints_one_line(cases):
    """The real command, in its own process (a memory limit, no traceback, exit 2)."""
    good, image, todo = cases
    path = next(p for n, p, _ in todo if n == "image_size 10**12")
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_GB << 30, MEMORY_GB << 30))

    run = subprocess.run([sys.executable, "-m", "cnnlab.predict", "--checkpoint", path,
                          image], capture_output=True, text=True, timeout=120,
                         preexec_fn=limit, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and "image_size" in run.stderr
