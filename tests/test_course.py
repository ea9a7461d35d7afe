"""The course's part-2 PyTorch code, written once (COURSE below), run with torch's imports and
with cnnlab's (``import cnnlab as torch``, ``import cnnlab.nn as nn``, ``import cnnlab.optim
as optim``), nothing else changed. Given torch's initial weights and the same batches,
cnnlab gives torch's losses, gradients and weights after several Adam and SGD steps (float64
within 1e-10, float32 within 1e-4, relative to each array's largest value) and the same
test accuracy, on every placement (see nnutil.py: each NumPy backend, and the torch twin on
the CPU, which is the GPU code path).
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from nnutil import TOL, close, placement  # noqa: F401  (placement is a fixture)

torch = pytest.importorskip("torch")

COURSE = '''
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


class CNNClassifier(nn.Module):
    def __init__(self):
        super(CNNClassifier, self).__init__()
        self.conv_layers = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.fc_layers = nn.Sequential(
            nn.Linear(64 * (IMG_SIZE // 8) * (IMG_SIZE // 8), 128),
            nn.ReLU(),
            nn.Linear(128, 2),
        )

    def forward(self, x):
        x = self.conv_layers(x)
        x = x.view(x.size(0), -1)
        x = self.fc_layers(x)
        return x


def train_model(model, train_loader, criterion, optimizer, num_epochs):
    for epoch in range(num_epochs):
        model.train()
        running_loss = 0.0
        for images, labels in train_loader:
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad()
            outputs = model(images)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            history.append(loss.item())
        print(f"Epoch [{epoch + 1}/{num_epochs}], Loss: {running_loss / len(train_loader):.4f}")


def evaluate_model(model, test_loader):
    model.eval()
    correct = 0
    total = 0
    with torch.no_grad():
        for images, labels in test_loader:
            images, labels = images.to(device), labels.to(device)
            outputs = model(images)
            _, predicted = torch.max(outputs.data, 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    print(f"Accuracy of the model on the test images: {100 * correct / total:.2f}%")
    return correct, total
'''

IMG_SIZE = 16


def _imports(which):
    if which == "torch":
        import torch.nn as nn
        import torch.optim as optim
        return {"torch": torch, "nn": nn, "optim": optim}
    import cnnlab
    import cnnlab.nn as nn
    import cnnlab.optim as optim
    return {"torch": cnnlab, "nn": nn, "optim": optim}


def _data(dtype, n_batches=2, batch=6, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.random((batch, 3, IMG_SIZE, IMG_SIZE)).astype(dtype) for _ in range(n_batches)]
    ys = [rng.integers(0, 2, batch) for _ in range(n_batches)]
    return list(zip(xs, ys))


def run_course(which, weights, optimizer, dtype, device=None, epochs=2):
    """Execute COURSE with ``which`` imports ("torch" or "cnnlab"), load ``weights``, train,
    evaluate. Returns (per-step losses, grads, weights, (correct, total), printed text)."""
    ns = dict(_imports(which), IMG_SIZE=IMG_SIZE, history=[])
    exec(compile(COURSE, "<course>", "exec"), ns)
    tch, nn, optim = ns["torch"], ns["nn"], ns["optim"]
    if device is not None:
        ns["device"] = tch.device(device)
    model = ns["CNNClassifier"]()
    model.load_state_dict({k: tch.from_numpy(v) for k, v in weights.items()})
    model = model.to(ns["device"])
    if dtype == "float64":
        model = model.double()
    criterion = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=0.001) if optimizer == "adam" else \
        optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = [(tch.from_numpy(x), tch.from_numpy(y)) for x, y in _data(dtype)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ns["train_model"](model, loader, criterion, opt, epochs)
        grads = {n: p.grad.cpu().numpy() for n, p in model.named_parameters()}
        final = {n: p.detach().cpu().numpy() for n, p in model.named_parameters()}
        accuracy = ns["evaluate_model"](model, loader)
    return ns["history"], grads, final, accuracy, out.getvalue()


@pytest.fixture(scope="module")
def weights():
    """torch's own initialisation of the course network."""
    ns = dict(_imports("torch"), IMG_SIZE=IMG_SIZE, history=[])
    exec(compile(COURSE, "<course>", "exec"), ns)
    torch.manual_seed(0)
    return {k: v.numpy().copy() for k, v in ns["CNNClassifier"]().state_dict().items()}


@pytest.fixture(scope="module")
def reference(weights):
    """torch's run, once per (optimizer, dtype)."""
    cache = {}

    def get(optimizer, dtype):
        if (optimizer, dtype) not in cache:
            cache[optimizer, dtype] = run_course("torch", weights, optimizer, dtype, "cpu")
        return cache[optimizer, dtype]
    return get


def test_course_code_names_only_torch():
    assert "cnnlab" not in COURSE


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_course_code_gives_torchs_numbers(placement, weights, reference, optimizer, dtype):
    losses, grads, final, accuracy, text = run_course("cnnlab", weights, optimizer, dtype,
                                                      placement)
    t_losses, t_grads, t_final, t_accuracy, t_text = reference(optimizer, dtype)
    tol = TOL[dtype]
    assert len(losses) == len(t_losses) == 4
    for step, (a, b) in enumerate(zip(losses, t_losses)):
        close(np.float64(a), np.float64(b), tol, f"loss of step {step + 1}")
    assert list(grads) == list(t_grads)
    for name in t_grads:
        close(grads[name], t_grads[name], tol, f"grad {name}")
        close(final[name], t_final[name], tol, f"weight {name}")
        assert final[name].dtype == t_final[name].dtype
    assert accuracy == t_accuracy
    assert text.count("Epoch [") == 2 and "Accuracy of the model" in text


def test_course_code_runs_on_the_default_device(weights):
    """Without overriding ``device``: cnnlab picks "cpu" (the NumPy path) here, as the course
    code asks for (or "cuda" where a GPU is)."""
    import cnnlab
    losses, _, final, accuracy, _ = run_course("cnnlab", weights, "adam", "float32")
    assert len(losses) == 4 and accuracy[1] == 12
    expected = "cuda" if cnnlab.cuda.is_available() else "cpu"
    ns = dict(_imports("cnnlab"), IMG_SIZE=IMG_SIZE, history=[])
    exec(compile(COURSE, "<course>", "exec"), ns)
    assert str(ns["device"]) == expected
