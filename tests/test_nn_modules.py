"""cnnlab.nn's modules against torch.nn's: with torch's weights loaded, the same outputs,
input and parameter gradients, running statistics (float64, every placement); the same
reprs, state_dict keys, load_state_dict errors, module tree; torch's initialisation
bounds."""
from __future__ import annotations

import math

import numpy as np
import pytest

import cnnlab
from cnnlab import nn
from nnutil import close, copy_weights, np_of, on, placement  # noqa: F401

torch = pytest.importorskip("torch")
tnn = torch.nn


def _run(module, x, placement, g=None):
    """(output, input grad, {name: param grad}) of ``module`` (cnnlab or torch)."""
    is_torch = isinstance(module, tnn.Module)
    tx = torch.from_numpy(x).requires_grad_() if is_torch else on(placement, x,
                                                                   requires_grad=True)
    y = module(tx)
    if isinstance(y, tuple):
        y = y[0]
    g = np.random.default_rng(3).standard_normal(tuple(y.shape)) if g is None else g
    y.backward(torch.from_numpy(g) if is_torch else on(placement, g))
    return y, tx.grad, {n: p.grad for n, p in module.named_parameters()}


LAYERS = {
    "conv": (lambda m: m.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), (2, 4, 7, 6)),
    "conv-nobias-dilation": (lambda m: m.Conv2d(3, 2, (3, 2), dilation=2, bias=False),
                             (1, 3, 8, 7)),
    "conv-same": (lambda m: m.Conv2d(2, 3, 4, padding="same"), (1, 2, 6, 5)),
    "conv-transpose": (lambda m: m.ConvTranspose2d(3, 2, 3, stride=2, padding=1,
                                                   output_padding=1), (2, 3, 4, 5)),
    "maxpool": (lambda m: m.MaxPool2d(3, 2, padding=1), (2, 3, 7, 8)),
    "maxpool-ceil-indices": (lambda m: m.MaxPool2d(2, ceil_mode=True, return_indices=True),
                             (1, 2, 5, 5)),
    "avgpool": (lambda m: m.AvgPool2d(3, 2, padding=1, count_include_pad=False), (2, 3, 7, 6)),
    "adaptive-avgpool": (lambda m: m.AdaptiveAvgPool2d((3, 2)), (2, 3, 7, 5)),
    "adaptive-avgpool-1": (lambda m: m.AdaptiveAvgPool2d(1), (2, 3, 4, 4)),
    "linear": (lambda m: m.Linear(5, 3), (4, 5)),
    "linear-3d": (lambda m: m.Linear(5, 3, bias=False), (2, 4, 5)),
    "flatten": (lambda m: m.Flatten(), (2, 3, 2, 2)),
    "flatten-range": (lambda m: m.Flatten(0, 2), (2, 3, 2, 2)),
    "identity": (lambda m: m.Identity(7, x=1), (3, 2)),
    "relu": (lambda m: m.ReLU(), (3, 5)),
    "leaky-relu": (lambda m: m.LeakyReLU(0.2), (3, 5)),
    "sigmoid": (lambda m: m.Sigmoid(), (3, 5)),
    "tanh": (lambda m: m.Tanh(), (3, 5)),
    "softmax": (lambda m: m.Softmax(dim=1), (3, 5)),
    "batchnorm-train": (lambda m: m.BatchNorm2d(3, momentum=0.3), (4, 3, 2, 3)),
    "batchnorm-cumulative": (lambda m: m.BatchNorm2d(3, momentum=None, affine=False),
                             (4, 3, 2, 3)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_matches_torch(placement, name):
    make, shape = LAYERS[name]
    x = np.random.default_rng(1).standard_normal(shape)
    ours, theirs = make(nn).double(), make(tnn).double()
    copy_weights(ours, theirs)
    ours.to(placement)
    for step in range(2):  # twice: BatchNorm's running statistics move
        y, gx, grads = _run(ours, x, placement)
        ty, tgx, tgrads = _run(theirs, x, placement)
        assert y.device == cnnlab.device(placement)
        close(y, ty, 1e-12, f"{name} output")
        close(gx, tgx, 1e-10, f"{name} input grad")
        assert set(grads) == set(tgrads)
        for n in tgrads:
            close(grads[n], tgrads[n], 1e-10, f"{name} grad {n}")
    for n, b in theirs.named_buffers():
        close(dict(ours.named_buffers())[n], b, 1e-12, f"{name} buffer {n}")
    if name == "maxpool-ceil-indices":
        assert np.array_equal(np_of(ours(on(placement, x))[1]),
                              theirs(torch.from_numpy(x))[1].numpy())


class _Residual:
    """A residual block with BatchNorm2d, written once for both libraries."""

    @staticmethod
    def build(nn_):
        class Block(nn_.Module):
            def __init__(self, c):
                super().__init__()
                self.conv1 = nn_.Conv2d(c, c, 3, padding=1, bias=False)
                self.bn1 = nn_.BatchNorm2d(c)
                self.conv2 = nn_.Conv2d(c, c, 3, padding=1, bias=False)
                self.bn2 = nn_.BatchNorm2d(c)
                self.relu = nn_.ReLU()

            def forward(self, x):
                out = self.relu(self.bn1(self.conv1(x)))
                out = self.bn2(self.conv2(out))
                return self.relu(out + x)

        class Net(nn_.Module):
            def __init__(self):
                super().__init__()
                self.stem = nn_.Conv2d(2, 4, 3, padding=1)
                self.block = Block(4)
                self.pool = nn_.AdaptiveAvgPool2d(1)
                self.fc = nn_.Linear(4, 3)

            def forward(self, x):
                x = self.pool(self.block(self.stem(x)))
                return self.fc(x.flatten(1))
        return Net()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_residual_block_with_batchnorm_trains_and_evaluates_like_torch(placement, dtype):
    tol = 1e-10 if dtype == "float64" else 1e-4
    ours, theirs = _Residual.build(nn), _Residual.build(tnn)
    copy_weights(ours, theirs)
    ours.to(placement, getattr(cnnlab, dtype))
    theirs.to(getattr(torch, dtype))
    opt = cnnlab.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    for step in range(3):
        x = rng.standard_normal((4, 2, 5, 5)).astype(dtype)
        y = rng.integers(0, 3, 4)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(ours(on(placement, x)), on(placement, y))
        loss.backward()
        opt.step()
        topt.zero_grad()
        tloss = tnn.functional.cross_entropy(theirs(torch.from_numpy(x)), torch.from_numpy(y))
        tloss.backward()
        topt.step()
        close(loss, tloss, tol, f"loss {step}")
    tstate = theirs.state_dict()
    for k, v in ours.state_dict().items():
        close(v, tstate[k], tol, k)
    assert int(ours.block.bn1.num_batches_tracked.item()) == 3
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((2, 2, 5, 5)).astype(dtype)
    y, gx, grads = _run(ours, x, placement)
    ty, tgx, tgrads = _run(theirs, x, placement)
    close(y, ty, tol, "eval output")
    close(gx, tgx, tol, "eval input grad")
    for n in tgrads:
        close(grads[n], tgrads[n], tol, f"eval grad {n}")


def _everything(m):
    return m.Sequential(
        m.Conv2d(1, 2, 3), m.Conv2d(2, 2, (3, 1), stride=2, padding=(1, 0), dilation=2,
                                    groups=2, bias=False),
        m.ConvTranspose2d(2, 2, 2, stride=2, output_padding=1), m.BatchNorm2d(2),
        m.BatchNorm2d(2, affine=False, momentum=None), m.MaxPool2d(2), m.AvgPool2d(2, 1),
        m.AdaptiveAvgPool2d((1, 1)), m.Flatten(), m.Linear(2, 3), m.Dropout(0.25),
        m.LeakyReLU(), m.ReLU(inplace=True), m.Softmax(dim=1), m.Identity(), m.Sigmoid(),
        m.Tanh(), m.ModuleList([m.ReLU(), m.ReLU(), m.Linear(2, 2)]), m.CrossEntropyLoss(),
        m.MSELoss(), m.NLLLoss(), m.BCEWithLogitsLoss())


def test_reprs_match_torch():
    assert repr(_everything(nn)) == repr(_everything(tnn))
    assert repr(nn.Conv2d(3, 3, 3, padding="same")) == repr(tnn.Conv2d(3, 3, 3, padding="same"))


def test_state_dict_keys_buffers_and_module_tree_match_torch():
    ours, theirs = _Residual.build(nn), _Residual.build(tnn)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]
    assert ours.state_dict()["block.bn1.num_batches_tracked"].dtype == cnnlab.int64
    seen = []
    ours.apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "Net" and seen[0] == "Conv2d"


def _error(fn):
    with pytest.raises(RuntimeError) as info:
        fn()
    return str(info.value).replace("cnnlab.Size", "torch.Size")


def test_load_state_dict_errors_match_torch():
    ours, theirs = nn.Linear(2, 3), tnn.Linear(2, 3)
    bad = {"weight": torch.ones(3, 3), "extra": torch.ones(1)}
    assert _error(lambda: ours.load_state_dict(bad)) == \
        _error(lambda: theirs.load_state_dict(bad))
    result = ours.load_state_dict({"weight": np.ones((3, 2)), "x": np.ones(1)}, strict=False)
    assert result.missing_keys == ["bias"] and result.unexpected_keys == ["x"]
    assert np.array_equal(ours.weight.detach().numpy(), np.ones((3, 2), np.float32))
    assert repr(ours.load_state_dict(ours.state_dict())) == "<All keys matched successfully>"


def test_load_state_dict_keeps_tensors_in_place(placement):
    model = nn.Linear(2, 3).to(placement)
    weight = model.weight
    opt = cnnlab.optim.SGD(model.parameters(), lr=1.0)
    model.load_state_dict({"weight": torch.full((3, 2), 2.0), "bias": np.zeros(3)})
    assert model.weight is weight and weight.device == cnnlab.device(placement)
    model(on(placement, np.ones((1, 2), np.float32))).sum().backward()
    opt.step()  # the optimizer still holds the same (updated) parameter
    assert np.allclose(np_of(model.weight), 1.0)


def test_module_registration_and_modes():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)
            self.scale = nn.Parameter(cnnlab.ones(1))
            self.register_buffer("steps", cnnlab.zeros(1))
            self.register_buffer("cache", cnnlab.zeros(2), persistent=False)
            self.plain = 3

        def forward(self, x):
            return self.fc(x) * self.scale

    net = Net()
    assert [n for n, _ in net.named_parameters()] == ["scale", "fc.weight", "fc.bias"] or \
        [n for n, _ in net.named_parameters()] == ["fc.weight", "fc.bias", "scale"]
    assert list(net.state_dict()) == ["scale", "steps", "fc.weight", "fc.bias"]
    assert net.plain == 3 and "cache" not in net.state_dict()
    net.eval()
    assert not net.training and not net.fc.training
    net.train()
    assert net.fc.training
    with pytest.raises(TypeError, match="cannot assign"):
        net.scale = 1.0
    net.scale = None
    assert [n for n, _ in net.named_parameters()] == ["fc.weight", "fc.bias"]
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        net.nothing
    with pytest.raises(NotImplementedError, match='missing the required "forward"'):
        nn.Module()(1)


def test_to_keeps_parameter_objects_and_casts_floating_tensors_only(placement):
    bn = nn.BatchNorm2d(2)
    weight = bn.weight
    bn.to(placement).double()
    assert bn.weight is weight and bn.weight.dtype == cnnlab.float64
    assert bn.running_mean.dtype == cnnlab.float64
    assert bn.num_batches_tracked.dtype == cnnlab.int64
    assert bn.weight.device == bn.running_var.device == cnnlab.device(placement)


def test_forward_hooks_run_and_come_off():
    lin = nn.Linear(2, 2)
    seen = []
    handle = lin.register_forward_hook(lambda m, args, out: seen.append(tuple(out.shape)))
    lin(cnnlab.ones(3, 2))
    handle.remove()
    lin(cnnlab.ones(3, 2))
    assert seen == [(3, 2)]


def test_initialisation_follows_torchs_bounds():
    cnnlab.manual_seed(0)
    conv = nn.Conv2d(4, 300, 3)
    bound = 1 / math.sqrt(4 * 9)
    w, b = np_of(conv.weight), np_of(conv.bias)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert np.abs(b).max() <= bound and abs(w.mean()) < 0.01 * bound * 10
    lin = nn.Linear(50, 400)
    assert np.abs(np_of(lin.weight)).max() <= 1 / math.sqrt(50)
    convt = nn.ConvTranspose2d(3, 8, 2)  # torch: fan_in from weight.size(1) = 8
    assert np.abs(np_of(convt.weight)).max() <= 1 / math.sqrt(8 * 4)
    bn = nn.BatchNorm2d(3)
    assert np.array_equal(np_of(bn.weight), np.ones(3)) and not np_of(bn.bias).any()
    assert np.array_equal(np_of(bn.running_var), np.ones(3))


def test_seeded_generators_make_the_same_network_everywhere():
    a = cnnlab.models.build("lab", generator=5)
    b = cnnlab.models.build("lab", generator=cnnlab.Generator().manual_seed(5))
    cnnlab.manual_seed(5)
    c = cnnlab.models.CNNClassifier()
    for k, v in a.state_dict().items():
        assert np.array_equal(np_of(v), np_of(b.state_dict()[k]))
        assert np.array_equal(np_of(v), np_of(c.state_dict()[k]))
    cnnlab.manual_seed(6)
    d = cnnlab.models.CNNClassifier()
    assert not np.array_equal(np_of(d.fc_layers[0].weight), np_of(c.fc_layers[0].weight))


def test_dropout_scales_kept_values_and_is_the_identity_in_eval(placement):
    drop = nn.Dropout(0.25)
    x = on(placement, np.ones((200, 50)))
    y = np_of(drop(x))
    kept = y != 0
    assert np.allclose(y[kept], 1 / 0.75) and abs(kept.mean() - 0.75) < 0.02
    drop.eval()
    assert np.array_equal(np_of(drop(x)), np.ones((200, 50)))
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


def test_constructor_errors_like_torch():
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="not supported for strided convolutions"):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="expected 4D input"):
        nn.BatchNorm2d(2)(cnnlab.ones(3, 2))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm2d(2)(cnnlab.ones(1, 2, 1, 1))
