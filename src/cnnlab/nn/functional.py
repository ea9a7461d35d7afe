"""``cnnlab.nn.functional``: torch.nn.functional's ops on Tensors, with autograd.

Each function checks what torch checks here (reductions, target shapes and dtypes, dropout
probability, ...) and calls one Function of ``cnnlab._ops``; the kernels' own checks (in
``cnnlab._checks``, reached through ``cnnlab.functional``) cover shapes, strides and
padding. ``cnnlab.functional`` stays the array-level API (NumPy arrays and torch tensors,
explicit ``*_backward`` functions); this module is the one a model's ``forward`` uses.
"""
from __future__ import annotations

import warnings

import numpy as np

from .. import autograd
from .._array import ns, place
from .._ops import loss as L
from .._ops import nn as N
from .._ops import pointwise as P
from ..random import resolve
from ..tensor import Tensor

__all__ = ["conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
           "batch_norm", "linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax",
           "log_softmax", "cross_entropy", "nll_loss", "mse_loss",
           "binary_cross_entropy_with_logits", "dropout", "one_hot"]

_REDUCTIONS = ("none", "mean", "sum")


def _tensor(x):
    """``x`` as a Tensor (a NumPy array or torch tensor is wrapped, sharing memory)."""
    return x if isinstance(x, Tensor) else Tensor(x)


def _like(x, ref: Tensor):
    """A constant (Tensor, list, array) as an array of ``ref``'s family and device."""
    if x is None:
        return None
    if isinstance(x, Tensor):
        if type(x._data) is not type(ref._data):
            raise RuntimeError(f"Expected all tensors to be on the same device, but found at "
                               f"least two devices, {ref.device} and {x.device}!")
        return x
    return Tensor._make(place(np.asarray(x) if not hasattr(x, "device") else x, ref.device))


# --------------------------------------------------------------------------- layers


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution; input (N, C_in, H, W) or (C_in, H, W), weight (C_out,
    C_in/groups, kH, kW). See ``cnnlab.functional.conv2d``."""
    return N.Conv2d.apply(input, weight, bias, stride, padding, dilation, groups)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):
    """2-D transposed convolution; weight (C_in, C_out/groups, kH, kW)."""
    return N.ConvTranspose2d.apply(input, weight, bias, stride, padding, output_padding,
                                   groups, dilation)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-D max pooling; with ``return_indices`` also the int64 flat indices (h*W + w)."""
    y, idx = N.MaxPool2d.apply(input, kernel_size, stride, padding, dilation, ceil_mode)
    return (y, idx) if return_indices else y


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    return N.AvgPool2d.apply(input, kernel_size, stride, padding, ceil_mode,
                             count_include_pad, divisor_override)


def adaptive_avg_pool2d(input, output_size):
    """Average pooling to ``output_size`` (an int, a pair, None keeps that size) with
    torch's windows."""
    x = _tensor(input)
    if x.ndim not in (3, 4):
        raise ValueError(f"adaptive_avg_pool2d(): Expected 3D or 4D tensor, but got "
                         f"{tuple(x.shape)}")
    size = (output_size, output_size) if not isinstance(output_size, (tuple, list)) \
        else tuple(output_size)
    out = tuple(x.shape[-2 + i] if s is None else int(s) for i, s in enumerate(size))
    if min(out) < 1 and x.numel():
        raise RuntimeError(f"adaptive_avg_pool2d(): output_size must be positive, got {out}")
    return N.AdaptiveAvgPool2d.apply(x, out)


def linear(input, weight, bias=None):
    """``input @ weight.T + bias``; input (*, in_features), weight (out, in)."""
    return N.Linear.apply(input, weight, bias)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Normalise each channel (axis 1). Training: with the batch's mean and biased variance,
    and ``running_* = (1 - momentum) * running_* + momentum * batch_*`` (the unbiased
    variance), in place; else with ``running_mean``/``running_var``."""
    x = _tensor(input)
    if not training:
        if running_mean is None or running_var is None:
            raise RuntimeError("running_mean and running_var must be defined in evaluation "
                               "mode")
        return N.BatchNormEval.apply(x, running_mean._data, running_var._data, weight, bias,
                                     eps=eps)
    per_channel = x.numel() // max(int(x.shape[1]), 1) if x.ndim > 1 else 0
    if per_channel <= 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input "
                         f"size {x.shape}")
    y, mean, var = N.BatchNormTrain.apply(x, weight, bias, eps=eps)
    if running_mean is not None:
        with autograd.no_grad():
            running_mean.mul_(1 - momentum).add_(mean._data * momentum)
        if running_var is not None:
            unbiased = var._data * (per_channel / (per_channel - 1))
            with autograd.no_grad():
                running_var.mul_(1 - momentum).add_(unbiased * momentum)
    return y


# --------------------------------------------------------------------------- activations


def relu(input, inplace: bool = False):
    return P.Relu.apply(input)


def leaky_relu(input, negative_slope: float = 0.01, inplace: bool = False):
    return P.LeakyRelu.apply(input, negative_slope)


def sigmoid(input):
    return P.Sigmoid.apply(input)


def tanh(input):
    return P.Tanh.apply(input)


def _softmax_dim(ndim: int, name: str) -> int:
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call "
                  "to include dim=X as an argument.", stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input, dim=None, dtype=None):
    x = _tensor(input)
    if dtype is not None:
        x = x.to(dtype=dtype)
    return x.softmax(_softmax_dim(x.ndim, "softmax") if dim is None else dim)


def log_softmax(input, dim=None, dtype=None):
    x = _tensor(input)
    if dtype is not None:
        x = x.to(dtype=dtype)
    return x.log_softmax(_softmax_dim(x.ndim, "log_softmax") if dim is None else dim)


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False,
            generator=None):
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) in training;
    the identity otherwise. The mask is drawn from ``generator`` (default: cnnlab's): on
    the host for "cpu" tensors, on the device (a torch generator seeded from it) for the
    torch twin."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    x = _tensor(input)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    gen = resolve(generator)
    a = x._data
    if isinstance(a, np.ndarray):
        keep = gen.uniform(0.0, 1.0, a.shape, a.dtype) >= p
        mask = keep.astype(a.dtype) * a.dtype.type(1.0 / (1.0 - p))
    else:
        import torch
        device_gen = torch.Generator(device=a.device)
        device_gen.manual_seed(int(gen.integers(0, 2 ** 63 - 1, ())))
        u = torch.rand(a.shape, generator=device_gen, device=a.device, dtype=a.dtype)
        mask = (u >= p).to(a.dtype) * (1.0 / (1.0 - p))
    return P.Mul.apply(x, mask)


# --------------------------------------------------------------------------- losses


def _reduction(reduction: str, size_average=None, reduce=None) -> str:
    if size_average is not None or reduce is not None:  # torch's legacy arguments
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else "mean" if size_average else "sum"
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


def _class_target(input: Tensor, target, name: str):
    """The class-index target as an int64 Tensor of input's family, its shape checked."""
    t = _like(target, input)
    if t.dtype.is_floating_point or t.dtype.name == "bool":
        raise RuntimeError(f"expected scalar type Long but found "
                           f"{t.dtype.name.capitalize()}")
    if t.dtype.name != "int64":
        t = t.long()
    expected = (tuple(input.shape[:1]) + tuple(input.shape[2:])) if input.ndim > 1 else ()
    if input.ndim >= 1 and t.ndim >= 1 and input.ndim > 1 and t.shape[0] != input.shape[0]:
        raise ValueError(f"Expected input batch_size ({input.shape[0]}) to match target "
                         f"batch_size ({t.shape[0]}).")
    if tuple(t.shape) != expected:
        raise RuntimeError(f"{name}: expected target of size {list(expected)}, got "
                           f"{list(t.shape)}")
    return t


def _weight(weight, input: Tensor, n_classes: int):
    if weight is None:
        return None
    w = _like(weight, input)
    if tuple(w.shape) != (n_classes,):
        raise RuntimeError(f"weight tensor should be defined either for all {n_classes} "
                           f"classes or no classes but got weight tensor of shape: "
                           f"{list(w.shape)}")
    return w._data if w.dtype == input.dtype else ns(w._data).astype(w._data, input.dtype)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index: int = -100,
                  reduce=None, reduction: str = "mean", label_smoothing: float = 0.0):
    """Softmax cross-entropy of logits ``input`` (N, C) or (N, C, d...) or (C,) and a
    ``target`` of class indices (N,) / (N, d...) / () or of class probabilities (the
    input's shape). As torch's, with ``weight`` per class, ``ignore_index``,
    ``label_smoothing`` and ``reduction`` "mean" (weighted), "sum" or "none"."""
    reduction = _reduction(reduction, size_average, reduce)
    x = _tensor(input)
    if x.ndim == 0:
        raise ValueError("cross_entropy(): input must have at least 1 dimension")
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: "
                           f"{label_smoothing}")
    n_classes = int(x.shape[1] if x.ndim > 1 else x.shape[0])
    t = _like(target, x)
    probs = t.dtype.is_floating_point
    if probs:
        if tuple(t.shape) != tuple(x.shape):
            raise RuntimeError(f"Expected target size {list(x.shape)}, got {list(t.shape)}")
        if t.dtype != x.dtype:
            t = t.to(dtype=x.dtype)
    else:
        t = _class_target(x, t, "cross_entropy")
    return L.CrossEntropy.apply(x, t, _weight(weight, x, n_classes),
                                ignore_index=ignore_index, reduction=reduction,
                                label_smoothing=float(label_smoothing), probs=probs)


def nll_loss(input, target, weight=None, size_average=None, ignore_index: int = -100,
             reduce=None, reduction: str = "mean"):
    """Negative log-likelihood of log-probabilities ``input`` (N, C, ...) at the class
    indices ``target``; as torch's."""
    reduction = _reduction(reduction, size_average, reduce)
    x = _tensor(input)
    if x.ndim == 0:
        raise ValueError("nll_loss(): input must have at least 1 dimension")
    n_classes = int(x.shape[1] if x.ndim > 1 else x.shape[0])
    t = _class_target(x, target, "nll_loss")
    return L.NLL.apply(x, t, _weight(weight, x, n_classes), ignore_index=ignore_index,
                       reduction=reduction)


def mse_loss(input, target, size_average=None, reduce=None, reduction: str = "mean"):
    """Mean (or sum, or none) of the squared differences; broadcasting with torch's
    warning when the shapes differ."""
    reduction = _reduction(reduction, size_average, reduce)
    x = _tensor(input)
    t = _like(target, x)
    if tuple(t.shape) != tuple(x.shape):
        warnings.warn(f"Using a target size ({t.shape}) that is different to the input size "
                      f"({x.shape}). This will likely lead to incorrect results due to "
                      f"broadcasting. Please ensure they have the same size.", stacklevel=2)
    return L.MSE.apply(x, t, reduction=reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,
                                     reduce=None, reduction: str = "mean", pos_weight=None):
    """Sigmoid + binary cross-entropy in one stable formula; ``target`` in [0, 1] of the
    input's shape, ``weight`` per element (broadcast), ``pos_weight`` per class."""
    reduction = _reduction(reduction, size_average, reduce)
    x = _tensor(input)
    t = _like(target, x)
    if tuple(t.shape) != tuple(x.shape):
        raise ValueError(f"Target size ({t.shape}) must be the same as input size "
                         f"({x.shape})")
    if t.dtype != x.dtype:
        t = t.to(dtype=x.dtype)
    w = None if weight is None else _like(weight, x)._data
    pw = None if pos_weight is None else _like(pos_weight, x)._data
    return L.BCEWithLogits.apply(x, t, w, pw, reduction=reduction)


def one_hot(tensor, num_classes: int = -1):
    """int64 (*, num_classes) with a 1 at each index of ``tensor`` (int64)."""
    t = _tensor(tensor)
    a = t._data
    n = int(a.max()) + 1 if num_classes == -1 else int(num_classes)
    eye = place(np.eye(n, dtype=np.int64), t.device)
    return Tensor._make(eye[a])

