"""cnnlab.layers against torch.nn (same weights, same inputs) and finite differences.

Each layer runs on NumPy arrays (every NumPy backend here) and on torch tensors (the torch
twin); torch's autograd is the independent oracle for values and gradients.
"""
from __future__ import annotations

import numpy as np
import pytest

import cnnlab
from cnnlab import layers as L

torch = pytest.importorskip("torch")
nn = torch.nn

NUMPY_BACKENDS = [b for b in cnnlab.backends() if b != "torch"]
FAMILIES = [pytest.param((b, None), id=b) for b in NUMPY_BACKENDS] + \
    [pytest.param(("torch", "cpu"), id="torch-tensors")]
CUDA = torch.cuda.is_available()


@pytest.fixture(params=FAMILIES)
def family(request):
    """(backend, device): device None = NumPy arrays, else torch tensors on it."""
    backend, device = request.param
    with cnnlab.use_backend(backend):
        yield device


def _to(a, device):
    return np.asarray(a) if device is None else torch.from_numpy(np.asarray(a)).to(device)


def _np(a):
    return a.detach().cpu().numpy() if torch.is_tensor(a) else np.asarray(a)


def _copy_to_torch(ours, theirs):
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})


def _check_against_torch(ours, theirs, x, device, rtol=1e-10, atol=1e-12):
    """forward and backward of ``ours`` (cnnlab) and ``theirs`` (torch, float64) agree."""
    ours.to(device if device is not None else "numpy", np.float64)
    theirs.double()
    _copy_to_torch(ours, theirs)
    gy = np.random.default_rng(5).standard_normal(theirs(torch.from_numpy(x)).shape)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = theirs(tx)
    ty.backward(torch.from_numpy(gy))
    y = ours(_to(x, device))
    gx = ours.backward(_to(gy, device))
    assert (device is None) == isinstance(y, np.ndarray)
    np.testing.assert_allclose(_np(y), ty.detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(_np(gx), tx.grad.numpy(), rtol=rtol, atol=atol)
    tparams = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(_np(p.grad), tparams[name].grad.numpy(), rtol=rtol,
                                   atol=atol, err_msg=name)
    assert {n for n, _ in ours.named_parameters()} == set(tparams)


CASES = [
    ("conv", lambda: L.Conv2d(3, 4, 3, stride=2, padding=1, rng=0),
     lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 7, 6)),
    ("conv-groups-dilation-nobias", lambda: L.Conv2d(4, 6, (3, 2), dilation=2, groups=2,
                                                     bias=False, rng=1),
     lambda: nn.Conv2d(4, 6, (3, 2), dilation=2, groups=2, bias=False), (2, 4, 8, 7)),
    ("conv-same", lambda: L.Conv2d(2, 3, 4, padding="same", rng=2),
     lambda: nn.Conv2d(2, 3, 4, padding="same"), (1, 2, 6, 5)),
    ("conv-transpose", lambda: L.ConvTranspose2d(3, 2, 3, stride=2, padding=1,
                                                 output_padding=1, rng=3),
     lambda: nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1), (2, 3, 4, 5)),
    ("maxpool", lambda: L.MaxPool2d(3, 2, padding=1), lambda: nn.MaxPool2d(3, 2, padding=1),
     (2, 3, 7, 8)),
    ("maxpool-ceil", lambda: L.MaxPool2d(2, ceil_mode=True),
     lambda: nn.MaxPool2d(2, ceil_mode=True), (1, 2, 5, 5)),
    ("avgpool", lambda: L.AvgPool2d(3, 2, padding=1, count_include_pad=False),
     lambda: nn.AvgPool2d(3, 2, padding=1, count_include_pad=False), (2, 3, 7, 6)),
    ("relu", lambda: L.ReLU(), lambda: nn.ReLU(), (2, 3, 4, 4)),
    ("flatten", lambda: L.Flatten(), lambda: nn.Flatten(), (2, 3, 4, 5)),
    ("linear", lambda: L.Linear(5, 3, rng=4), lambda: nn.Linear(5, 3), (4, 5)),
    ("sequential", lambda: L.Sequential(L.Conv2d(1, 2, 3, rng=5), L.ReLU(), L.AvgPool2d(2),
                                        L.Flatten(), L.Linear(8, 3, rng=6)),
     lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                           nn.Linear(8, 3)), (3, 1, 6, 6)),
]


@pytest.mark.parametrize("name,ours,theirs,shape", CASES, ids=[c[0] for c in CASES])
def test_layer_matches_torch_float64(family, name, ours, theirs, shape):
    x = np.random.default_rng(7).standard_normal(shape)  # distinct values: no max ties
    _check_against_torch(ours(), theirs(), x, family)


@pytest.mark.parametrize("name,ours,theirs,shape", CASES, ids=[c[0] for c in CASES])
def test_repr_is_torchs(name, ours, theirs, shape):
    assert repr(ours()) == repr(theirs())


def test_more_reprs_are_torchs():
    pairs = [(L.Dropout(0.25), nn.Dropout(0.25)), (L.ReLU(inplace=True), nn.ReLU(inplace=True)),
             (L.CrossEntropyLoss(), nn.CrossEntropyLoss()),
             (L.Linear(3, 2, bias=False), nn.Linear(3, 2, bias=False)),
             (L.Conv2d(2, 4, 1, groups=2, bias=False), nn.Conv2d(2, 4, 1, groups=2, bias=False)),
             (L.AvgPool2d((2, 3)), nn.AvgPool2d((2, 3))),
             (L.Flatten(0, 2), nn.Flatten(0, 2))]
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)


def test_default_init_matches_torch_bounds():
    """U(-b, b) with b = 1/sqrt(fan_in), fan_in as torch computes it from the torch
    layer's weight (for a transposed conv: weight.size(1) * kH * kW)."""
    fan_in_of = nn.init._calculate_fan_in_and_fan_out
    for ours, theirs in [(L.Conv2d(16, 32, 3, rng=0), nn.Conv2d(16, 32, 3)),
                         (L.ConvTranspose2d(8, 6, 3, groups=2, rng=0),
                          nn.ConvTranspose2d(8, 6, 3, groups=2)),
                         (L.Linear(576, 128, rng=0), nn.Linear(576, 128))]:
        bound = 1 / np.sqrt(fan_in_of(theirs.weight)[0])
        tparams = dict(theirs.named_parameters())
        for name, p in ours.named_parameters():
            v = p.numpy()
            assert p.shape == tuple(tparams[name].shape) and p.dtype == np.float32
            assert np.abs(v).max() <= bound, name
            if v.size >= 500:  # a big sample of U(-b, b) fills the interval evenly
                assert np.abs(v).max() > 0.99 * bound, name
                assert abs(np.abs(v).mean() - bound / 2) < 0.05 * bound, name
    a, b = L.Conv2d(3, 8, 3, rng=42), L.Conv2d(3, 8, 3, rng=42)
    assert np.array_equal(a.weight.numpy(), b.weight.numpy())
    assert not np.array_equal(a.weight.numpy(), L.Conv2d(3, 8, 3, rng=43).weight.numpy())


def test_cross_entropy_matches_torch_and_is_stable(family):
    logits = np.array([[1000.0, -1000.0, 3.0], [-5.0, 2.0, 2.5], [0.1, 0.2, 0.3],
                       [-800.0, -801.0, -799.5]])
    target = np.array([1, 2, 0, 1])
    for reduction in ("mean", "sum"):
        loss = L.CrossEntropyLoss(reduction=reduction)
        tl = torch.from_numpy(logits).requires_grad_(True)
        ref = nn.functional.cross_entropy(tl, torch.from_numpy(target), reduction=reduction)
        ref.backward(torch.tensor(2.0, dtype=torch.float64))
        value = loss(_to(logits, family), _to(target, family))
        grad = loss.backward(2.0)
        assert np.isfinite(float(value))
        np.testing.assert_allclose(float(value), ref.item(), rtol=1e-12)
        np.testing.assert_allclose(_np(grad), tl.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_cross_entropy_gradient_finite_differences():
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((5, 4)), np.array([0, 3, 1, 1, 2])
    loss = L.CrossEntropyLoss()
    loss(x, t)
    g = loss.backward()
    eps = 1e-6
    num = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[i] = eps
        num[i] = (float(loss(x + d, t)) - float(loss(x - d, t))) / (2 * eps)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)


def test_softmax_rows_sum_to_one_and_match_torch():
    x = np.random.default_rng(0).standard_normal((6, 3)) * 50
    p = L.softmax(x)
    np.testing.assert_allclose(p, torch.softmax(torch.from_numpy(x), 1).numpy(), rtol=1e-12)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-14)


def test_cross_entropy_errors_like_torch():
    loss = L.CrossEntropyLoss()
    x = np.zeros((3, 2))
    cases = [np.array([0, 1]), np.array([0, 1, 5])]
    for target in cases:
        with pytest.raises(Exception) as theirs:
            nn.functional.cross_entropy(torch.from_numpy(x), torch.from_numpy(target))
        with pytest.raises(ValueError) as ours:
            loss(x, target)
        assert str(ours.value) in str(theirs.value)
    with pytest.raises(TypeError, match="integer class indices"):
        loss(x, np.zeros(3))


def test_linear_shape_error_like_torch():
    ours, theirs = L.Linear(6, 3, rng=0), nn.Linear(6, 3)
    with pytest.raises(RuntimeError) as t:
        theirs(torch.zeros(4, 5))
    with pytest.raises(ValueError) as o:
        ours(np.zeros((4, 5), np.float32))
    assert str(o.value) == str(t.value)


def test_gradients_accumulate_until_zero_grad(family):
    layer = L.Linear(3, 2, rng=0).to(family if family is not None else "numpy", np.float64)
    x = _to(np.arange(6.0).reshape(2, 3), family)
    g = _to(np.ones((2, 2)), family)
    layer(x)
    layer.backward(g)
    first = _np(layer.weight.grad).copy()
    layer(x)
    layer.backward(g)
    np.testing.assert_array_equal(_np(layer.weight.grad), 2 * first)
    np.testing.assert_array_equal(first, np.ones((2, 2)).T @ np.arange(6.0).reshape(2, 3))
    layer.zero_grad()
    assert layer.weight.grad is None and layer.bias.grad is None


def test_frozen_parameter_gets_no_grad():
    layer = L.Linear(3, 2, rng=0)
    layer.weight.requires_grad = False
    layer(np.ones((1, 3), np.float32))
    layer.backward(np.ones((1, 2), np.float32))
    assert layer.weight.grad is None and layer.bias.grad is not None


def test_dropout(family):
    x = np.ones((4, 5, 6, 6))
    d = L.Dropout(0.3, rng=0)
    y = _np(d(_to(x, family)))
    kept = y != 0
    assert set(np.unique(y)) <= {0.0, 1 / 0.7}
    assert 0.2 < 1 - kept.mean() < 0.4          # 720 draws with p = 0.3
    gx = _np(d.backward(_to(np.full_like(x, 2.0), family)))
    np.testing.assert_array_equal(gx, np.where(kept, 2 / 0.7, 0.0))
    assert _np(d(_to(x.astype(np.float32), family))).dtype == np.float32
    d.eval()
    np.testing.assert_array_equal(_np(d(_to(x, family))), x)
    a, b = L.Dropout(0.5, rng=9), L.Dropout(0.5, rng=9)
    np.testing.assert_array_equal(_np(a(_to(x, family))), _np(b(_to(x, family))))
    with pytest.raises(ValueError, match="between 0 and 1"):
        L.Dropout(1.5)


def test_train_eval_propagate_and_backward_before_forward():
    model = L.Sequential(L.Linear(2, 2, rng=0), L.Dropout(0.5), L.Sequential(L.ReLU()))
    model.eval()
    assert not any(layer.training for _, layer in model.named_layers())
    model.train()
    assert all(layer.training for _, layer in model.named_layers())
    with pytest.raises(RuntimeError, match="before forward"):
        L.Conv2d(1, 1, 1, rng=0).backward(np.zeros((1, 1, 2, 2), np.float32))


def test_state_dict_round_trip_and_errors():
    a, b = L.Linear(4, 3, rng=0), L.Linear(4, 3, rng=1)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(b.weight.numpy(), a.weight.numpy())
    assert b.weight.dtype == np.float32
    with pytest.raises(ValueError, match="missing keys \\['bias'\\]"):
        b.load_state_dict({"weight": a.state_dict()["weight"]})
    with pytest.raises(ValueError, match="size mismatch for weight"):
        b.load_state_dict({"weight": np.zeros((3, 5)), "bias": np.zeros(3)})


def test_parameter_reads_like_an_array():
    conv = L.Conv2d(2, 4, 3, rng=0)
    assert conv.weight.shape == (4, 2, 3, 3) and conv.weight.ndim == 4
    assert np.asarray(conv.weight).shape == (4, 2, 3, 3)
    np.testing.assert_array_equal(conv.weight[1], conv.weight.data[1])


def test_to_moves_between_families_exactly():
    model = L.Sequential(L.Conv2d(1, 2, 3, rng=0), L.Flatten(), L.Linear(8, 2, rng=1))
    before = model.state_dict()
    model.to("cpu")
    assert all(torch.is_tensor(p.data) for p in model.parameters())
    model.to("numpy", np.float64)
    assert all(isinstance(p.data, np.ndarray) and p.data.dtype == np.float64
               for p in model.parameters())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k].astype(np.float64))


@pytest.mark.skipif(not CUDA, reason="CUDA is not available")
def test_layers_on_cuda_match_cpu():
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    make = lambda: L.Sequential(L.Conv2d(1, 4, 3, padding=1, rng=0), L.ReLU(),  # noqa: E731
                                L.MaxPool2d(2), L.Flatten(), L.Linear(64, 2, rng=1))
    cpu, gpu = make(), make().to("cuda")
    y_cpu, y_gpu = cpu(x), gpu(torch.from_numpy(x).cuda())
    assert y_gpu.is_cuda
    g = np.ones_like(y_cpu)
    cpu.backward(g)
    gpu.backward(torch.from_numpy(g).cuda())
    np.testing.assert_allclose(_np(y_gpu), y_cpu, rtol=1e-4, atol=1e-5)
    for p, q in zip(cpu.parameters(), gpu.parameters()):
        assert q.data.is_cuda and q.grad.is_cuda
        np.testing.assert_allclose(_np(q.grad), p.grad, rtol=1e-4, atol=1e-5)


def test_conv_layers_refuse_non_positive_groups():
    """groups=0 is an ArgumentError, as torch's ValueError, not a ZeroDivisionError."""
    from cnnlab import ArgumentError
    from cnnlab.layers import Conv2d, ConvTranspose2d
    for cls in (Conv2d, ConvTranspose2d):
        with pytest.raises(ArgumentError, match="groups must be a positive integer"):
            cls(3, 4, 3, groups=0)
    if torch is not None:
        with pytest.raises(ValueError, match="groups must be a positive integer"):
            torch.nn.Conv2d(3, 4, 3, groups=0)
