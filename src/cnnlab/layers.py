"""Layers with ``torch.nn``'s names, constructor arguments, defaults and reprs.

How the pieces fit::

    Parameter          .data (the array), .grad (None until a backward), .requires_grad
    Layer              forward(x) -> y, caching what its backward needs
                       backward(grad_output) -> grad_input, adding to each Parameter's .grad
                       parameters(), named_parameters(), train()/eval(), zero_grad(), to()
    Conv2d, ...        forward/backward are calls of cnnlab.functional (the ops and their
                       *_backward twins); Linear, ReLU, Flatten, Dropout are a line or two
    Sequential         layers in a list: forward in order, backward in reverse
    CrossEntropyLoss   forward(logits (N, K), target (N,)) -> mean loss; backward() -> dlogits

Arrays are NumPy arrays (computed by the selected backend, "cython" or "numpy") or torch
tensors on any device (computed by the torch twin): a layer's parameters and the activations
it sees must be of one family, which ``Layer.to(device)`` arranges. There is no autograd:
each layer's backward is written out, and gradients accumulate in ``.grad`` as in torch
until ``zero_grad()``. Initialisation is torch's (kaiming_uniform with a=sqrt(5), i.e.
U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias), drawn from a seeded NumPy
``Generator``, so ``state_dict()`` copies one to one into the torch layer of the same name.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from . import _array as A
from . import functional as F
from ._checks import ArgumentError, DtypeError, _pair

__all__ = ["Parameter", "Layer", "Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d",
           "ReLU", "Flatten", "Linear", "Dropout", "Sequential", "CrossEntropyLoss",
           "log_softmax", "softmax"]


def _rng(rng):
    """A NumPy Generator from a Generator, an int seed or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


class Parameter:
    """A trainable array: ``data`` (NumPy array or torch tensor), ``grad`` (same shape, or
    None) and ``requires_grad``. ``np.asarray(p)``, ``p.shape``, ``p[i]`` read ``data``."""

    __slots__ = ("data", "grad", "requires_grad")

    def __init__(self, data, requires_grad: bool = True):
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)

    shape = property(lambda self: tuple(self.data.shape))
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)

    def numpy(self) -> np.ndarray:
        """The values as a NumPy array (copied from the device for a tensor)."""
        return A.to_numpy(self.data)

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __getitem__(self, index):
        return self.data[index]

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        return f"Parameter containing:\n{self.data!r}"


def _uniform_init(shape, fan_in, rng, device, dtype):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as torch's default init (0 when fan_in is 0)."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    values = rng.uniform(-bound, bound, size=shape)
    return Parameter(A.convert(values, device, np.float32 if dtype is None else dtype))


def _accumulate(param, grad):
    if param is not None and param.requires_grad:
        param.grad = grad if param.grad is None else param.grad + grad


# --------------------------------------------------------------------------- base


class Layer:
    """Base class: ``forward``, ``backward``, parameters, train/eval mode, ``to``.

    A subclass lists its Parameter attributes in ``_param_names`` and, if it holds layers,
    returns them from ``named_children``; everything else here then works for it.
    """

    _param_names: tuple = ()

    def __init__(self):
        self.training = True

    # -- computation
    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad_output):
        raise NotImplementedError

    def __call__(self, *args):
        return self.forward(*args)

    def _cached(self, name):
        value = getattr(self, name, None)
        if value is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before forward()")
        return value

    # -- structure
    def named_children(self):
        return []

    def named_layers(self, prefix: str = ""):
        """(name, layer) for this layer ("" for itself) and every layer inside it."""
        yield prefix.rstrip("."), self
        for name, child in self.named_children():
            yield from child.named_layers(f"{prefix}{name}.")

    def named_parameters(self, prefix: str = ""):
        """(name, Parameter) pairs, named as torch's ``state_dict`` keys ("0.weight")."""
        for name in self._param_names:
            p = getattr(self, name)
            if p is not None:
                yield prefix + name, p
        for name, child in self.named_children():
            yield from child.named_parameters(f"{prefix}{name}.")

    def parameters(self) -> list:
        return [p for _, p in self.named_parameters()]

    # -- state
    def train(self, mode: bool = True):
        self.training = bool(mode)
        for _, child in self.named_children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device=None, dtype=None):
        """Move the parameters: ``device`` "numpy" (NumPy arrays), or a torch device ("cpu",
        "cuda", ...) for tensors; None keeps each where it is. ``dtype`` casts
        (float32/float64). Gradients are dropped. Returns self."""
        for p in self.parameters():
            dev = device if device is not None else (p.data.device if A.is_tensor(p.data)
                                                     else None)
            p.data = A.convert(p.data, dev, dtype)
            p.grad = None
        return self

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Parameter values as NumPy copies, keyed like torch's ``state_dict``."""
        return OrderedDict((n, np.array(p.numpy(), copy=True))
                           for n, p in self.named_parameters())

    def load_state_dict(self, state) -> None:
        """Copy values (NumPy arrays or tensors) into the parameters, keeping each
        parameter's family, device and dtype. Keys and shapes must match exactly."""
        params = OrderedDict(self.named_parameters())
        missing = [k for k in params if k not in state]
        unexpected = [k for k in state if k not in params]
        if missing or unexpected:
            raise ArgumentError(f"Error(s) in loading state_dict for {type(self).__name__}: "
                                f"missing keys {missing}, unexpected keys {unexpected}")
        for k, p in params.items():
            if tuple(state[k].shape) != p.shape:
                raise ArgumentError(f"size mismatch for {k}: copying a param with shape "
                                    f"{tuple(state[k].shape)}, the shape in current model is "
                                    f"{p.shape}")
        for k, p in params.items():
            dev = p.data.device if A.is_tensor(p.data) else None
            p.data = A.convert(state[k], dev, A.dtype_name(p.data))
            p.grad = None

    # -- repr, as torch's Module.__repr__
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        children = [f"({name}): " + repr(child).replace("\n", "\n  ")
                    for name, child in self.named_children()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not children:
            return head + ")"
        return head + "\n  " + "\n  ".join(children) + "\n)"


# --------------------------------------------------------------------------- convolutions


class _ConvBase(Layer):
    _param_names = ("weight", "bias")

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                 groups, bias, padding_mode, transposed, fan_in_dim, rng, device, dtype):
        super().__init__()
        if padding_mode != "zeros":
            raise ArgumentError(f"padding_mode={padding_mode!r} is not supported; cnnlab pads "
                                "with zeros only")
        if groups <= 0:
            raise ArgumentError("groups must be a positive integer")
        if in_channels % groups != 0:
            raise ArgumentError("in_channels must be divisible by groups")
        if out_channels % groups != 0:
            raise ArgumentError("out_channels must be divisible by groups")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = padding if isinstance(padding, str) else _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        self.groups = int(groups)
        self.padding_mode = padding_mode
        # weight (C_out, C_in/groups, kH, kW); transposed: (C_in, C_out/groups, kH, kW)
        shape = ((in_channels, out_channels // groups) if transposed
                 else (out_channels, in_channels // groups)) + self.kernel_size
        fan_in = shape[fan_in_dim] * self.kernel_size[0] * self.kernel_size[1]
        rng = _rng(rng)
        self.weight = _uniform_init(shape, fan_in, rng, device, dtype)
        self.bias = _uniform_init((out_channels,), fan_in, rng, device, dtype) if bias else None
        self._input = None

    def _repr_common(self, extra=()):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        for text in extra:
            s += text
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv2d(_ConvBase):
    """2-D convolution (cross-correlation), as ``torch.nn.Conv2d``.

    weight (C_out, C_in/groups, kH, kW), bias (C_out,). forward: x (N, C_in, H, W) ->
    (N, C_out, H_out, W_out); backward: grad (N, C_out, H_out, W_out) -> (N, C_in, H, W).
    ``rng`` (a seed or a NumPy Generator) draws the initial values.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", device=None,
                 dtype=None, *, rng=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, False, 1, rng, device, dtype)

    def _args(self):
        return self.stride, self.padding, self.dilation, self.groups

    def forward(self, x):
        self._input = x
        return F.conv2d(x, self.weight.data, None if self.bias is None else self.bias.data,
                        *self._args())

    def backward(self, grad_output):
        gx, gw, gb = F.conv2d_backward(grad_output, self._cached("_input"), self.weight.data,
                                       *self._args())
        _accumulate(self.weight, gw)
        _accumulate(self.bias, gb)
        return gx

    def extra_repr(self):
        return self._repr_common()


class ConvTranspose2d(_ConvBase):
    """2-D transposed convolution, as ``torch.nn.ConvTranspose2d``.

    weight (C_in, C_out/groups, kH, kW), bias (C_out,). forward: x (N, C_in, H, W) ->
    (N, C_out, H_out, W_out), H_out = (H - 1)*stride - 2*padding + dilation*(kH - 1)
    + output_padding + 1.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 device=None, dtype=None, *, rng=None):
        if isinstance(padding, str):
            raise ArgumentError(f"Invalid padding string: {padding!r}; ConvTranspose2d takes "
                                "an int or a pair")
        # torch computes fan_in from weight.size(1) = C_out/groups for transposed convs
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, True, 1, rng, device, dtype)
        self.output_padding = _pair(output_padding, "output_padding")

    def _args(self):
        return self.stride, self.padding, self.output_padding, self.groups, self.dilation

    def forward(self, x):
        self._input = x
        return F.conv_transpose2d(x, self.weight.data,
                                  None if self.bias is None else self.bias.data, *self._args())

    def backward(self, grad_output):
        gx, gw, gb = F.conv_transpose2d_backward(grad_output, self._cached("_input"),
                                                 self.weight.data, *self._args())
        _accumulate(self.weight, gw)
        _accumulate(self.bias, gb)
        return gx

    def extra_repr(self):
        extra = [f", output_padding={self.output_padding}"] \
            if self.output_padding != (0, 0) else []
        return self._repr_common(extra)


# --------------------------------------------------------------------------- pooling


class MaxPool2d(Layer):
    """2-D max pooling, as ``torch.nn.MaxPool2d`` (stride defaults to kernel_size).

    forward: (N, C, H, W) -> (N, C, H_out, W_out); backward sends each gradient to the
    first maximum of its window, using the indices the forward found.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 return_indices=False, ceil_mode=False):
        super().__init__()
        if return_indices:
            raise ArgumentError("MaxPool2d(return_indices=True) is not supported by the layer; "
                                "use cnnlab.functional.max_pool2d(..., return_indices=True)")
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = False, ceil_mode
        self._input = self._indices = None

    def _args(self):
        return self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode

    def forward(self, x):
        y, self._indices = F.max_pool2d(x, *self._args(), return_indices=True)
        self._input = x
        return y

    def backward(self, grad_output):
        return F.max_pool2d_backward(grad_output, self._cached("_input"), *self._args(),
                                     indices=self._indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Layer):
    """2-D average pooling, as ``torch.nn.AvgPool2d``: (N, C, H, W) -> (N, C, H_out, W_out)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override
        self._input = None

    def _args(self):
        return (self.kernel_size, self.stride, self.padding, self.ceil_mode,
                self.count_include_pad, self.divisor_override)

    def forward(self, x):
        self._input = x
        return F.avg_pool2d(x, *self._args())

    def backward(self, grad_output):
        return F.avg_pool2d_backward(grad_output, self._cached("_input"), *self._args())

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


# --------------------------------------------------------------------------- the rest


class ReLU(Layer):
    """max(x, 0), element-wise; any shape. The gradient passes where x > 0."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace  # accepted for torch's signature; cnnlab never overwrites x
        self._mask = None

    def forward(self, x):
        self._mask = x > 0
        return A.relu(x)

    def backward(self, grad_output):
        return grad_output * self._cached("_mask")

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class Flatten(Layer):
    """Flattens dims ``start_dim..end_dim``: (N, C, H, W) -> (N, C*H*W) by default."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim
        self._shape = None

    def forward(self, x):
        shape = tuple(x.shape)
        self._shape = shape
        start = self.start_dim % len(shape)
        end = self.end_dim % len(shape)
        return x.reshape(shape[:start] + (-1,) + shape[end + 1:])

    def backward(self, grad_output):
        return grad_output.reshape(self._cached("_shape"))

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Linear(Layer):
    """y = x @ weight.T + bias, as ``torch.nn.Linear``.

    weight (out_features, in_features), bias (out_features,); x (N, in_features) ->
    (N, out_features).
    """

    _param_names = ("weight", "bias")

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None, *, rng=None):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        rng = _rng(rng)
        self.weight = _uniform_init((out_features, in_features), in_features, rng, device, dtype)
        self.bias = _uniform_init((out_features,), in_features, rng, device, dtype) \
            if bias else None
        self._input = None

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ArgumentError(f"mat1 and mat2 shapes cannot be multiplied "
                                f"({'x'.join(str(int(s)) for s in x.shape)} and "
                                f"{self.in_features}x{self.out_features})")
        if A.dtype_name(x) != A.dtype_name(self.weight.data):
            raise DtypeError(f"mat1 and mat2 must have the same dtype, but got "
                             f"{A.dtype_name(x)} and {A.dtype_name(self.weight.data)}")
        self._input = x
        y = x @ self.weight.data.T
        if self.bias is not None:
            y = y + self.bias.data
        return y

    def backward(self, grad_output):
        x = self._cached("_input")
        _accumulate(self.weight, grad_output.T @ x)
        _accumulate(self.bias, None if self.bias is None else A.sum_axis(grad_output, 0))
        return grad_output @ self.weight.data

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Dropout(Layer):
    """Zeroes each element with probability ``p`` in training, scaling the rest by
    1/(1-p); the identity in eval mode. Any shape.

    The mask comes from ``rng`` (a NumPy Generator, seedable and saved in checkpoints);
    for tensors it seeds a torch generator on the tensor's device, so no mask is copied.
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, *, rng=None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ArgumentError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.inplace = float(p), inplace
        self.rng = _rng(rng)
        self._mask = None

    def _keep(self, x):
        if A.is_tensor(x):
            import torch
            gen = torch.Generator(device=x.device)
            gen.manual_seed(int(self.rng.integers(2**63)))
            u = torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype)
            return (u >= self.p).to(x.dtype)
        u = self.rng.random(x.shape).astype(x.dtype, copy=False)
        return (u >= self.p).astype(x.dtype)

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self._mask = 1.0
            return x
        if self.p == 1.0:
            self._mask = 0.0
            return x * 0.0
        self._mask = self._keep(x) / (1.0 - self.p)  # in x's dtype
        return x * self._mask

    def backward(self, grad_output):
        return grad_output * self._cached("_mask")

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Sequential(Layer):
    """Layers applied in order; ``layers`` is the list. ``model[i]``, ``len(model)``."""

    def __init__(self, *layers):
        super().__init__()
        self.layers = list(layers)

    def named_children(self):
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def append(self, layer):
        self.layers.append(layer)
        return self

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_output):
        for layer in reversed(self.layers):
            grad_output = layer.backward(grad_output)
        return grad_output


def log_softmax(x):
    """log softmax over the last axis of (N, K) scores, as ``x - max - log(sum(exp(x - max)))``
    (no overflow, no log(0))."""
    z = x - A.amax(x, -1, keepdims=True)
    return z - A.log(A.sum_axis(A.exp(z), -1, keepdims=True))


def softmax(x):
    """Class probabilities from (N, K) scores; rows sum to 1."""
    return A.exp(log_softmax(x))


class CrossEntropyLoss(Layer):
    """Softmax cross-entropy, as ``torch.nn.CrossEntropyLoss`` (class indices as targets).

    forward(input (N, K) logits, target (N,) int64 in [0, K)) -> the mean (or sum) of
    ``-log softmax(input)[n, target[n]]``, a 0-d array. It is computed as
    ``x - max - log(sum(exp(x - max)))``, which neither overflows nor loses small
    probabilities. backward(grad_output=1.0) -> (softmax(input) - onehot(target)) / N.
    """

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ArgumentError(f"{reduction} is not a valid value for reduction; cnnlab's "
                                "CrossEntropyLoss takes 'mean' or 'sum'")
        self.reduction = reduction
        self._cache = None

    def _check(self, input, target):
        if input.ndim != 2:
            raise ArgumentError(f"CrossEntropyLoss expects input of shape (N, K), got "
                                f"{tuple(input.shape)}")
        if tuple(target.shape) != (input.shape[0],):
            raise ArgumentError(f"Expected input batch_size ({input.shape[0]}) to match target "
                                f"batch_size ({target.shape[0] if target.ndim else 0}).")
        if not A.dtype_name(target).startswith(("int", "uint")):
            raise DtypeError(f"CrossEntropyLoss expects integer class indices as target, got "
                             f"dtype {A.dtype_name(target)}")
        if not A.is_tensor(target) and target.size:
            bad = target[(target < 0) | (target >= input.shape[1])]
            if bad.size:
                raise ArgumentError(f"Target {int(bad[0])} is out of bounds.")

    def forward(self, input, target):
        target = A.like(target, input)
        self._check(input, target)
        target = target.long() if A.is_tensor(target) else target.astype(np.int64, copy=False)
        n = input.shape[0]
        logp = log_softmax(input)
        rows = A.arange(n, input)
        total = -A.sum_axis(logp[rows, target], 0)
        self._cache = (logp, rows, target)
        return total / n if self.reduction == "mean" else total

    def backward(self, grad_output=1.0):
        logp, rows, target = self._cached("_cache")
        grad = A.exp(logp)
        grad[rows, target] -= 1.0
        scale = grad_output / logp.shape[0] if self.reduction == "mean" else grad_output
        return grad * scale

