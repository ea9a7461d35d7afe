"""``summary(model, input_size)``: the table ``torchsummary.summary`` prints, for cnnlab models.

One forward pass of a batch of 2 zeros (in eval mode, so no dropout draw consumes random
numbers) records each leaf layer's output shape; ``Sequential`` containers get no row of
their own, as in torchsummary. Rows are named ``<Class>-<k>`` in the order the layers run.
The figures follow torchsummary 1.5.1 exactly: the batch dimension shows as ``batch_size``
(-1 by default), "Forward/backward pass size" counts every output twice (values and
gradients), sizes are in MiB of the model's dtype (4 bytes for float32, as torchsummary
assumes).
"""
from __future__ import annotations

import sys

import numpy as np

from . import _array as A
from .layers import Sequential

__all__ = ["summary"]

_RULE = "-" * 64
_DOUBLE = "=" * 64
_STDOUT = object()


def _rows(model, x, batch_size):
    """[(name, output_shape, params, trainable or None)] for each leaf layer run."""
    rows = []

    def run(layer, x):
        if isinstance(layer, Sequential):
            for child in layer.layers:
                x = run(child, x)
            return x
        y = layer.forward(x)
        params = layer.parameters()
        weight = getattr(layer, "weight", None)
        trainable = weight.requires_grad if weight is not None else None
        rows.append((f"{type(layer).__name__}-{len(rows) + 1}",
                     [batch_size] + [int(s) for s in y.shape[1:]],
                     sum(int(np.prod(p.shape)) for p in params), trainable))
        return y

    run(model, x)
    return rows


def summary(model, input_size, batch_size: int = -1, *, file=_STDOUT) -> str:
    """Print (to ``file``, standard output by default; None prints nothing) and return
    torchsummary's table for ``model`` on inputs of shape ``input_size`` = (C, H, W), the
    batch excluded."""
    input_size = tuple(int(s) for s in input_size)
    params = model.parameters()
    ref = params[0].data if params else np.zeros(0, np.float32)
    x = A.like(np.zeros((2,) + input_size, dtype=A.dtype_name(ref)), ref)
    was_training = model.training
    model.eval()
    try:
        rows = _rows(model, x, batch_size)
    finally:
        model.train(was_training)

    itemsize = np.dtype(A.dtype_name(ref)).itemsize
    lines = [_RULE, "{:>20}  {:>25} {:>15}".format("Layer (type)", "Output Shape", "Param #"),
             _DOUBLE]
    total_params = trainable_params = total_output = 0
    for name, shape, n_params, trainable in rows:
        lines.append("{:>20}  {:>25} {:>15}".format(name, str(shape), f"{n_params:,}"))
        total_params += n_params
        total_output += int(np.prod(shape))
        if trainable:
            trainable_params += n_params
    mib = 1024 ** 2.
    input_mb = abs(np.prod(input_size) * batch_size * itemsize / mib)
    output_mb = abs(2. * total_output * itemsize / mib)
    params_mb = abs(total_params * itemsize / mib)
    lines += [_DOUBLE,
              f"Total params: {total_params:,}",
              f"Trainable params: {trainable_params:,}",
              f"Non-trainable params: {total_params - trainable_params:,}",
              _RULE,
              "Input size (MB): %0.2f" % input_mb,
              "Forward/backward pass size (MB): %0.2f" % output_mb,
              "Params size (MB): %0.2f" % params_mb,
              "Estimated Total Size (MB): %0.2f" % (params_mb + output_mb + input_mb),
              _RULE]
    text = "\n".join(lines) + "\n"
    if file is _STDOUT:
        file = sys.stdout  # looked up now: it may have been redirected since import
    if file is not None:
        file.write(text)
    return text
