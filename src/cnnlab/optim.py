"""Optimizers ``SGD`` and ``Adam`` with ``torch.optim``'s arguments, defaults and formulas.

An optimizer holds a list of :class:`cnnlab.layers.Parameter` and, per parameter, a state
(step count and buffers of the parameter's family, device and dtype). ``step()`` updates
every parameter that has a ``.grad`` (others are skipped, as in torch); ``zero_grad()``
sets the gradients to None. Hyper-parameters live in ``param_groups[0]`` as in torch, so
``opt.param_groups[0]["lr"] = 1e-4`` changes the learning rate. ``state_dict()`` /
``load_state_dict()`` give NumPy copies for checkpoints (``cnnlab.checkpoint``).
"""
from __future__ import annotations

from . import _array as A
from ._checks import ArgumentError

__all__ = ["Optimizer", "SGD", "Adam"]


class Optimizer:
    """Base class: parameters, per-parameter state, ``zero_grad``, state (de)serialisation.

    A subclass defines ``_buffers`` (names of its per-parameter arrays) and ``_update``.
    """

    _buffers: tuple = ()

    def __init__(self, params, defaults: dict):
        params = list(params)
        if not params:
            raise ArgumentError("optimizer got an empty parameter list")
        if defaults["lr"] < 0.0:
            raise ArgumentError(f"Invalid learning rate: {defaults['lr']}")
        self.param_groups = [dict(defaults, params=params)]
        self.state = [dict(step=0) for _ in params]

    @property
    def params(self) -> list:
        return self.param_groups[0]["params"]

    @property
    def hyper(self) -> dict:
        return {k: v for k, v in self.param_groups[0].items() if k != "params"}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        group = self.hyper
        for p, state in zip(self.params, self.state):
            if p.grad is None:
                continue
            if A.dtype_name(p.grad) != A.dtype_name(p.data):
                raise ArgumentError(f"gradient dtype {A.dtype_name(p.grad)} differs from the "
                                    f"parameter's {A.dtype_name(p.data)}")
            state["step"] += 1
            p.data = self._update(p.data, p.grad, state, **group)

    def _update(self, param, grad, state, **hyper):
        raise NotImplementedError

    def state_dict(self) -> dict:
        """{"hyper": {...}, "state": [{"step": int, buffer: NumPy array or None}, ...]}."""
        return {"hyper": self.hyper,
                "state": [{k: (v if k == "step" or v is None else A.to_numpy(v).copy())
                           for k, v in s.items()} for s in self.state]}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyper-parameters and buffers (converted to each parameter's family,
        device and dtype). Shapes must match the parameters."""
        states = state_dict["state"]
        if len(states) != len(self.params):
            raise ArgumentError(f"optimizer state has {len(states)} parameters, the optimizer "
                                f"has {len(self.params)}")
        new = []
        for i, (p, s) in enumerate(zip(self.params, states)):
            entry = {"step": int(s["step"])}
            for name in self._buffers:
                v = s.get(name)
                if v is not None and tuple(v.shape) != p.shape:
                    raise ArgumentError(f"optimizer state {name} of parameter {i} has shape "
                                        f"{tuple(v.shape)}, the parameter {p.shape}")
                entry[name] = None if v is None else A.convert(
                    v, p.data.device if A.is_tensor(p.data) else None, A.dtype_name(p.data))
            new.append(entry)
        self.param_groups[0].update(state_dict["hyper"])
        self.state = new

    def __repr__(self):
        lines = [f"{type(self).__name__} (", "Parameter Group 0"]
        lines += [f"    {k}: {v}" for k, v in sorted(self.hyper.items())]
        return "\n".join(lines + [")"])


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as ``torch.optim.SGD``::

        g = grad + weight_decay * p
        b = g (first step) or momentum * b + (1 - dampening) * g
        g = g + momentum * b (nesterov) or b (momentum != 0)
        p = p - lr * g
    """

    _buffers = ("momentum_buffer",)

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        if momentum < 0.0:
            raise ArgumentError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ArgumentError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ArgumentError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))
        for s in self.state:
            s["momentum_buffer"] = None

    def _update(self, p, g, state, lr, momentum, dampening, weight_decay, nesterov):
        if weight_decay != 0:
            g = g + weight_decay * p
        if momentum != 0:
            buf = state["momentum_buffer"]
            buf = g if buf is None else buf * momentum + (1 - dampening) * g
            state["momentum_buffer"] = buf
            g = g + momentum * buf if nesterov else buf
        return p - lr * g


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (weight decay is L2, added to the gradient)::

        g = grad + weight_decay * p
        m = m + (1 - beta1) * (g - m)                 # torch's lerp
        v = beta2 * v + (1 - beta2) * g * g
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    With ``amsgrad`` the running maximum of v replaces v in the denominator.
    """

    _buffers = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False):
        if not 0.0 <= eps:
            raise ArgumentError(f"Invalid epsilon value: {eps}")
        for i, b in enumerate(betas):
            if not 0.0 <= b < 1.0:
                raise ArgumentError(f"Invalid beta parameter at index {i}: {b}")
        if weight_decay < 0.0:
            raise ArgumentError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad))
        for s in self.state:
            s.update(exp_avg=None, exp_avg_sq=None, max_exp_avg_sq=None)

    def _update(self, p, g, state, lr, betas, eps, weight_decay, amsgrad):
        beta1, beta2 = betas
        if weight_decay != 0:
            g = g + weight_decay * p
        if state["exp_avg"] is None:
            state["exp_avg"], state["exp_avg_sq"] = A.zeros_like(p), A.zeros_like(p)
        m = state["exp_avg"] + (1 - beta1) * (g - state["exp_avg"])
        v = state["exp_avg_sq"] * beta2 + (1 - beta2) * g * g
        state["exp_avg"], state["exp_avg_sq"] = m, v
        t = state["step"]
        step_size = lr / (1 - beta1 ** t)
        bc2_sqrt = (1 - beta2 ** t) ** 0.5
        if amsgrad:
            prev = state["max_exp_avg_sq"]
            v = v if prev is None else A.maximum(prev, v)
            state["max_exp_avg_sq"] = v
        denom = A.sqrt(v) / bc2_sqrt + eps
        return p - step_size * (m / denom)
