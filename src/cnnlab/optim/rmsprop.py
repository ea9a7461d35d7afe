"""``optim.RMSprop``, torch's update formula."""
from __future__ import annotations

from .._array import ns
from .optimizer import Optimizer

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """torch's RMSprop, per parameter ``p`` with gradient ``g``::

        g = g + weight_decay * p
        s = alpha * s + (1 - alpha) * g * g
        a = sqrt(s - m * m) + eps, m = m + (1 - alpha) * (g - m)   (centered)
          = sqrt(s) + eps                                           (otherwise)
        b = momentum * b + g / a; p = p - lr * b                    (momentum > 0)
        p = p - lr * g / a                                          (otherwise)
    """

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False,
                 capturable: bool = False, foreach=None, maximize: bool = False,
                 differentiable: bool = False):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if eps < 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if alpha < 0.0:
            raise ValueError(f"Invalid alpha value: {alpha}")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered,
                                      capturable=capturable, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable))

    def _update(self, p, grad, state, group):
        alpha, eps, lr = group["alpha"], group["eps"], group["lr"]
        g = -grad if group["maximize"] else grad
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * p
        s = self._buffer(state, "square_avg", p)
        s *= alpha
        s += (1 - alpha) * g * g
        xp = ns(p)
        if group["centered"]:
            m = self._buffer(state, "grad_avg", p)
            m += (1 - alpha) * (g - m)
            avg = xp.sqrt(s + (-1) * m * m)
        else:
            avg = xp.sqrt(s)
        avg = avg + eps
        if group["momentum"] > 0:
            b = self._buffer(state, "momentum_buffer", p)
            b *= group["momentum"]
            b += g / avg
            p += -lr * b
        else:
            p += -lr * (g / avg)
