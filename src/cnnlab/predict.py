"""``python -m cnnlab.predict --checkpoint FILE IMAGE...``: class probabilities per image.

Each image is read with :func:`cnnlab.data.load_image` at the checkpoint's size and
channels (the training data's normalisation), the model's logits go through a softmax, and
one line per image gives the predicted class and every class's probability. A first line
says what the model was trained on (the checkpoint's ``training_data`` and image format);
an image far from those training images (``imagestats.unusual``: a colour photograph
given to a silhouette model) gets a warning on stderr naming what differs. An unreadable
image gets an error line on stderr; the others are still classified (exit status 1). A
checkpoint that cannot be used ends the command with one line and exit status 2.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from . import _array as A
from . import _cli, checkpoint, data, imagestats
from ._dispatch import placement, use_backend
from .autograd import no_grad
from .tensor import as_tensor

__all__ = ["predict_proba", "main"]

PROG = "python -m cnnlab.predict"
BATCH = 256


def predict_proba(model, images, batch_size: int = BATCH) -> np.ndarray:
    """Softmax probabilities (N, K) as NumPy for float images (N, C, S, S): a Tensor, a
    NumPy array or a torch tensor on the model's device; in batches, in eval mode."""
    model.eval()
    images = as_tensor(images)
    out = []
    with no_grad():
        for b in range(0, len(images), batch_size):
            out.append(model(images[b:b + batch_size]).softmax(1).numpy(force=True))
    return np.concatenate(out) if out else np.zeros((0, 0))


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Print each image's class probabilities under a "
                "checkpoint written by python -m cnnlab.train.")
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="a checkpoint written by python -m cnnlab.train")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--backend", choices=("cython", "numpy", "torch"),
                   help="kernels (default: cython where compiled, else numpy)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="torch device (implies torch)")
    return p


def trained_on(ckpt: dict) -> str:
    """One line: the data set, its size and the image format the model was trained on."""
    size, c = ckpt["image_size"], ckpt["channels"]
    image = f"{size}x{size} {'grayscale' if c == 1 else 'RGB'} images"
    info = ckpt.get("training_data")
    if info is None:
        return f"model trained on {image} (the checkpoint does not say which data set)"
    return f"model trained on {data.printable(info['name'])}: {info['images']:,} {image}"


def unlike_training(path, ckpt: dict, image) -> str:
    """'' or the ways ``image`` (uint8 (C, S, S), as the model sees it) differs from the
    training images, from the statistics stored in the checkpoint."""
    info = ckpt.get("training_data")
    if info is None:
        return ""
    colour = data.decode(path, ckpt["image_size"], 3) if ckpt["channels"] == 1 else None
    return imagestats.describe(imagestats.unusual(image, info["stats"], colour))


def _run(args) -> int:
    backend, device = placement(args.backend, args.device)   # arguments before files
    ckpt = checkpoint.load(args.checkpoint)
    print(trained_on(ckpt))
    images, paths, warnings, status = [], [], [], 0
    for path in args.images:
        try:
            image = data.decode(path, ckpt["image_size"], ckpt["channels"])
            warnings.append(unlike_training(path, ckpt, image))
            images.append(data.normalize(image))
            paths.append(data.printable(path))
        except data.DataError as e:
            print(f"{PROG}: {e}", file=sys.stderr)
            status = 1
    if not images:
        return 1
    x = np.stack(images).astype(ckpt["dtype"])
    model = ckpt["model"]
    if device is not None:  # a torch device, as train's --device
        model.to("torch:cpu" if device == "cpu" else device)
        x = A.convert(x, device)
    with use_backend(backend):
        probs = predict_proba(model, x)
    names = [data.printable(n) for n in ckpt["class_names"]]
    width = max(len(p) for p in paths)
    for path, p, warning in zip(paths, probs, warnings):
        best = int(np.argmax(p))
        detail = "  ".join(f"{n} {v:.4f}" for n, v in zip(names, p))
        print(f"{path:<{width}}  {names[best]:>{max(map(len, names))}} {100 * p[best]:5.1f}%"
              f"   ({detail})", flush=bool(warning))   # the warning follows its line
        if warning:
            print(f"{PROG}: warning: {path} is unlike the training images, so this "
                  f"prediction means little: {warning}", file=sys.stderr, flush=True)
    return status


def main(argv=None) -> int:
    """Run the command; returns the exit status (errors: one line on stderr, see _cli)."""
    args = build_parser().parse_args(argv)
    return _cli.run(PROG, lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
