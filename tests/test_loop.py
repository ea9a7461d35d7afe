"""cnnlab.loop.fit: PyTorch's loop as a function, checked against the same loop written in
torch (same weights, same batches: the same losses, accuracies and final weights), and its
callbacks (early stopping by Keras's rule, checkpointing, the NaN stop) by hand.
"""
from __future__ import annotations

import numpy as np
import pytest

import cnnlab
from cnnlab import loop, nn, optim
from cnnlab.utils.data import DataLoader, TensorDataset

torch = pytest.importorskip("torch")

NET = '''
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 2)

    def forward(self, x):
        x = self.pool(self.conv(x).relu())
        return self.fc(x.view(x.size(0), -1))
'''


def build(lib):
    scope = {"nn": lib.nn}
    exec(NET, scope)
    return scope["Net"]()


def toy_data(n=48, seed=0):
    """Noise images with a bright left half (label 0) or a bright right half (label 1)."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 2, n)
    x[y == 0, :, :, :4] += 1.0
    x[y == 1, :, :, 4:] += 1.0
    return x, y


def loaders(x, y, batch_size=8):
    train = DataLoader(TensorDataset(cnnlab.tensor(x), cnnlab.tensor(y)), batch_size=batch_size)
    test = DataLoader(TensorDataset(cnnlab.tensor(x[:16]), cnnlab.tensor(y[:16])),
                      batch_size=batch_size)
    return train, test


def torch_loop(model, x, y, epochs, lr, batch_size=8):
    """The course's loop, in torch: per epoch the mean batch loss (weighted by size) and
    accuracy, then the test accuracy on the first 16 samples."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    crit = torch.nn.CrossEntropyLoss()
    rows = []
    for _ in range(epochs):
        model.train()
        total, correct = 0.0, 0
        for i in range(0, len(y), batch_size):
            xb, yb = torch.from_numpy(x[i:i + batch_size]), torch.from_numpy(y[i:i + batch_size])
            opt.zero_grad()
            out = model(xb)
            loss = crit(out, yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(yb)
            correct += (out.argmax(1) == yb).sum().item()
        model.eval()
        with torch.no_grad():
            out = model(torch.from_numpy(x[:16]))
            test_acc = (out.argmax(1) == torch.from_numpy(y[:16])).float().mean().item()
        rows.append((total / len(y), correct / len(y), test_acc))
    return rows


def test_fit_is_torchs_loop():
    x, y = toy_data()
    ours = build(cnnlab)
    theirs = build(torch)
    theirs.load_state_dict({k: torch.from_numpy(v.numpy().copy())
                            for k, v in ours.state_dict().items()})
    train, test = loaders(x, y)
    history = loop.fit(ours, train, test, optim.SGD(ours.parameters(), lr=0.1, momentum=0.9),
                       3, progress=False)
    expected = torch_loop(theirs, x, y, 3, 0.1)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for row, (loss, acc, test_acc) in zip(history, expected):
        assert row["train_loss"] == pytest.approx(loss, rel=1e-4)
        assert row["train_accuracy"] == acc and row["test_accuracy"] == test_acc
        assert row["lr"] == 0.1 and row["seconds"] >= 0
    for k, v in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[k].numpy(), v.numpy(), rtol=1e-4,
                                   atol=1e-5)


def test_fit_learns_continues_and_steps_the_scheduler():
    x, y = toy_data(96)
    cnnlab.manual_seed(0)
    model = build(cnnlab)
    opt = optim.Adam(model.parameters(), lr=0.01)
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    train, test = loaders(x, y)
    lines = []
    history = loop.fit(model, train, test, opt, 3, scheduler=sched, progress=False,
                       log=lines.append)
    history = loop.fit(model, train, test, opt, 6, scheduler=sched, history=history,
                       progress=False)
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert [h["lr"] for h in history] == [0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025]
    assert history[-1]["train_accuracy"] > 0.9
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3  train loss ")
    loss, acc, pred = loop.evaluate(model, test, nn.CrossEntropyLoss())
    assert acc == history[-1]["test_accuracy"] and pred.dtype == np.int64 and len(pred) == 16
    assert model.training                          # evaluate restores the mode


def test_early_stopping_follows_keras():
    x, y = toy_data()
    model = build(cnnlab)
    train, test = loaders(x, y)
    stop = loop.EarlyStopping("test_loss", patience=2)
    lines = []
    history = loop.fit(model, train, test, optim.SGD(model.parameters(), lr=0.0), 10,
                       callbacks=[stop], progress=False, log=lines.append)
    # epoch 1 sets the best; epochs 2 and 3 do not improve it (lr 0): stop after epoch 3
    assert len(history) == 3
    assert lines[-1].startswith("early stopping: test_loss has not improved for 2 epochs")
    with pytest.raises(KeyError, match="'nope' is not in the history"):
        loop.fit(model, train, test, optim.SGD(model.parameters(), lr=0.0), 1,
                 callbacks=[loop.EarlyStopping("nope")], progress=False)


def test_checkpoint_every_epoch_or_best_only():
    x, y = toy_data()
    model = build(cnnlab)
    train, test = loaders(x, y)
    every = loop.Checkpoint(lambda s: f"saved {s.epoch}")
    best = loop.Checkpoint(lambda s: s.epoch, best_only=True, monitor="test_accuracy")
    calls = []
    best.save = lambda s: calls.append(s.history[-1]["test_accuracy"]) or s.epoch
    history = loop.fit(model, train, test, optim.SGD(model.parameters(), lr=0.05), 4,
                       callbacks=[every, best], progress=False)
    assert every.last == "saved 4"
    accs = [h["test_accuracy"] for h in history]
    assert calls == [a for i, a in enumerate(accs) if a > max(accs[:i], default=-1)]


def test_nan_loss_stops_naming_the_batch():
    x, y = toy_data()
    x[20] = np.nan                                  # batch 3 of epoch 1
    model = build(cnnlab)
    train, test = loaders(x, y)
    ended = []

    class Ended(loop.Callback):
        def on_train_end(self, state):
            ended.append(state.epoch)

    with pytest.raises(loop.TrainingStopped, match=r"Epoch 1, batch 3: invalid loss \(nan\)"):
        loop.fit(model, train, test, optim.SGD(model.parameters(), lr=0.1), 2,
                 callbacks=[loop.TerminateOnNaN(), Ended()], progress=False)
    assert ended == [1]


def test_nan_in_weights_or_optimizer_state_stops_before_later_callbacks():
    model = build(cnnlab)
    opt = optim.Adam(model.parameters())
    model(cnnlab.randn(2, 1, 8, 8)).sum().backward()
    opt.step()
    state = loop.FitState(model, opt, 1, [{"epoch": 1}])
    state.epoch = 1
    loop.TerminateOnNaN().on_epoch_end(state)                   # all finite: nothing
    opt.state[model.fc.weight]["exp_avg_sq"].fill_(float("inf"))
    with pytest.raises(loop.TrainingStopped, match="optimizer's exp_avg_sq of fc.weight holds "
                                                   "NaN or Inf"):
        loop.TerminateOnNaN().on_epoch_end(state)
    with cnnlab.no_grad():
        model.conv.bias[0] = float("nan")
    with pytest.raises(loop.TrainingStopped, match="weight conv.bias holds NaN or Inf"):
        loop.TerminateOnNaN().on_epoch_end(state)


def test_dropout_draws_from_the_given_generator():
    x, y = toy_data()

    def run(dropout_seed, default_seed):
        cnnlab.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 2))
        train, _ = loaders(x, y)
        cnnlab.manual_seed(default_seed)
        loop.fit(model, train, None, optim.SGD(model.parameters(), lr=0.1), 1,
                 generator=cnnlab.Generator().manual_seed(dropout_seed), progress=False)
        return model[2].weight.detach().numpy().copy()

    np.testing.assert_array_equal(run(3, 0), run(3, 1))       # the default is not used
    assert not np.array_equal(run(3, 0), run(4, 0))


def test_interrupt_propagates_after_on_train_end():
    x, y = toy_data()
    model = build(cnnlab)
    train, test = loaders(x, y)
    seen = []

    class Interrupt(loop.Callback):
        def on_batch_end(self, state):
            if state.batch == 2:
                raise KeyboardInterrupt

        def on_train_end(self, state):
            seen.append((state.epoch, state.batch))

    with pytest.raises(KeyboardInterrupt):
        loop.fit(model, train, test, optim.SGD(model.parameters(), lr=0.1), 2,
                 callbacks=[Interrupt()], progress=False)
    assert seen == [(1, 2)]


def test_progress_is_silent_when_nobody_watches(capsys):
    x, y = toy_data()
    model = build(cnnlab)
    train, test = loaders(x, y)
    loop.fit(model, train, test, optim.SGD(model.parameters(), lr=0.1), 1)
    assert capsys.readouterr() == ("", "")
    loop.fit(model, train, test, optim.SGD(model.parameters(), lr=0.1), 2,
             history=[{"epoch": 1}], progress=True)
    assert "epoch 2/2" in capsys.readouterr().err
