"""cnnlab: 2-D convolutional networks written from scratch, and still fast.

    import numpy as np, cnnlab
    from cnnlab import functional as F
    y = F.conv2d(x, w, b, stride=1, padding=1)        # x (N, C_in, H, W), NCHW like torch
    gx, gw, gb = F.conv2d_backward(gy, x, w, padding=1)

Three twins run the same kernel contract: "cython" (compiled, OpenMP), "numpy" (pure
Python fallback) and "torch" (any device). See ARCHITECTURE.md.
"""
from ._checks import (ArgumentError, DtypeError, conv2d_output_shape,
                      conv_transpose2d_output_shape, pool2d_output_shape)
from ._dispatch import backends, get_backend, set_backend, use_backend
from ._parallel import get_num_threads, openmp_enabled, set_num_threads
from . import functional, layers, models, optim
from .summary import summary

__version__ = "0.1.0"

__all__ = [
    "ArgumentError", "DtypeError", "functional", "layers", "models", "optim", "summary",
    "backends", "get_backend", "set_backend", "use_backend",
    "get_num_threads", "set_num_threads", "openmp_enabled",
    "conv2d_output_shape", "conv_transpose2d_output_shape", "pool2d_output_shape",
]
