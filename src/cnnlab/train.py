"""``python -m cnnlab.train``: train the cats-vs-dogs classifier of the course lab.

How the pieces fit::

    main(argv)          argparse -> settings (a resumed run takes them from its checkpoint)
    _output_folder      --out (refused when it holds another run, unless --force), the
                        resumed checkpoint's folder, or a new runs/exp, runs/exp2, ...
    _Run                the data set (``cnnlab.data``: bundled or a --data folder) as two
                        ``DataLoader``s over ``_Images`` (uint8 on the device, batches
                        normalised and flipped there), the model, optimizer, cosine
                        scheduler, RNGs, history
      .fit(callbacks)   ``cnnlab.loop.fit`` (also ``cnnlab.train.fit``): PyTorch's loop with
                        TerminateOnNaN (a NaN/Inf loss, weight or optimizer buffer stops the
                        run before anything is saved) and Checkpoint (``checkpoint.save``
                        and metrics.json after every epoch, atomically)
    plot_curves         loss and accuracy per epoch -> curves.png (needs matplotlib)

The model is a ``cnnlab.nn`` Module (``cnnlab.models``), trained as PyTorch code is:
``optimizer.zero_grad()``, ``loss = criterion(model(x), y)``, ``loss.backward()``,
``optimizer.step()``. Randomness: one ``--seed`` feeds ``SeedSequence(seed).spawn``: the
train/test split, the initial weights (a ``cnnlab.Generator``), the loader's shuffling and
left-right flips (``--augment flip``; one ``cnnlab.Generator``), dropout (another, made the
default while the model runs). Both generators' states go into the checkpoint, and a resumed
run replays the scheduler's steps, so one epoch + ``--resume`` + one epoch equals two epochs
bit for bit. Ctrl-C names the checkpoint kept (the last finished epoch's) and the
``--resume`` command that continues it (exit status 130).
Errors end the command with one line on stderr and exit status 2 (arguments, an unusable
checkpoint) or 1 (data, settings, a stopped run).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import sys
import time
import warnings

import numpy as np

from . import _array as A
from . import _cli, checkpoint, data, imagestats, models, nn, optim, show
from ._dispatch import placement, use_backend
from ._parallel import get_num_threads, set_num_threads
from .loop import (Callback, Checkpoint, EarlyStopping, TerminateOnNaN, TrainingStopped,
                   evaluate, fit)
from .random import Generator, resolve
from .tensor import as_tensor
from .utils.data import DataLoader, Dataset

__all__ = ["main", "build_parser", "fit", "evaluate", "Callback", "TerminateOnNaN",
           "EarlyStopping", "Checkpoint", "TrainingStopped", "confusion_matrix",
           "plot_curves"]

PROG = "python -m cnnlab.train"
EVAL_BATCH = 256
DEFAULTS = dict(data=None, arch="lab", epochs=25, batch_size=32, lr=1e-3, optimizer="adam",
                momentum=0.9, weight_decay=0.0, image_size=28, channels=1, dtype="float32",
                seed=0, test_fraction=0.2, limit=None, augment="flip", schedule="cosine")
# Settings that define a run; a resumed run keeps the checkpoint's.
RUN_KEYS = tuple(DEFAULTS)
CHECKPOINT = "checkpoint.safetensors"   # the file in the run folder
RUNS = "runs"                           # numbered run folders go under it


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
    g.add_argument("--out", metavar="DIR", help=f"folder for {CHECKPOINT}, metrics.json, "
                   f"curves.png (default: a new numbered folder {RUNS}/exp, {RUNS}/exp2, ...; "
                   "when resuming, the checkpoint's folder)")
    g.add_argument("--force", action="store_true", help="let --out replace the run a "
                   "folder already holds")
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
    """Loss and accuracy per epoch (train and test; ``show.curves_figure``) -> PNG at
    ``path``. False (and nothing written) when matplotlib is not installed."""
    try:
        fig = show.curves_figure(history)
    except ImportError:
        return False
    checkpoint.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    return True


# --------------------------------------------------------------------------- a run


def _generator(seed_sequence) -> Generator:
    """A cnnlab.Generator seeded from a NumPy SeedSequence."""
    return Generator().manual_seed(int(seed_sequence.generate_state(1, np.uint64)[0]))


class _Images(Dataset):
    """uint8 images (N, C, H, W) and int64 labels (N,), on the run's device, as a Dataset.

    ``__getitems__(indices)`` (what the DataLoader calls) gives a whole batch at once:
    ``(images as a float Tensor of dtype scaled to [0, 1], labels as an int64 Tensor)``, with
    each image mirrored left-right with probability 1/2 when ``flip`` (drawn from the
    batch's own generator, which the DataLoader seeds from its ``generator``). The loader
    takes it as it is (``collate_fn=_as_batch``)."""

    def __init__(self, images, labels, dtype: str, flip: bool = False, train: bool = False):
        self.images, self.labels = images, labels
        self.dtype, self.flip, self.train = dtype, flip, train

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i):
        x, y = self.__getitems__([i])
        return x[0], y[0]

    def __getitems__(self, indices):
        idx = A.convert(np.asarray(indices, np.int64), _device_of(self.labels))
        x = self.images[idx]
        if self.flip:
            x = A.flip_where(x, A.convert(resolve().numpy.random(len(indices)) < 0.5,
                                          _device_of(self.labels)))
        return as_tensor(data.normalize(x, self.dtype)), as_tensor(self.labels[idx])


def _device_of(array):
    """The torch device of ``array``, or None for a NumPy array."""
    return getattr(array, "device", None) if A.is_tensor(array) else None


def _as_batch(batch):
    """collate_fn of the _Images loaders: ``__getitems__`` gave the batch already."""
    return batch


class _Run:
    """Everything one training run holds; see the module docstring."""

    def __init__(self, s: dict, device, log, progress: bool, resume=None):
        self.s, self.log, self.progress = s, log, progress
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
        self.ds, self.class_names = ds, ds.class_names
        self.n_train, self.n_test = len(y_train), len(ds.y_test)
        self.y_test = ds.y_test
        # The bundled silhouettes are gray at the source: their colour is known to be 0, so
        # predict can warn about a colour photo. (A --data folder read with one channel is
        # not decoded a second time in colour; its midtones etc. still guard predict.)
        gray_source = ds.source == data.BUNDLED_NAME and x_train.shape[1] == 1
        self.training_data = imagestats.training_data(
            ds.source, x_train, np.repeat(x_train, 3, axis=1) if gray_source else None)
        # The whole (uint8) data set goes to the device once; batches are taken there.
        self.shuffle_gen, self.dropout_gen = _generator(shuffle_seed), _generator(dropout_seed)
        self.train_loader = DataLoader(
            _Images(A.convert(x_train, device), A.convert(y_train, device), s["dtype"],
                    flip=s["augment"] == "flip", train=True),
            batch_size=s["batch_size"], shuffle=True, generator=self.shuffle_gen,
            collate_fn=_as_batch)
        self.test_loader = DataLoader(
            _Images(A.convert(ds.x_test, device), A.convert(ds.y_test, device), s["dtype"]),
            batch_size=EVAL_BATCH, collate_fn=_as_batch)

        self.model = models.build(s["arch"], s["channels"], s["image_size"],
                                  len(self.class_names), generator=_generator(init_seed),
                                  dtype=s["dtype"])
        self.history = []
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
        self.scheduler = self._scheduler()

    @property
    def epoch_done(self) -> int:
        return len(self.history)

    def _scheduler(self):
        """torch's CosineAnnealingLR over the run's epochs (None for a constant rate). A
        resumed run replays the steps of the epochs done, so its rates are a straight run's
        bit for bit."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.s["lr"]
            group.pop("initial_lr", None)
        if self.s["schedule"] == "constant":
            return None
        scheduler = optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=self.s["epochs"])
        with warnings.catch_warnings():   # "step() before optimizer.step()": a replay
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(self.epoch_done):
                scheduler.step()
        return scheduler

    def _rngs(self) -> dict:
        return {"shuffle": self.shuffle_gen, "dropout": self.dropout_gen}

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
            gen.numpy.bit_generator.state = ckpt["rng"][name]   # checked by checkpoint.load
        if len(ckpt["history"]) != ckpt["epoch"]:
            raise checkpoint.CheckpointError(
                f"checkpoint {ckpt['path']}: {len(ckpt['history'])} history rows for "
                f"{ckpt['epoch']} epochs")
        self.history = list(ckpt["history"])

    def fit(self, callbacks) -> list:
        """The epochs left, through :func:`cnnlab.loop.fit`."""
        return fit(self.model, self.train_loader, self.test_loader, self.optimizer,
                   self.s["epochs"], scheduler=self.scheduler, callbacks=callbacks,
                   history=self.history, generator=self.dropout_gen,
                   progress=None if self.progress else False, log=self.log)

    def evaluate(self):
        """(mean loss, accuracy, predicted classes as NumPy) on the test set."""
        return evaluate(self.model, self.test_loader, nn.CrossEntropyLoss())

    def save(self, out: str) -> str:
        path = os.path.join(out, CHECKPOINT)
        checkpoint.save(path, self.model, arch=self.s["arch"], class_names=self.class_names,
                        image_size=self.s["image_size"], channels=self.s["channels"],
                        optimizer=self.optimizer, epoch=self.epoch_done, rng=self._rngs(),
                        settings=self.s, history=self.history,
                        training_data=self.training_data)
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


def _numbered_folder(root: str = RUNS, name: str = "exp") -> str:
    """Create and return the first free ``root/exp``, ``root/exp2``, ``root/exp3``, ..."""
    os.makedirs(root, exist_ok=True)
    n = 1
    while True:
        path = os.path.join(root, name if n == 1 else f"{name}{n}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            n += 1


def _output_folder(args):
    """Where the run writes: --out (refused if it holds another run's checkpoint, unless
    --force), the resumed checkpoint's folder, or None: a new numbered folder under runs/,
    made once the run is ready to start (:func:`_numbered_folder`)."""
    own = os.path.dirname(os.path.abspath(args.resume)) if args.resume else None
    if args.out is None:
        return own
    if os.path.abspath(args.out) != own and not args.force:
        for name in (CHECKPOINT, "checkpoint.npz"):
            held = os.path.join(args.out, name)
            if os.path.exists(held):
                raise ValueError(f"--out {args.out} already holds a run ({held}); pass "
                                 f"--force to replace it, or --resume {held} to continue it")
    os.makedirs(args.out, exist_ok=True)
    return args.out


def _resume_command(path: str, args) -> str:
    """The command that continues the run saved at ``path`` on the same kernels."""
    words = [PROG, "--resume", path]
    for flag in ("backend", "device", "threads"):
        if getattr(args, flag) is not None:
            words += [f"--{flag}", str(getattr(args, flag))]
    return " ".join(shlex.quote(w) if i else w for i, w in enumerate(words))


def _finite_json(obj):
    """``obj`` with NaN/Inf floats replaced by None (strict JSON has no such numbers)."""
    if isinstance(obj, dict):
        return {k: _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _write_json(path, obj) -> None:
    """Strict JSON (non-finite numbers as null), written atomically."""
    text = json.dumps(_finite_json(obj), indent=2, allow_nan=False) + "\n"
    checkpoint.atomic_write(path, lambda f: f.write(text.encode()))


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
    resume = checkpoint.load(args.resume) if args.resume else None   # CheckpointError only
    s = _settings(args, resume)
    backend, device = placement(args.backend, args.device)
    out = _output_folder(args)
    threads = args.threads or get_num_threads()
    # NaN/Inf are reported by TerminateOnNaN in one line, not by NumPy's warnings
    with use_backend(backend), _threads(threads, backend), \
            np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        run = _Run(s, device, log, not args.no_progress, resume)
        out = out or _numbered_folder()
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
        first = run.epoch_done

        saved = {"epoch": first}

        def save(state):
            path = run.save(out)
            saved["epoch"] = run.epoch_done
            _write_json(metrics_path, _metrics(run, s, backend, device, threads))
            return path

        saver = Checkpoint(save)
        start = time.perf_counter()
        try:
            run.fit([TerminateOnNaN(), saver])      # the NaN check before the save
        except (TrainingStopped, KeyboardInterrupt) as e:
            kept = saver.last or args.resume
            where = (f"kept {kept} (epoch {saved['epoch']})" if kept
                     else "no checkpoint was written")
            if isinstance(e, TrainingStopped):
                print(f"{PROG}: {e}; {where}", file=sys.stderr)
                return 1
            print(f"{PROG}: interrupted; {where}" + (
                f"; continue with: {_resume_command(kept, args)}" if kept else ""),
                file=sys.stderr)
            return 130
        elapsed = time.perf_counter() - start
        _, acc, pred = run.evaluate()
        cm = confusion_matrix(run.y_test, pred, len(run.class_names))
        _write_json(metrics_path, _metrics(run, s, backend, device, threads, cm))
        log(f"trained {s['epochs'] - first} epochs in {elapsed:.1f} s")
        log(f"test accuracy: {100 * acc:.2f}% ({int(np.trace(cm))}/{run.n_test})")
        log("confusion matrix (rows: true class, columns: predicted class):")
        log(format_confusion(cm, [data.printable(n) for n in run.class_names]))
        png = os.path.join(out, "curves.png")
        wrote = [saver.last or "(no new checkpoint)", metrics_path]
        if plot_curves(run.history, png):
            wrote.append(png)
        else:
            log('matplotlib is not installed: curves.png skipped (pip install "cnnlab[plot]"; '
                'from a source folder: pip install ".[plot]")')
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
    """Run the command; returns the exit status (errors: one line on stderr, see _cli)."""
    args = build_parser().parse_args(argv)
    log = log or (lambda text: print(text, flush=True))
    return _cli.run(PROG, lambda: _fit(args, log))


if __name__ == "__main__":
    sys.exit(main())
