"""cnnlab: 2-D convolutional networks written from scratch, and still fast.

Two ways in. The array level, NumPy arrays in and out (and explicit backward functions)::

    from cnnlab import functional as F
    y = F.conv2d(x, w, b, stride=1, padding=1)        # x (N, C_in, H, W), NCHW like torch
    gx, gw, gb = F.conv2d_backward(gy, x, w, padding=1)

and torch's API, with autograd, modules and optimizers on the same kernels::

    import cnnlab as torch
    import cnnlab.nn as nn
    import cnnlab.optim as optim

Three twins run the kernel contract: "cython" (compiled, OpenMP), "numpy" (pure Python
fallback) and "torch" (any device). See ARCHITECTURE.md.
"""
from ._checks import (ArgumentError, DtypeError, conv2d_output_shape,
                      conv_transpose2d_output_shape, pool2d_output_shape)
from ._dispatch import backends, get_backend, set_backend, use_backend
from ._parallel import get_num_threads, openmp_enabled, set_num_threads
from ._types import Size, device, dtype, get_default_dtype, set_default_dtype
from .autograd import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .random import (Generator, default_generator, get_rng_state, initial_seed, manual_seed,
                     seed, set_rng_state)
from .tensor import Tensor, as_tensor, from_numpy, tensor
from ._functions import *  # noqa: F401,F403  zeros, randn, cat, max, argmax, exp, ...
from ._functions import __all__ as _function_names
from . import autograd, cuda, functional, nn, optim, random
from . import models
from .summary import summary

__version__ = "0.1.0"

from ._types import (bool_ as bool, float32, float64, int8, int16, int32,  # noqa: E402
                     int64, uint8)
float, double, long, int = float32, float64, int64, int32

__all__ = [
    "ArgumentError", "DtypeError", "functional", "models", "summary",
    "backends", "get_backend", "set_backend", "use_backend",
    "get_num_threads", "set_num_threads", "openmp_enabled",
    "conv2d_output_shape", "conv_transpose2d_output_shape", "pool2d_output_shape",
    "Tensor", "tensor", "as_tensor", "from_numpy", "Size", "device", "dtype",
    "get_default_dtype", "set_default_dtype", "no_grad", "enable_grad", "set_grad_enabled",
    "inference_mode", "is_grad_enabled", "Generator", "default_generator", "manual_seed",
    "seed", "initial_seed", "get_rng_state", "set_rng_state", "autograd", "cuda", "nn",
    "optim", "random", "float32", "float64", "float", "double", "int64", "long", "int32",
    "int", "int16", "int8", "uint8", "bool",
] + list(_function_names)
