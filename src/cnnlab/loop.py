"""The training loop as a function: ``fit(model, train_loader, test_loader, optimizer,
epochs)`` runs PyTorch's loop and returns the history; callbacks watch and steer it.

How the pieces fit::

    fit(...)                 for each epoch: callbacks' on_epoch_begin; train_epoch;
                             evaluate on test_loader; scheduler.step(); one history row;
                             callbacks' on_epoch_end (in the order given); stop when one
                             of them sets ``state.stop``
      train_epoch            for each batch: zero_grad, forward, loss, backward, step,
                             callbacks' on_batch_end; a progress bar (cnnlab._progress)
      evaluate               eval mode, no_grad: mean loss, accuracy, predicted classes
    FitState                 what a callback sees: model, optimizer, epoch, batch, loss,
                             history, stop (set it to a reason to end after this epoch)
    Callback                 the base class: on_train_begin, on_epoch_begin, on_batch_end,
                             on_epoch_end, on_train_end; each gets the FitState
      TerminateOnNaN         a NaN/Inf loss, weight or optimizer buffer raises
                             TrainingStopped naming the epoch and batch (nothing is saved
                             after it, so the last checkpoint stays good)
      EarlyStopping          ends the run when a monitored figure stops improving
      Checkpoint             calls save(state) after each epoch (or each best epoch)

A history row is ``{"epoch", "train_loss", "train_accuracy", "test_loss",
"test_accuracy", "lr", "seconds"}`` (no test figures without a test loader); accuracies are
fractions. ``fit`` continues a ``history`` it is given (a resumed run): epochs are numbered
on from its length, up to ``epochs`` in total.
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Callable, Optional

import numpy as np

from . import _progress
from .autograd import no_grad
from .random import use_generator

__all__ = ["fit", "evaluate", "train_epoch", "FitState", "Callback", "TerminateOnNaN",
           "EarlyStopping", "Checkpoint", "TrainingStopped"]


class TrainingStopped(RuntimeError):
    """Training cannot go on: a NaN or Inf in the loss, the weights or the optimizer."""


class FitState:
    """What callbacks see and may change (``stop``) during :func:`fit`."""

    def __init__(self, model, optimizer, epochs: int, history: list):
        self.model = model
        self.optimizer = optimizer
        self.epochs = epochs        # the total to reach
        self.history = history      # rows so far (the current epoch's once it is done)
        self.epoch = len(history)   # the epoch running (1-based), or last finished
        self.batch = 0              # the batch just done (1-based) within the epoch
        self.loss = None            # its loss (a float)
        self.stop = None            # a reason: fit ends after this epoch


class Callback:
    """Base class of fit's callbacks; override the hooks you need."""

    def on_train_begin(self, state: FitState) -> None:
        pass

    def on_epoch_begin(self, state: FitState) -> None:
        pass

    def on_batch_end(self, state: FitState) -> None:
        pass

    def on_epoch_end(self, state: FitState) -> None:
        pass

    def on_train_end(self, state: FitState) -> None:
        pass


def _finite(tensor) -> bool:
    return bool(tensor.isfinite().all())


class TerminateOnNaN(Callback):
    """Stop with :class:`TrainingStopped` at the first NaN/Inf loss (checked each batch),
    or weight or optimizer buffer (checked at each epoch's end, before later callbacks
    such as :class:`Checkpoint` run)."""

    def on_batch_end(self, state):
        if not math.isfinite(state.loss):
            raise TrainingStopped(f"Epoch {state.epoch}, batch {state.batch}: invalid loss "
                                  f"({state.loss}), terminating training")

    def on_epoch_end(self, state):
        for name, p in state.model.named_parameters():
            if not _finite(p):
                raise TrainingStopped(f"Epoch {state.epoch}: weight {name} holds NaN or Inf "
                                      f"values, terminating training")
        if state.optimizer is None:
            return
        names = {id(p): name for name, p in state.model.named_parameters()}
        for p, entry in state.optimizer.state.items():
            for key, value in entry.items():
                if hasattr(value, "isfinite") and not _finite(value):
                    raise TrainingStopped(f"Epoch {state.epoch}: the optimizer's {key} of "
                                          f"{names.get(id(p), 'a parameter')} holds NaN or "
                                          f"Inf values (is the learning rate too large?), "
                                          f"terminating training")


class _Monitor:
    """The best value of one history key so far: lower is better for "min", higher for
    "max"; "auto" takes max for accuracies and min otherwise."""

    def __init__(self, key: str, mode: str = "auto", min_delta: float = 0.0):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.key, self.min_delta = key, abs(min_delta)
        self.sign = -1.0 if mode == "max" or (mode == "auto" and "acc" in key) else 1.0
        self.best, self.best_epoch = math.inf, None

    def improved(self, row: dict) -> bool:
        """Whether ``row`` beats the best by more than min_delta (then it is the best)."""
        if self.key not in row:
            raise KeyError(f"{self.key!r} is not in the history (it has {sorted(row)})")
        value = self.sign * row[self.key]
        if value < self.best - self.min_delta:
            self.best, self.best_epoch = value, row["epoch"]
            return True
        return False


class EarlyStopping(Callback):
    """End the run after ``patience`` epochs in a row in which ``monitor`` (a history key)
    did not improve on its best by more than ``min_delta`` (Keras's rule). ``mode`` "min",
    "max", or "auto" (max for accuracies, min otherwise)."""

    def __init__(self, monitor: str = "test_loss", patience: int = 5,
                 min_delta: float = 0.0, mode: str = "auto"):
        if patience < 0:
            raise ValueError(f"patience must be non-negative, got {patience}")
        self.monitor = _Monitor(monitor, mode, min_delta)
        self.patience = patience
        self.wait = 0

    def on_epoch_end(self, state):
        if self.monitor.improved(state.history[-1]):
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            m = self.monitor
            state.stop = (f"early stopping: {m.key} has not improved for {self.wait} epochs "
                          f"(best {m.sign * m.best:.4f} at epoch {m.best_epoch})")


class Checkpoint(Callback):
    """After each epoch (``best_only``: each epoch that improves ``monitor``), call
    ``save(state)``; ``last`` holds what the last call returned (say, the path written)."""

    def __init__(self, save: Callable, best_only: bool = False, monitor: str = "test_loss",
                 mode: str = "auto"):
        self.save = save
        self.monitor = _Monitor(monitor, mode) if best_only else None
        self.last = None

    def on_epoch_end(self, state):
        if self.monitor is None or self.monitor.improved(state.history[-1]):
            self.last = self.save(state)


def _call(callbacks, hook: str, state: FitState) -> None:
    for cb in callbacks:
        getattr(cb, hook)(state)


def _to(x, device):
    return x if device is None else x.to(device)


def train_epoch(model, loader, criterion, optimizer, state: Optional[FitState] = None,
                callbacks=(), device=None, generator=None, progress=None) -> dict:
    """One pass over ``loader`` ((inputs, labels) batches) in train mode, PyTorch's way;
    returns {"train_loss": mean over samples, "train_accuracy": fraction correct}."""
    state = state or FitState(model, optimizer, 1, [])
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    desc = f"epoch {state.epoch}/{state.epochs}"
    with _progress.bar(len(loader) if hasattr(loader, "__len__") else None, desc,
                       enabled=progress, unit="batch", leave=False) as bar:
        for b, (inputs, labels) in enumerate(loader, 1):
            inputs, labels = _to(inputs, device), _to(labels, device)
            optimizer.zero_grad()
            with use_generator(generator) if generator is not None \
                    else contextlib.nullcontext():
                outputs = model(inputs)
            loss = criterion(outputs, labels)
            state.batch, state.loss = b, loss.item()
            _call(callbacks, "on_batch_end", state)
            loss.backward()
            optimizer.step()
            n = int(labels.shape[0])
            total_loss += state.loss * n
            correct = correct + (outputs.argmax(1) == labels).sum()   # no sync on a GPU
            seen += n
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", refresh=False)
            bar.update(1)
    if seen == 0:
        raise ValueError("the training loader gave no batches")
    return {"train_loss": total_loss / seen, "train_accuracy": int(correct) / seen}


def evaluate(model, loader, criterion=None, device=None):
    """(mean loss, accuracy, predicted classes as an int64 NumPy array) of ``model`` in
    eval mode over ``loader``; the loss is None without a ``criterion``. The model is left
    in the mode it was in."""
    was_training = model.training
    model.eval()
    total, seen, correct, preds = 0.0, 0, 0, []
    try:
        with no_grad():
            for inputs, labels in loader:
                inputs, labels = _to(inputs, device), _to(labels, device)
                outputs = model(inputs)
                n = int(labels.shape[0])
                if criterion is not None:
                    total += criterion(outputs, labels).item() * n
                predicted = outputs.argmax(1)
                correct = correct + (predicted == labels).sum()
                preds.append(predicted.numpy(force=True))
                seen += n
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("the evaluation loader gave no batches")
    return (None if criterion is None else total / seen, int(correct) / seen,
            np.concatenate(preds).astype(np.int64))


def fit(model, train_loader, test_loader, optimizer, epochs: int, *, criterion=None,
        scheduler=None, callbacks=(), device=None, history=None, generator=None,
        progress=None, log: Optional[Callable] = None) -> list:
    """Train ``model`` until ``epochs`` epochs in total are done; return the history.

    model         a ``cnnlab.nn`` Module (on ``device`` already, if one is given)
    train_loader  an iterable of (inputs, labels) batches, e.g. a ``DataLoader``; with
                  ``shuffle=True`` it gives a new order each epoch
    test_loader   the same for evaluation after each epoch, or None
    optimizer     a ``cnnlab.optim`` optimizer over ``model.parameters()``
    criterion     the loss (default ``nn.CrossEntropyLoss()``)
    scheduler     an ``optim.lr_scheduler`` scheduler, stepped after each epoch
    callbacks     ``Callback`` s, called in order (put ``TerminateOnNaN`` before
                  ``Checkpoint``)
    device        batches are moved there with ``.to(device)``
    history       the rows of the epochs already done (to continue a run)
    generator     a ``cnnlab.Generator`` that dropout draws from during the forward passes
    progress      progress bars: None (where someone watches), True or False
    log           called with one line per epoch (e.g. ``print``); None: silent

    A callback that sets ``state.stop`` ends the run after that epoch (the history is then
    shorter than ``epochs``). ``TrainingStopped`` (from ``TerminateOnNaN``) and
    ``KeyboardInterrupt`` propagate, after the callbacks' ``on_train_end``.
    """
    if criterion is None:
        from .nn import CrossEntropyLoss
        criterion = CrossEntropyLoss()
    history = [] if history is None else history
    state = FitState(model, optimizer, int(epochs), history)
    callbacks = list(callbacks)
    _call(callbacks, "on_train_begin", state)
    try:
        for epoch in range(len(history) + 1, state.epochs + 1):
            state.epoch, state.batch = epoch, 0
            _call(callbacks, "on_epoch_begin", state)
            lr = optimizer.param_groups[0]["lr"]
            start = time.perf_counter()
            row = {"epoch": epoch}
            row.update(train_epoch(model, train_loader, criterion, optimizer, state, callbacks,
                                   device, generator, progress))
            if test_loader is not None:
                row["test_loss"], row["test_accuracy"], _ = evaluate(model, test_loader,
                                                                     criterion, device)
            if scheduler is not None:
                scheduler.step()
            row["lr"] = lr
            row["seconds"] = round(time.perf_counter() - start, 3)
            history.append(row)
            _call(callbacks, "on_epoch_end", state)
            if log is not None:
                log(format_row(row, state.epochs))
            if state.stop:
                if log is not None:
                    log(state.stop)
                break
    finally:
        _call(callbacks, "on_train_end", state)
    return history


def format_row(row: dict, epochs: int) -> str:
    """One history row as the line ``python -m cnnlab.train`` prints."""
    text = (f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}  train loss "
            f"{row['train_loss']:.4f}  train acc {100 * row['train_accuracy']:6.2f}%")
    if "test_loss" in row:
        text += (f"  test loss {row['test_loss']:.4f}  test acc "
                 f"{100 * row['test_accuracy']:6.2f}%")
    return text + f"  {row['seconds']:.1f} s"
