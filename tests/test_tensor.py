"""cnnlab.Tensor's API against torch.Tensor's: creation and dtypes, devices, the methods and
operators a PyTorch user touches (values, shapes, dtypes and indices equal to torch's),
the random generator; every placement (nnutil.py) where a tensor lives somewhere."""
from __future__ import annotations

import numpy as np
import pytest

import cnnlab
from nnutil import np_of, on, placement  # noqa: F401

torch = pytest.importorskip("torch")

A = np.array([[1.5, -2.0, 3.25], [0.5, 4.0, -1.0]])


def _same(ours, theirs):
    """Equal values, shape and dtype name (cnnlab vs torch)."""
    if isinstance(theirs, tuple):
        for a, b in zip(ours, theirs):
            _same(a, b)
        return
    assert isinstance(ours, cnnlab.Tensor), type(ours)
    assert ours.dtype.name == str(theirs.dtype).replace("torch.", ""), (ours.dtype, theirs.dtype)
    assert tuple(ours.shape) == tuple(theirs.shape)
    np.testing.assert_allclose(np_of(ours), theirs.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_creation_dtypes_follow_torch():
    for data in ([1.0, 2.0], [1, 2], [True, False], 3.5, 7, [[1, 2], [3, 4]]):
        _same(cnnlab.tensor(data), torch.tensor(data))
    for make in ("zeros", "ones", "randn", "rand"):
        t = getattr(cnnlab, make)(2, 3)
        assert t.dtype == cnnlab.float32 and t.shape == (2, 3) and t.device == cnnlab.device("cpu")
    _same(cnnlab.arange(5), torch.arange(5))
    _same(cnnlab.arange(1, 2, 0.25), torch.arange(1, 2, 0.25))
    _same(cnnlab.full((2, 2), 7), torch.full((2, 2), 7))
    _same(cnnlab.eye(3), torch.eye(3))
    _same(cnnlab.linspace(0, 1, 5), torch.linspace(0, 1, 5))
    _same(cnnlab.zeros_like(cnnlab.tensor(A)), torch.zeros_like(torch.tensor(A)))
    assert cnnlab.float is cnnlab.float32 and cnnlab.long is cnnlab.int64
    assert cnnlab.double is cnnlab.float64 and repr(cnnlab.float32) == "cnnlab.float32"
    a = np.arange(6.0)
    t = cnnlab.from_numpy(a)
    a[0] = 42.0
    assert t[0].item() == 42.0 and t.dtype == cnnlab.float64    # shares memory
    assert cnnlab.tensor(a)[0].item() == 42.0 and cnnlab.tensor(a)._data is not a
    assert cnnlab.tensor(torch.ones(2)).dtype == cnnlab.float32


def test_devices_are_spelled_as_documented():
    cpu = cnnlab.device("cpu")
    assert str(cpu) == "cpu" and not cpu.torch and repr(cpu) == "device(type='cpu')"
    tc = cnnlab.device("torch:cpu")
    assert str(tc) == "torch:cpu" and tc.torch and tc.type == "cpu" and tc != cpu
    cuda1 = cnnlab.device("cuda:1")
    assert cuda1.type == "cuda" and cuda1.index == 1 and cuda1.torch
    assert repr(cuda1) == repr(torch.device("cuda:1"))
    assert cnnlab.device("cuda") == "cuda" and cnnlab.device("cpu") == "cpu"
    with pytest.raises(RuntimeError, match="Invalid device string"):
        cnnlab.device("cuda:x")
    assert cnnlab.cuda.is_available() == torch.cuda.is_available()
    t = cnnlab.tensor(A).to(torch.device("cpu"))   # a real torch device: the torch twin
    assert t.device == tc and isinstance(t._data, torch.Tensor)
    assert t.cpu().device == cpu and isinstance(t.cpu()._data, np.ndarray)


def test_moves_and_casts(placement):
    t = on(placement, A)
    assert t.device == cnnlab.device(placement)
    assert t.float().dtype == cnnlab.float32 and t.double() is t
    assert t.long().dtype == cnnlab.int64 and t.to(cnnlab.float32).dtype == cnnlab.float32
    moved = t.to("cpu", cnnlab.float32)
    assert moved.device == cnnlab.device("cpu") and moved.dtype == cnnlab.float32
    assert t.to(moved).device == cnnlab.device("cpu")
    assert np.array_equal(np.asarray(t), A) and t.numpy(force=True).dtype == np.float64
    if placement in ("cpu", "torch:cpu"):
        assert np.array_equal(t.numpy(), A)


def test_methods_match_torch(placement):
    a, ta = on(placement, A), torch.from_numpy(A)
    b, tb = on(placement, A[::-1].copy()), torch.from_numpy(A[::-1].copy())
    cases = [
        lambda x, y, m: x + y * 2 - 1 / (y.abs() + 1) ** 2,
        lambda x, y, m: -x @ y.t(),
        lambda x, y, m: x.sum(), lambda x, y, m: x.sum(1, keepdim=True),
        lambda x, y, m: x.mean(0), lambda x, y, m: x.max(), lambda x, y, m: x.max(1),
        lambda x, y, m: x.min(0, keepdim=True), lambda x, y, m: x.argmax(),
        lambda x, y, m: x.argmax(1), lambda x, y, m: x.argmin(0),
        lambda x, y, m: m.max(x, 1), lambda x, y, m: m.max(x, y),
        lambda x, y, m: x > y, lambda x, y, m: x == 4.0, lambda x, y, m: (x > 0) & (y < 1),
        lambda x, y, m: (x >= 0).sum(), lambda x, y, m: x.view(-1), lambda x, y, m: x.view(3, 2),
        lambda x, y, m: x.flatten(), lambda x, y, m: x.unsqueeze(1).squeeze(1),
        lambda x, y, m: x.transpose(0, 1), lambda x, y, m: x.permute(1, 0), lambda x, y, m: x.T,
        lambda x, y, m: x[1], lambda x, y, m: x[:, 1:], lambda x, y, m: x[x > 0],
        lambda x, y, m: x[[1, 0, 1]], lambda x, y, m: m.cat([x, y], 0),
        lambda x, y, m: m.stack([x, y], 1), lambda x, y, m: m.where(x > 0, x, y),
        lambda x, y, m: x.clamp(-1, 1), lambda x, y, m: m.exp(x).log(),
        lambda x, y, m: m.softmax(x, dim=1), lambda x, y, m: x.sigmoid().tanh().relu(),
        lambda x, y, m: m.flatten(x), lambda x, y, m: x.std(1), lambda x, y, m: x.var(),
        lambda x, y, m: x.expand(2, 2, 3), lambda x, y, m: x.long().sum(),
        lambda x, y, m: m.maximum(x, y), lambda x, y, m: x.norm(),
    ]
    for i, case in enumerate(cases):
        _same(case(a, b, cnnlab), case(ta, tb, torch))


def test_the_course_evaluation_idiom(placement):
    outputs = on(placement, np.array([[0.1, 2.0], [3.0, -1.0], [0.5, 0.7]]), "float32")
    labels = on(placement, np.array([1, 1, 1]))
    _, predicted = cnnlab.max(outputs.data, 1)
    correct = (predicted == labels).sum().item()
    assert correct == 2 and type(correct) is int
    assert labels.size(0) == 3 and outputs.size() == (3, 2) and outputs.dim() == 2
    assert isinstance(outputs.size(), cnnlab.Size) and outputs.numel() == 6


def test_errors_like_torch(placement):
    a = on(placement, A)
    with pytest.raises(RuntimeError, match=r"mat1 and mat2 shapes cannot be multiplied "
                                           r"\(2x3 and 2x3\)"):
        a @ a
    with pytest.raises(RuntimeError, match="a Tensor with 6 elements cannot be converted"):
        a.item()
    with pytest.raises(RuntimeError, match="more than one value is ambiguous"):
        bool(a)
    with pytest.raises(IndexError, match="Dimension out of range"):
        a.sum(2)
    with pytest.raises(TypeError, match="len\\(\\) of a 0-d tensor"):
        len(a.sum())
    if "torch" in cnnlab.backends():
        other = "torch:cpu" if placement == "cpu" else "cpu"
        with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
            a + on(other, A)


def test_in_place_methods(placement):
    t = on(placement, A)
    t.add_(1).mul_(2)
    assert np.allclose(np_of(t), (A + 1) * 2)
    t.zero_()
    assert not np_of(t).any()
    t.fill_(3).copy_(on("cpu", A))
    assert np.allclose(np_of(t), A)
    t[0, 0] = 9.0
    assert np_of(t)[0, 0] == 9.0


def test_generator_is_seedable_and_restorable():
    g = cnnlab.Generator().manual_seed(123)
    assert g.initial_seed() == 123
    first = cnnlab.randn(3, generator=g)
    state = g.get_state()
    assert state.dtype == cnnlab.uint8
    second = cnnlab.randn(3, generator=g)
    g.set_state(state)
    assert np.array_equal(np_of(cnnlab.randn(3, generator=g)), np_of(second))
    g.manual_seed(123)
    assert np.array_equal(np_of(cnnlab.randn(3, generator=g)), np_of(first))
    cnnlab.manual_seed(5)
    a = cnnlab.rand(4)
    cnnlab.manual_seed(5)
    assert np.array_equal(np_of(cnnlab.rand(4)), np_of(a)) and cnnlab.initial_seed() == 5
    perm = cnnlab.randperm(10, generator=g)
    assert sorted(np_of(perm).tolist()) == list(range(10)) and perm.dtype == cnnlab.int64
    r = cnnlab.randint(3, 7, (50,), generator=g)
    assert r.dtype == cnnlab.int64 and 3 <= int(r.min().item()) and int(r.max().item()) < 7
    with pytest.raises(RuntimeError, match="Generator state"):
        g.set_state(cnnlab.zeros(3))
    assert cnnlab.manual_seed(-1).initial_seed() == 2 ** 64 - 1  # torch's wrap-around


def test_fork_rng_restores_the_default_generator():
    cnnlab.manual_seed(11)
    expected = np_of(cnnlab.rand(4))
    cnnlab.manual_seed(11)
    with cnnlab.random.fork_rng():
        cnnlab.randn(100)
    assert np.array_equal(np_of(cnnlab.rand(4)), expected)


def test_repr_matches_torch_for_common_tensors():
    for data in ([1.5, 2.0], [[1.0, 2.0], [3.0, 4.0]], [1, 2, 3], 3.5, [True, False]):
        assert repr(cnnlab.tensor(data)) == repr(torch.tensor(data))
    t = cnnlab.tensor([0.25, 1.0], dtype=cnnlab.float64, requires_grad=True)
    assert repr(t) == repr(torch.tensor([0.25, 1.0], dtype=torch.float64,
                                        requires_grad=True)).replace("torch.", "cnnlab.")
