"""``nn.Parameter``: a leaf Tensor that a Module registers as trainable."""
from __future__ import annotations

import numpy as np

from .._array import place
from .._types import as_device, as_dtype, get_default_dtype
from ..tensor import Tensor

__all__ = ["Parameter", "empty"]


class Parameter(Tensor):
    """A Tensor that requires grad (by default) and that a Module registers when it is
    assigned as an attribute. ``Parameter(t)`` shares ``t``'s memory, as torch's."""

    def __init__(self, data=None, requires_grad: bool = True):
        if data is None:
            data = np.zeros(0, get_default_dtype().numpy)
        super().__init__(data)
        self.requires_grad = requires_grad

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


def empty(shape, device=None, dtype=None, fill: float = 0.0) -> Tensor:
    """A Tensor of ``shape`` filled with ``fill``, in ``dtype`` (default: the default float
    dtype) on ``device`` (default "cpu"): storage for a layer's parameters and buffers."""
    d = get_default_dtype() if dtype is None else as_dtype(dtype)
    return Tensor._make(place(np.full(shape, fill, d.numpy), "cpu" if device is None
                              else as_device(device)))
