"""``python -m cnnlab.show``: pictures of what a trained CNN sees.

    python -m cnnlab.show --checkpoint runs/exp/checkpoint.safetensors --out pictures/
    python -m cnnlab.show --checkpoint runs/exp/checkpoint.safetensors --image cat.png --out pictures/

How the pieces fit::

    checkpoint.load(FILE)            the network (eval mode), class names, image format
    filters.png                      first Conv2d's weights (C_out, C_in, kH, kW), one tile
                                     per filter (gray for 1 input channel, colour for 3)
    data.load_image(IMG, ...)        the image, normalised as in training -> (C, S, S)
    feature_maps(model, image)       the activations after each conv block (the last 4-D
                                     output before the next Conv2d or the classifier), seen
                                     by forward hooks on the model's leaf modules
    feature_maps_<k>.png             one tile per channel of block k
    probabilities.png                the image and a bar per class (predict.predict_proba)
    curves_figure(history)           loss and accuracy per epoch (cnnlab.loop.fit's rows)

Each ``*_figure`` function returns a matplotlib Figure made without pyplot (no global
state, nothing to close). Its ``_repr_png_`` draws it, so a figure that ends a Jupyter
cell shows inline, whether or not pyplot's inline backend was ever loaded; the command
saves the same figures as PNG files.

Every figure of tiles is a fixed grid of ``TILE``-inch tiles at ``DPI`` dots per inch, so a PNG's
size follows from the number of tiles (16 filters: a 4 x 4 grid, 400 x 450 pixels).
matplotlib is the optional extra ``plot``; without it the command exits with one line.
"""
from __future__ import annotations

import argparse
import functools
import io
import math
import os
import sys

import numpy as np

from . import _cli, checkpoint, data, predict
from ._checks import ArgumentError
from .autograd import no_grad
from .nn import Conv2d
from .tensor import as_tensor

__all__ = ["main", "build_parser", "first_conv", "feature_maps", "grid_shape",
           "filters_figure", "maps_figure", "probabilities_figure", "curves_figure",
           "save_pictures"]

PROG = "python -m cnnlab.show"
DPI = 100
TILE = 1.0      # inches per tile
TITLE = 0.5     # inches above the tiles for the title
NO_MATPLOTLIB = (f"{PROG}: matplotlib is not installed; install the plot extra: "
                 "pip install 'cnnlab[plot]'")


# --------------------------------------------------------------------------- the numbers


def first_conv(model) -> Conv2d:
    """The first Conv2d module of ``model`` (any nn.Module), in registration order."""
    for layer in model.modules():
        if isinstance(layer, Conv2d):
            return layer
    raise ArgumentError("the model has no Conv2d layer: there are no filters to show")


def _leaf_outputs(model, x) -> list:
    """(module, output) of every leaf module, in the order their forwards end (in eval
    mode; the model is left in the mode it was in)."""
    seen = []
    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(lambda m, args, out: seen.append((m, out)))
               for m in leaves]
    was_training = model.training
    try:
        model.eval()
        with no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return seen


def feature_maps(model, image) -> list:
    """Activations of one image after each conv block, as NumPy (C_k, H_k, W_k) arrays.

    image (C, S, S) as ``data.load_image`` returns it. A block starts at a Conv2d and ends
    with the last layer whose output is still 4-D before the next Conv2d or the classifier
    (so for Conv, ReLU, MaxPool: after the pooling).
    """
    maps, current, seen_conv = [], None, False
    for layer, x in _leaf_outputs(model, as_tensor(image)[None]):
        if isinstance(layer, Conv2d):
            if current is not None:
                maps.append(current)
            current, seen_conv = None, True
        if seen_conv and x.ndim == 4:
            current = x
        elif current is not None:
            maps.append(current)
            current = None
    if current is not None:
        maps.append(current)
    return [m.numpy(force=True)[0] for m in maps]


def grid_shape(n: int):
    """(rows, columns) of a near-square grid for n tiles: columns = ceil(sqrt(n))."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return -(-n // cols), cols


def _array(a) -> np.ndarray:
    """A NumPy float64 copy of an array, a cnnlab tensor or a torch tensor (detached, on
    the host)."""
    if hasattr(a, "detach"):
        a = a.detach()
    if not isinstance(a, np.ndarray) and hasattr(a, "numpy"):
        a = a.numpy(force=True)
    return np.asarray(a, dtype=np.float64)


def _unit(a):
    """a scaled to [0, 1] (a constant array -> 0.5)."""
    lo, hi = float(a.min()), float(a.max())
    return np.full(a.shape, 0.5) if hi == lo else (a - lo) / (hi - lo)


# --------------------------------------------------------------------------- the figures


@functools.lru_cache(maxsize=None)
def _figure_class():
    """matplotlib's Figure with ``_repr_png_`` (made on first use: matplotlib is optional)."""
    from matplotlib import figure

    class Figure(figure.Figure):       # its repr stays matplotlib's "<Figure size ...>"
        def _repr_png_(self) -> bytes:
            """The PNG that IPython shows for a figure ending a cell."""
            buffer = io.BytesIO()
            self.savefig(buffer, format="png", dpi=self.dpi)
            return buffer.getvalue()

    return Figure


def _new_figure(**kwargs):
    """A Figure with an Agg canvas (no pyplot, no global state) that Jupyter shows inline;
    ``kwargs`` go to matplotlib's Figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = _figure_class()(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _figure(rows, cols, title, width=None):
    """A Figure of rows x cols tiles of ``TILE`` inches under a title."""
    w = TILE * cols if width is None else width
    fig = _new_figure(figsize=(w, TILE * rows + TITLE), dpi=DPI)
    fig.suptitle(title, fontsize=9)
    top = TILE * rows / (TILE * rows + TITLE)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=top - 0.01, wspace=0.1,
                        hspace=0.1)
    return fig


def _tiles(fig, rows, cols, pictures, cmap):
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if k < len(pictures):
            ax.imshow(pictures[k], cmap=cmap, interpolation="nearest")


def filters_figure(weight, title="first layer filters"):
    """weight (C_out, C_in, kH, kW) (an array or a tensor, e.g. ``conv.weight``) -> a
    Figure with one tile per filter, each scaled to its own [min, max]; C_in = 3 is shown
    in colour, otherwise the mean over input channels."""
    w = _array(weight)
    if w.ndim != 4:
        raise ArgumentError(f"expected a weight of shape (C_out, C_in, kH, kW), got {w.shape}")
    if w.shape[1] == 3:
        pictures = [_unit(f).transpose(1, 2, 0) for f in w]
    else:
        pictures = [_unit(f.mean(axis=0)) for f in w]
    rows, cols = grid_shape(len(pictures))
    fig = _figure(rows, cols, f"{title}: {w.shape[0]} x {w.shape[2]}x{w.shape[3]}")
    _tiles(fig, rows, cols, pictures, "gray")
    return fig


def maps_figure(maps, title):
    """maps (C, H, W) (an array or a tensor) -> a Figure with one tile per channel
    (viridis, each autoscaled)."""
    maps = _array(maps)
    rows, cols = grid_shape(len(maps))
    fig = _figure(rows, cols, title)
    _tiles(fig, rows, cols, list(maps), "viridis")
    return fig


def probabilities_figure(image, probabilities, class_names):
    """The input image (C, S, S) with values in [0, 1] beside a bar chart of the class
    probabilities (K,) (arrays or tensors): a Figure of 3 x 3 tiles' height and 6 tiles'
    width."""
    probabilities = _array(probabilities).reshape(-1)
    fig = _figure(3, 6, "prediction: " + class_names[int(np.argmax(probabilities))])
    ax_img, ax_bar = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    img = _array(image)
    ax_img.imshow(img.transpose(1, 2, 0) if img.shape[0] == 3 else img[0], cmap="gray",
                  vmin=0.0, vmax=1.0)
    ax_img.set_axis_off()
    ax_bar.bar(range(len(class_names)), probabilities, color="tab:blue")
    ax_bar.set_xticks(range(len(class_names)), class_names, fontsize=8)
    ax_bar.set_ylim(0, 1.12)
    ax_bar.set_yticks([0, 0.25, 0.5, 0.75, 1])
    ax_bar.set_ylabel("probability", fontsize=8)
    ax_bar.tick_params(labelsize=8)
    for k, p in enumerate(probabilities):
        ax_bar.text(k, float(p) + 0.02, f"{p:.2f}", ha="center", fontsize=8)
    fig.subplots_adjust(left=0.05, right=0.97, bottom=0.12, wspace=0.35)
    return fig


def curves_figure(history):
    """Loss and accuracy per epoch, train and test, side by side: a 9 x 3.6-inch Figure.

    history: rows as ``cnnlab.loop.fit`` returns them (``epoch``, ``train_loss``,
    ``train_accuracy`` and, with a test loader, ``test_loss``, ``test_accuracy``;
    accuracies are fractions, drawn in %)."""
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    fig = _new_figure(figsize=(9, 3.6), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for ax, key, title in ((ax_loss, "loss", "cross-entropy loss"),
                           (ax_acc, "accuracy", "accuracy (%)")):
        scale = 100.0 if key == "accuracy" else 1.0
        for split, style in (("train", "o-"), ("test", "s--")):
            if history and f"{split}_{key}" in history[0]:
                ax.plot(epochs, [h[f"{split}_{key}"] * scale for h in history], style,
                        label=split, markersize=4)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def _save(fig, path) -> str:
    checkpoint.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI))
    return path


def save_pictures(checkpoint_path, out, image=None) -> list:
    """Write filters.png, and for an image feature_maps_<k>.png and probabilities.png, into
    the folder ``out`` (created). Returns the paths written."""
    ckpt = checkpoint.load(checkpoint_path)
    model = ckpt["model"]
    os.makedirs(out, exist_ok=True)
    written = [_save(filters_figure(first_conv(model).weight.numpy(force=True)),
                     os.path.join(out, "filters.png"))]
    if image is None:
        return written
    x = data.load_image(image, ckpt["image_size"], ckpt["channels"]).astype(ckpt["dtype"])
    for k, maps in enumerate(feature_maps(model, x), start=1):
        title = f"after conv block {k}: {maps.shape[0]} maps of {maps.shape[1]}x{maps.shape[2]}"
        written.append(_save(maps_figure(maps, title),
                             os.path.join(out, f"feature_maps_{k}.png")))
    probs = predict.predict_proba(model, x[None])[0]
    written.append(_save(probabilities_figure(x, probs, ckpt["class_names"]),
                         os.path.join(out, "probabilities.png")))
    return written


# --------------------------------------------------------------------------- the command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=(
        "Draw what a trained cnnlab network sees: its first layer's filters and, for an "
        "image, the feature maps after each conv block and the class probabilities."))
    p.add_argument("--checkpoint", required=True, metavar="FILE",
                   help="a checkpoint.safetensors written by python -m cnnlab.train")
    p.add_argument("--image", metavar="IMG", help="an image file to run through the network")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG files")
    return p


def main(argv=None) -> int:
    """Run the command; returns the exit status (errors: one line on stderr, see _cli)."""
    args = build_parser().parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(NO_MATPLOTLIB, file=sys.stderr)
        return 1

    def body():
        for path in save_pictures(args.checkpoint, args.out, args.image):
            print(path)
        return 0
    return _cli.run(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
