"""cnnlab.save / cnnlab.load: safetensors files that torch reads with safetensors.torch, and
that cnnlab reads back exactly; hostile files refused with a LoadError naming the file.

Interoperability is checked with a network written once (NET) and built with torch's and
with cnnlab's imports: weights saved by one library load into the other's model and give
the same logits (torch's float32 tolerance), buffers (BatchNorm's running statistics and
its int64 counter) included.
"""
from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

import cnnlab
from cnnlab.serialization import LoadError

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

NET = '''
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8),
                                      nn.ReLU(), nn.MaxPool2d(2))
        self.skip = nn.Conv2d(8, 8, 1, bias=False)
        self.head = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        x = self.features(x)
        x = x + self.skip(x)
        return self.head(x.view(x.size(0), -1))
'''


def build(lib):
    scope = {"nn": lib.nn}
    exec(NET, scope)
    return scope["Net"]()


@pytest.fixture
def x():
    return np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)


def _warm_up(model, lib, x):
    """Two training-mode forwards, so BatchNorm's running statistics move."""
    model.train()
    for scale in (1.0, 2.0):
        model(lib.tensor(x * scale))
    model.eval()


def _logits(model, lib, x) -> np.ndarray:
    with lib.no_grad():
        out = model(lib.tensor(x))
    return out.numpy() if lib is cnnlab else out.detach().numpy()


@pytest.mark.parametrize("writer", ["cnnlab", "torch"])
def test_weights_move_between_cnnlab_and_torch(tmp_path, x, writer):
    """cnnlab.save -> safetensors.torch.load_file -> torch, and
    safetensors.torch.save_file -> cnnlab.load -> cnnlab: the same logits."""
    source_lib, target_lib = (cnnlab, torch) if writer == "cnnlab" else (torch, cnnlab)
    source, target = build(source_lib), build(target_lib)
    _warm_up(source, source_lib, x)
    path = tmp_path / "net.safetensors"
    if writer == "cnnlab":
        cnnlab.save(source.state_dict(), path)
        state = safetensors_torch.load_file(path)
        assert state["features.1.num_batches_tracked"].dtype == torch.int64
    else:
        safetensors_torch.save_file(source.state_dict(), path)
        state = cnnlab.load(path)
        assert all(isinstance(v, cnnlab.Tensor) for v in state.values())
    assert set(state) == set(target.state_dict())
    target.load_state_dict(state, strict=True)
    target.eval()
    np.testing.assert_allclose(_logits(target, target_lib, x), _logits(source, source_lib, x),
                               rtol=1e-4, atol=1e-5)


def test_round_trip_of_a_nest(tmp_path):
    model = build(cnnlab)
    opt = cnnlab.optim.Adam(model.parameters(), lr=0.01)
    model(cnnlab.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    obj = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3,
           "history": [{"loss": 0.5, "acc": 1.0}, {"loss": float("nan")}],
           "flags": (True, None, "text", -7, float("inf")), 5: "int key",
           "arrays": [np.arange(3, dtype=np.int16), np.zeros((0, 2), np.float64)]}
    cnnlab.save(obj, tmp_path / "c.safetensors")
    back = cnnlab.load(tmp_path / "c.safetensors")
    assert back["epoch"] == 3 and back[5] == "int key"
    assert back["flags"][:4] == (True, None, "text", -7) and back["flags"][4] == float("inf")
    assert np.isnan(back["history"][1]["loss"]) and back["history"][0] == {"loss": 0.5,
                                                                           "acc": 1.0}
    assert back["arrays"][0].dtype == cnnlab.int16 and back["arrays"][1].shape == (0, 2)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(back["model"][key].numpy(), value.numpy())
    opt2 = cnnlab.optim.Adam(build(cnnlab).parameters())
    opt2.load_state_dict(back["optimizer"])
    assert opt2.param_groups[0]["lr"] == 0.01 and opt2.param_groups[0]["betas"] == (0.9, 0.999)
    # the tensors are named by their path, so torch's loader sees readable keys
    keys = set(safetensors_torch.load_file(tmp_path / "c.safetensors"))
    assert "model.head.weight" in keys and "optimizer.state.0.exp_avg" in keys


def test_the_same_tensor_twice_is_stored_once(tmp_path):
    t = cnnlab.arange(4)
    cnnlab.save({"a": t, "b": [t]}, tmp_path / "s.safetensors")
    assert list(safetensors_torch.load_file(tmp_path / "s.safetensors")) == ["a"]
    back = cnnlab.load(tmp_path / "s.safetensors")
    assert back["b"][0].tolist() == [0, 1, 2, 3]


def test_map_location_puts_tensors_on_the_torch_twin(tmp_path):
    cnnlab.save({"w": cnnlab.ones(2)}, tmp_path / "w.safetensors")
    w = cnnlab.load(tmp_path / "w.safetensors", map_location="torch:cpu")["w"]
    assert str(w.device) == "torch:cpu" and w.tolist() == [1.0, 1.0]


def test_save_refuses_what_it_cannot_store_and_leaves_no_file(tmp_path):
    for obj, message in ((lambda: 0, "cannot store function"),
                         ({(1, 2): cnnlab.ones(1)}, "dict key"),
                         ({"x": np.zeros(2, np.float16)}, "float16")):
        with pytest.raises(TypeError, match=message):
            cnnlab.save(obj, tmp_path / "x.safetensors")
    assert os.listdir(tmp_path) == []


def test_load_refuses_unpickling():
    with pytest.raises(ValueError, match="never unpickles"):
        cnnlab.load("whatever", weights_only=False)


# ------------------------------------------------------------------ hostile files


def _file(tmp_path, header, data=b"", name="bad.safetensors", raw_header=None):
    body = raw_header if raw_header is not None else json.dumps(header).encode()
    path = tmp_path / name
    path.write_bytes(struct.pack("<Q", len(body)) + body + data)
    return path


def _refused(path, *fragments, **kwargs):
    with pytest.raises(LoadError) as e:
        cnnlab.load(path, **kwargs)
    text = str(e.value)
    assert "\n" not in text and str(path) in text
    for fragment in fragments:
        assert fragment in text, text
    return text


def test_header_larger_than_allowed_or_than_the_file(tmp_path):
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    _refused(path, "declares 1099511627776 bytes")
    padded = _file(tmp_path, None, raw_header=b"{" + b" " * 4096 + b"}")
    _refused(padded, "more than the 1024 allowed", max_header_bytes=1024)
    short = tmp_path / "short.safetensors"
    short.write_bytes(struct.pack("<Q", 100) + b"{}")
    _refused(short, "declares 100 bytes but the file has 10")
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(b"abc")
    _refused(tiny, "shorter than a header")


def test_tensor_that_claims_more_than_the_file_holds(tmp_path):
    header = {"w": {"dtype": "F32", "shape": [2**15, 2**15], "data_offsets": [0, 2**32]}}
    _refused(_file(tmp_path, header, b"\0" * 16), "not a valid safetensors file")
    header = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
    _refused(_file(tmp_path, header, b"\0" * 8), "not a valid safetensors file")


def test_bad_dtypes_json_and_structures(tmp_path):
    half = {"w": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}
    _refused(_file(tmp_path, half, b"\0" * 4), "dtype F16")
    _refused(_file(tmp_path, None, raw_header=b"{not json"), "not a valid safetensors file")
    ok = {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}

    def with_structure(structure: str):
        return _file(tmp_path, dict(ok, __metadata__={"cnnlab.structure": structure}),
                     b"\0" * 4)

    _refused(with_structure("{oops"), "not valid JSON")
    _refused(with_structure(json.dumps({"tensor": "missing"})), "names a tensor 'missing'")
    _refused(with_structure(json.dumps([1, 2])), "tensor 'w' is not part of")
    _refused(with_structure(json.dumps({"what": 1})), "malformed structure")
    _refused(with_structure(json.dumps({"dict": [[1]]})), "malformed structure")
    _refused(with_structure("[" * 100000 + "]" * 100000), "structure")


def test_zip_fifo_folder_and_missing_file(tmp_path):
    zipped = tmp_path / "model.pth"
    torch.save({"w": torch.ones(2)}, zipped)
    _refused(zipped, "zip archive", "never unpickles")
    _refused(tmp_path / "absent.safetensors", "no such file")
    _refused(tmp_path, "not a regular file")
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    _refused(fifo, "not a regular file")
