"""``python -m cnnlab.train``: train the cats-vs-dogs classifier of the course lab.

How the pieces fit::

    main(argv)          argparse -> settings (a resumed run takes them from its checkpoint)
    _Run                the model, optimizer, loss, data on the device, RNGs, history
      .epoch(e)         shuffled batches: forward, loss, backward, step; a tqdm bar with
                        the running loss; stops on a NaN/Inf loss naming epoch and batch
      .evaluate(x, y)   eval-mode logits in batches -> loss, accuracy, predictions
      .save(out)        checkpoint.npz (atomic) after every epoch, so the last good one
                        survives a crash or a NaN; metrics.json beside it
    plot_curves         loss and accuracy per epoch -> curves.png (needs matplotlib)

The model is a ``cnnlab.nn`` Module (``cnnlab.models``), trained as PyTorch code is:
``optimizer.zero_grad()``, ``loss = criterion(model(x), y)``, ``loss.backward()``,
``optimizer.step()``. Randomness: one ``--seed`` feeds ``SeedSequence(seed).spawn``: the
train/test split, the initial weights (a ``cnnlab.Generator``), the shuffling and left-right
flips (``--augment flip``), dropout (a ``cnnlab.Generator`` made the default while the
model runs). The shuffling and dropout generators' states go into the checkpoint, and the
learning rate is a function of the epoch, so one epoch + ``--resume`` + one epoch equals two
epochs bit for bit.
Errors in the arguments, the data or a checkpoint end the command with one line on stderr
and exit status 2 (arguments) or 1.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time

import numpy as np

from . import _array as A
from . import checkpoint, data, models, nn, optim
from ._dispatch import placement, use_backend
from ._parallel import get_num_threads, set_num_threads
from .autograd import no_grad
from .random import Generator, use_generator
from .tensor import as_tensor

__all__ = ["main", "build_parser", "confusion_matrix", "plot_curves", "TrainingStopped"]

PROG = "python -m cnnlab.train"
EVAL_BATCH = 256
DEFAULTS = dict(data=None, arch="lab", epochs=25, batch_size=32, lr=1e-3, optimizer="adam",
                momentum=0.9, weight_decay=0.0, image_size=28, channels=1, dtype="float32",
                seed=0, test_fraction=0.2, limit=None, augment="flip", schedule="cosine")
# Settings that define a run; a resumed run keeps the checkpoint's.
RUN_KEYS = tuple(DEFAULTS)


class TrainingStopped(RuntimeError):
    """Training ended early: a NaN or Inf loss."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2, as argparse's but without usage
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}")
        if not value > 0 or (kind is float and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be a positive {kind.__name__}, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}")
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a non-negative number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    d = DEFAULTS
    p = _Parser(prog=PROG, description=(
        "Train a CNN classifier with cnnlab. With no argument: the 'lab' network on the "
        "bundled cats-vs-dogs silhouettes (28x28, 1 channel), a seeded 80/20 split, Adam "
        "1e-3 decayed by a cosine schedule, batch 32, random left-right flips, 25 epochs."),
        epilog="A resumed run (--resume) keeps the settings stored in its checkpoint; "
               "--epochs is then the total to reach.")
    # Defaults are None here and filled in later, so a resumed run can tell what was given.
    g = p.add_argument_group("data")
    g.add_argument("--data", metavar="DIR", help="image folder DIR/train/<class>/* (and "
                   "DIR/test/<class>/*; without it a seeded split of train/). Default: the "
                   "bundled cats-vs-dogs silhouettes")
    g.add_argument("--image-size", type=_positive(int), metavar="S",
                   help=f"resize images to SxS (default {d['image_size']})")
    g.add_argument("--channels", type=int, choices=(1, 3),
                   help=f"1 = grayscale, 3 = RGB (default {d['channels']})")
    g.add_argument("--test-fraction", type=float, metavar="F",
                   help=f"held-out share without a test/ folder (default {d['test_fraction']})")
    g.add_argument("--limit", type=_positive(int), metavar="N",
                   help="train on N randomly chosen training images only (quick runs)")
    g = p.add_argument_group("model and optimisation")
    g.add_argument("--arch", choices=sorted(models.ARCHITECTURES),
                   help=f"network (default {d['arch']})")
    g.add_argument("--epochs", type=_positive(int), help=f"epochs (default {d['epochs']})")
    g.add_argument("--batch-size", type=_positive(int), help=f"default {d['batch_size']}")
    g.add_argument("--lr", type=_positive(float), help=f"learning rate (default {d['lr']})")
    g.add_argument("--schedule", choices=("cosine", "constant"), help="learning rate per "
                   "epoch: 'cosine' decays it from --lr towards 0 over --epochs (torch's "
                   f"CosineAnnealingLR), 'constant' keeps it (default {d['schedule']})")
    g.add_argument("--optimizer", choices=("adam", "sgd"), help=f"default {d['optimizer']}")
    g.add_argument("--momentum", type=_non_negative_float,
                   help=f"SGD momentum (default {d['momentum']})")
    g.add_argument("--weight-decay", type=_non_negative_float,
                   help=f"L2 penalty (default {d['weight_decay']})")
    g.add_argument("--augment", choices=("flip", "none"), help="'flip' mirrors a random "
                   f"half of the training images left-right each epoch (default {d['augment']})")
    g.add_argument("--dtype", choices=("float32", "float64"), help=f"default {d['dtype']}")
    g.add_argument("--seed", type=int, help=f"seed of split, weights, shuffling and flips "
                   f"(default {d['seed']})")
    g = p.add_argument_group("execution")
    g.add_argument("--backend", choices=("cython", "numpy", "torch"),
                   help="kernels for NumPy arrays (default: cython where it was compiled, "
                        "else numpy; env CNNLAB_BACKEND)")
    g.add_argument("--device", choices=("cpu", "cuda"), help="a torch device for parameters "
                   "and activations; selects the torch backend (which defaults to cpu)")
    g.add_argument("--threads", type=_positive(int), help=f"threads of the kernels (default "
                   f"{get_num_threads()})")
    g.add_argument("--out", metavar="DIR", help="folder for checkpoint.npz, metrics.json, "
                   "curves.png (default runs/, or the resumed checkpoint's folder)")
    g.add_argument("--resume", metavar="FILE", help="continue the run saved in FILE")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


# --------------------------------------------------------------------------- helpers


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts: row = true class, column = predicted class."""
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    return np.bincount(y_true * num_classes + y_pred,
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def format_confusion(cm, class_names) -> str:
    width = max(6, max(len(c) for c in class_names) + 1, len(str(int(cm.max()))) + 1)
    head = " " * width + "".join(f"{c:>{width}}" for c in class_names)
    rows = [f"{name:<{width}}" + "".join(f"{int(v):>{width}}" for v in row)
            for name, row in zip(class_names, cm)]
    return "\n".join([head] + rows)


def plot_curves(history, path) -> bool:
    """Loss and accuracy per epoch (train and test) -> PNG at ``path``. False (and nothing
    written) when matplotlib is not installed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for ax, key, title in ((ax_loss, "loss", "cross-entropy loss"),
                           (ax_acc, "accuracy", "accuracy (%)")):
        scale = 100.0 if key == "accuracy" else 1.0
        for split, style in (("train", "o-"), ("test", "s--")):
            ax.plot(epochs, [h[f"{split}_{key}"] * scale for h in history], style,
                    label=split, markersize=4)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    checkpoint.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    return True


def learning_rate(s: dict, epoch: int) -> float:
    """The learning rate of ``epoch`` (1-based) under the run's schedule."""
    if s["schedule"] == "constant":
        return s["lr"]
    return s["lr"] * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / s["epochs"]))


def _write_json(path, obj) -> None:
    text = json.dumps(obj, indent=2) + "\n"
    checkpoint.atomic_write(path, lambda f: f.write(text.encode()))


# --------------------------------------------------------------------------- a run


def _generator(seed_sequence) -> Generator:
    """A cnnlab.Generator seeded from a NumPy SeedSequence."""
    return Generator().manual_seed(int(seed_sequence.generate_state(1, np.uint64)[0]))


class _Run:
    """Everything one training run holds; see the module docstring."""

    def __init__(self, s: dict, device, log, progress: bool, resume=None):
        self.s, self.device, self.log, self.progress = s, device, log, progress
        split_seed, limit_seed, init_seed, shuffle_seed, dropout_seed = \
            np.random.SeedSequence(s["seed"]).spawn(5)
        ds = data.load_dataset(s["data"], s["image_size"], s["channels"],
                               np.random.default_rng(split_seed), s["test_fraction"],
                               log=log, progress=progress)
        x_train, y_train = ds.x_train, ds.y_train
        if s["limit"] is not None and s["limit"] < len(y_train):
            keep = np.sort(np.random.default_rng(limit_seed)
                           .permutation(len(y_train))[:s["limit"]])
            x_train, y_train = x_train[keep], y_train[keep]
        self.ds = ds
        self.class_names = ds.class_names
        self.n_train, self.n_test = len(y_train), len(ds.y_test)
        # The whole (uint8) data set goes to the device once; batches are taken there.
        self.x_train, self.y_train = A.convert(x_train, device), A.convert(y_train, device)
        self.x_test, self.y_test = A.convert(ds.x_test, device), A.convert(ds.y_test, device)

        self.model = models.build(s["arch"], s["channels"], s["image_size"],
                                  len(self.class_names), generator=_generator(init_seed),
                                  dtype=s["dtype"])
        self.dropout_gen = _generator(dropout_seed)
        self.shuffle_rng = np.random.default_rng(shuffle_seed)
        self.epoch_done, self.history = 0, []
        if resume is not None:
            self._restore(resume)
        # the CLI's --device names a torch device; cnnlab spells torch on the CPU "torch:cpu"
        self.model.to("cpu" if device is None else "torch:cpu" if device == "cpu" else device)
        if s["optimizer"] == "adam":
            self.optimizer = optim.Adam(self.model.parameters(), lr=s["lr"],
                                        weight_decay=s["weight_decay"])
        else:
            self.optimizer = optim.SGD(self.model.parameters(), lr=s["lr"],
                                       momentum=s["momentum"], weight_decay=s["weight_decay"])
        if resume is not None and resume["optimizer"] is not None:
            self.optimizer.load_state_dict(resume["optimizer"]["state_dict"])
        self.loss = nn.CrossEntropyLoss()

    def _rngs(self) -> dict:
        return {"shuffle": self.shuffle_rng, "dropout": self.dropout_gen}

    def _restore(self, ckpt) -> None:
        if ckpt["class_names"] != self.class_names:
            raise checkpoint.CheckpointError(
                f"checkpoint {ckpt['path']}: classes {ckpt['class_names']} differ from the "
                f"data's {self.class_names}")
        self.model.load_state_dict(ckpt["model"].state_dict())
        for name, gen in self._rngs().items():
            if name not in ckpt["rng"]:
                raise checkpoint.CheckpointError(f"checkpoint {ckpt['path']}: meta rng has no "
                                                 f"{name!r}")
            try:
                (gen if isinstance(gen, np.random.Generator) else gen.numpy) \
                    .bit_generator.state = ckpt["rng"][name]
            except (TypeError, ValueError, KeyError) as e:
                raise checkpoint.CheckpointError(f"checkpoint {ckpt['path']}: meta rng "
                                                 f"{name!r} is invalid ({e})") from None
        self.epoch_done, self.history = ckpt["epoch"], list(ckpt["history"])

    def _batch(self, x, y, idx, flip=None):
        """Images ``x[idx]`` as float Tensors (mirrored where ``flip``), labels ``y[idx]``."""
        xb = x[idx] if flip is None else A.flip_where(x[idx], flip)
        return as_tensor(data.normalize(xb, self.s["dtype"])), as_tensor(y[idx])

    def epoch(self, e: int) -> dict:
        """One pass over the shuffled training set; returns loss and accuracy."""
        from tqdm import tqdm

        start = time.perf_counter()
        self.model.train()
        self.optimizer.param_groups[0]["lr"] = learning_rate(self.s, e)
        bs = self.s["batch_size"]
        perm = A.convert(self.shuffle_rng.permutation(self.n_train), self.device)
        flips = None
        if self.s["augment"] == "flip":  # drawn once per epoch, in shuffled order
            flips = A.convert(self.shuffle_rng.random(self.n_train) < 0.5, self.device)
        n_batches = -(-self.n_train // bs)
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(total=n_batches, desc=f"epoch {e}/{self.s['epochs']}", unit="batch",
                   leave=False, disable=None if self.progress else True,
                   file=sys.stderr)
        try:
            for b in range(n_batches):
                xb, yb = self._batch(self.x_train, self.y_train, perm[b * bs:(b + 1) * bs],
                                     None if flips is None else flips[b * bs:(b + 1) * bs])
                self.optimizer.zero_grad()
                with use_generator(self.dropout_gen):
                    logits = self.model(xb)
                loss_t = self.loss(logits, yb)
                loss = loss_t.item()
                if not math.isfinite(loss):
                    raise TrainingStopped(f"Epoch {e}, batch {b + 1}: invalid loss ({loss}), "
                                          "terminating training")
                loss_t.backward()
                self.optimizer.step()
                n = int(yb.shape[0])
                total_loss += loss * n
                correct = correct + (logits.argmax(1) == yb).sum()  # no sync on a GPU
                seen += n
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", refresh=False)
                bar.update(1)
        finally:
            bar.close()
        test_loss, test_acc, _ = self.evaluate(self.x_test, self.y_test)
        return {"epoch": e, "train_loss": total_loss / seen,
                "train_accuracy": int(correct) / seen,
                "test_loss": test_loss, "test_accuracy": test_acc,
                "seconds": round(time.perf_counter() - start, 3)}

    def evaluate(self, x, y):
        """(mean loss, accuracy, predicted classes as NumPy) in eval mode."""
        self.model.eval()
        total, preds = 0.0, []
        with no_grad():
            for b in range(0, len(y), EVAL_BATCH):
                xb, yb = self._batch(x, y, slice(b, b + EVAL_BATCH))
                logits = self.model(xb)
                total += self.loss(logits, yb).item() * int(yb.shape[0])
                preds.append(logits.argmax(1).numpy(force=True))
        self.model.train()
        pred = np.concatenate(preds)
        return total / len(pred), float((pred == A.to_numpy(y)).mean()), pred

    def save(self, out: str) -> str:
        path = os.path.join(out, "checkpoint.npz")
        checkpoint.save(path, self.model, arch=self.s["arch"], class_names=self.class_names,
                        image_size=self.s["image_size"], channels=self.s["channels"],
                        optimizer=self.optimizer, epoch=self.epoch_done, rng=self._rngs(),
                        settings=self.s, history=self.history)
        return path


# --------------------------------------------------------------------------- the command


def _settings(args, resume) -> dict:
    """The run's settings: the checkpoint's when resuming (a different value given on the
    command line is an error), else the arguments over DEFAULTS."""
    given = {k: getattr(args, k) for k in RUN_KEYS if getattr(args, k) is not None}
    if "data" in given:
        given["data"] = os.path.abspath(given["data"])
    if resume is None:
        s = dict(DEFAULTS, **given)
    else:
        s = dict(DEFAULTS, **{k: v for k, v in resume["settings"].items() if k in RUN_KEYS})
        for k, v in given.items():
            if k != "epochs" and v != s[k]:
                raise ValueError(f"--{k.replace('_', '-')} {v} differs from the checkpoint's "
                                 f"{s[k]}; a resumed run keeps its settings")
        s["epochs"] = given.get("epochs", s["epochs"])  # the stopped run's own total
        if s["epochs"] <= resume["epoch"]:
            raise ValueError(f"the checkpoint has finished {resume['epoch']} epochs; pass "
                             f"--epochs greater than {resume['epoch']} to continue")
    if not 0.0 < s["test_fraction"] < 1.0:
        raise ValueError(f"--test-fraction must be between 0 and 1, got {s['test_fraction']}")
    return s


@contextlib.contextmanager
def _threads(n: int, backend: str):
    """Use n threads in the kernels and torch inside the block; restore afterwards. BLAS
    gets n threads under the numpy backend (its convolutions are BLAS calls) and one
    otherwise: the Linear layers' small products gain nothing from more."""
    from threadpoolctl import threadpool_limits

    old = get_num_threads()
    set_num_threads(n)
    torch_old = None
    if backend == "torch":
        import torch
        torch_old = torch.get_num_threads()
        torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n if backend == "numpy" else 1):
            yield
    finally:
        set_num_threads(old)
        if torch_old is not None:
            import torch
            torch.set_num_threads(torch_old)


def _fit(args, log) -> int:
    resume = checkpoint.load(args.resume) if args.resume else None
    s = _settings(args, resume)
    backend, device = placement(args.backend, args.device)
    out = args.out or (os.path.dirname(os.path.abspath(args.resume)) if args.resume else "runs")
    os.makedirs(out, exist_ok=True)
    threads = args.threads or get_num_threads()
    progress = not args.no_progress
    with use_backend(backend), _threads(threads, backend):
        run = _Run(s, device, log, progress, resume)
        n_params = sum(int(np.prod(p.shape)) for p in run.model.parameters())
        skipped = sum(run.ds.skipped.values())
        log(f"data: {run.ds.source}: {run.n_train} train / {run.n_test} test images, "
            f"{s['channels']}x{s['image_size']}x{s['image_size']}, classes "
            f"{', '.join(map(data.printable, run.class_names))}"
            + (f"; skipped {skipped} unreadable files {run.ds.skipped}" if skipped else ""))
        opt = (f"Adam lr {s['lr']:g}" if s["optimizer"] == "adam"
               else f"SGD lr {s['lr']:g} momentum {s['momentum']:g}")
        log(f"model: {s['arch']} ({n_params:,} parameters, {s['dtype']}), {opt}, batch "
            f"{s['batch_size']}, seed {s['seed']}; backend {backend}"
            + (f" on {device}" if device else "") + f", {threads} threads")
        if resume is not None:
            log(f"resuming {args.resume} after epoch {run.epoch_done}")
        metrics_path = os.path.join(out, "metrics.json")
        last_ckpt = None
        start = time.perf_counter()
        stopped = None
        try:
            for e in range(run.epoch_done + 1, s["epochs"] + 1):
                h = run.epoch(e)
                run.history.append(h)
                run.epoch_done = e
                last_ckpt = run.save(out)
                _write_json(metrics_path, _metrics(run, s, backend, device, threads))
                log(f"epoch {e:>{len(str(s['epochs']))}}/{s['epochs']}  train loss "
                    f"{h['train_loss']:.4f}  train acc {100 * h['train_accuracy']:6.2f}%  "
                    f"test loss {h['test_loss']:.4f}  test acc {100 * h['test_accuracy']:6.2f}%"
                    f"  {h['seconds']:.1f} s")
        except TrainingStopped as e:
            stopped = str(e)
        elapsed = time.perf_counter() - start
        if stopped:
            where = (f"the last good checkpoint is {last_ckpt} (epoch {run.epoch_done})"
                     if last_ckpt else
                     (f"the last good checkpoint is {args.resume}" if args.resume
                      else "no checkpoint was written"))
            print(f"{PROG}: {stopped}; {where}", file=sys.stderr)
            return 1
        _, acc, pred = run.evaluate(run.x_test, run.y_test)
        cm = confusion_matrix(A.to_numpy(run.y_test), pred, len(run.class_names))
        _write_json(metrics_path, _metrics(run, s, backend, device, threads, cm))
        log(f"trained {s['epochs'] - (resume['epoch'] if resume else 0)} epochs in "
            f"{elapsed:.1f} s")
        log(f"test accuracy: {100 * acc:.2f}% ({int(np.trace(cm))}/{run.n_test})")
        log("confusion matrix (rows: true class, columns: predicted class):")
        log(format_confusion(cm, [data.printable(n) for n in run.class_names]))
        png = os.path.join(out, "curves.png")
        wrote = [last_ckpt or "(no new checkpoint)", metrics_path]
        if plot_curves(run.history, png):
            wrote.append(png)
        else:
            log("matplotlib is not installed: curves.png skipped (pip install cnnlab[plot])")
        log("wrote " + ", ".join(wrote))
    return 0


def _metrics(run, s, backend, device, threads, cm=None) -> dict:
    out = {"settings": dict(s, backend=backend, device=device, threads=threads),
           "class_names": run.class_names, "n_train": run.n_train, "n_test": run.n_test,
           "skipped_files": run.ds.skipped, "epochs": run.history}
    if cm is not None:
        out["confusion_matrix"] = cm.tolist()
        out["test_accuracy"] = float(np.trace(cm) / cm.sum())
    return out


def main(argv=None, log=None) -> int:
    """Run the command; returns the exit status (errors: one line on stderr)."""
    args = build_parser().parse_args(argv)
    log = log or (lambda text: print(text, flush=True))
    try:
        return _fit(args, log)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError, ImportError) as e:
        print(f"{PROG}: error: {data.printable(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
