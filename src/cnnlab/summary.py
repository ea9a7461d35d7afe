"""``summary(model, input_size)``: the table ``torchsummary.summary`` prints, for any Module.

As torchsummary 1.5.1 does: a forward hook on every module except containers
(``Sequential``, ``ModuleList``) and the model itself records, when that module's forward
ends, its output shape and the sizes of its ``weight`` and ``bias`` (so a custom block
gets a row after its children's, and a module without weight or bias counts 0). Rows are
``<Class>-<k>`` in the order the forwards end; the batch shows as ``batch_size`` (-1 by
default); "Forward/backward pass size" counts every output twice (values and gradients).
Sizes are in MiB of the model's dtype (4 bytes for float32, what torchsummary assumes).
The forward runs once on a batch of two zeros, in eval mode and under ``no_grad`` (no
dropout draw, no BatchNorm statistics update), on the model's device.

The table is printed once; the function returns None, so a notebook or a REPL shows it
once.
"""
from __future__ import annotations

import sys

import numpy as np

from . import autograd
from ._array import place
from .nn import Module, ModuleList, Sequential

__all__ = ["summary"]

_RULE = "-" * 64
_DOUBLE = "=" * 64


def _shape(output, batch_size):
    if isinstance(output, (list, tuple)):
        return [[-1] + list(o.shape)[1:] for o in output]
    return [batch_size] + list(output.shape)[1:]


def _rows(model: Module, inputs, batch_size):
    """[(name, output shape, params, trainable or None)] in the order the forwards end."""
    rows, handles = [], []

    def hook(module, args, output):
        params, trainable = 0, None
        weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
        if weight is not None and hasattr(weight, "shape"):
            params += int(np.prod(tuple(weight.shape)))
            trainable = weight.requires_grad
        if bias is not None and hasattr(bias, "shape"):
            params += int(np.prod(tuple(bias.shape)))
        rows.append((f"{type(module).__name__}-{len(rows) + 1}", _shape(output, batch_size),
                     params, trainable))

    for module in model.modules():
        if not isinstance(module, (Sequential, ModuleList)) and module is not model:
            handles.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with autograd.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return rows


def summary(model: Module, input_size, batch_size: int = -1, device=None, *,
            file=None) -> None:
    """Print torchsummary's table for ``model`` on inputs of shape ``input_size`` = (C, H, W)
    (the batch excluded; a list of shapes for a model with several inputs) to ``file``
    (standard output by default). ``device`` is accepted for torchsummary's signature; the
    input goes where the model's parameters are."""
    from .tensor import Tensor

    single = all(isinstance(s, int) for s in input_size)
    sizes = [tuple(input_size)] if single else [tuple(s) for s in input_size]
    ref = next(iter(model.parameters()), None)
    dtype = ref.dtype if ref is not None else None
    where = ref.device if ref is not None else "cpu"
    np_dtype = dtype.numpy if dtype is not None else np.float32
    inputs = [Tensor._make(place(np.zeros((2,) + s, np_dtype), where)) for s in sizes]
    rows = _rows(model, inputs, batch_size)

    itemsize = np.dtype(np_dtype).itemsize
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
    input_mb = abs(np.prod(sizes) * batch_size * itemsize / mib)
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
    (file if file is not None else sys.stdout).write("\n".join(lines) + "\n")
