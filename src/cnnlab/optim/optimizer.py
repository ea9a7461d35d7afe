"""``optim.Optimizer``: parameter groups, per-parameter state and its (de)serialisation, as
torch's; a subclass writes only its update.

How the pieces fit::

    param_groups       [{"params": [Parameter, ...], "lr": ..., ...}, ...]; a group's
                       hyper-parameters default to the optimizer's ``defaults``
    state              {Parameter: {"step": int, buffer name: Tensor, ...}} (``defaultdict``)
    step(closure)      under no_grad, for every parameter with a .grad: one call of the
                       subclass's ``_update(p, grad, state, group)`` on the arrays (NumPy
                       or torch), which updates p in place, as torch does
    state_dict()       torch's layout: {"state": {index: {...}}, "param_groups": [{...,
                       "params": [indices]}]}, buffers as Tensors sharing memory, "step" as
                       a float32 Tensor; ``load_state_dict`` takes it back (from cnnlab or
                       from torch), casting buffers to each parameter's dtype and device.
"""
from __future__ import annotations

from collections import defaultdict

from .. import autograd
from .._array import ns, place
from ..tensor import Tensor, zero_grads

__all__ = ["Optimizer"]


class Optimizer:
    """Base class; see the module docstring. ``defaults`` maps hyper-parameter names to
    their values for groups that do not set them."""

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state = defaultdict(dict)
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            f"Tensors or dicts, but got {type(params).__name__}")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)
        self._opt_called = False

    def add_param_group(self, param_group: dict) -> None:
        group = dict(param_group)
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        params = [p[1] if isinstance(p, tuple) else p for p in params]  # named parameters
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params "
                                f"is {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        group["params"] = params
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if seen & {id(p) for p in params}:
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        zero_grads((p for g in self.param_groups for p in g["params"]), set_to_none)

    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()``'s loss
        when a closure (re-evaluating the model) is given."""
        loss = None
        if closure is not None:
            with autograd.enable_grad():
                loss = closure()
        self._opt_called = True
        with autograd.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p._grad is None:
                        continue
                    g = p._grad._data
                    if g.dtype != p._data.dtype:
                        raise RuntimeError(f"the gradient's dtype ({g.dtype}) differs from the "
                                           f"parameter's ({p._data.dtype})")
                    state = self.state[p]
                    state["step"] = state.get("step", 0) + 1
                    self._update(p._data, g, state, group)
        return loss

    def _update(self, p, grad, state: dict, group: dict) -> None:
        """Update the array ``p`` in place from ``grad``; ``state`` holds Tensors."""
        raise NotImplementedError

    @staticmethod
    def _buffer(state: dict, name: str, like, value=None):
        """The array of state[name], created (zeros, or a copy of ``value``) on first use."""
        t = state.get(name)
        if t is None:
            xp = ns(like)
            t = Tensor._make(xp.zeros_like(like) if value is None else xp.copy(value))
            state[name] = t
        return t._data

    # ------------------------------------------------------------------ (de)serialisation
    def state_dict(self) -> dict:
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                packed["params"].append(index[id(p)])
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state and self.state[p]:
                    state[index[id(p)]] = {
                        k: (Tensor._make(place([float(v)], "cpu", "float32").reshape(()))
                            if k == "step" else v) for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(own["params"])
               for g, own in zip(groups, self.param_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match "
                             "the size of optimizer's group")
        by_index = {}
        for g, own in zip(groups, self.param_groups):
            for i, p in zip(g["params"], own["params"]):
                by_index[i] = p
        state = defaultdict(dict)
        for i, entry in state_dict["state"].items():
            p = by_index.get(int(i))
            if p is None:
                continue
            state[p] = {k: self._cast(k, v, p) for k, v in entry.items()}
        for g, own in zip(groups, self.param_groups):
            own.update({k: (tuple(v) if isinstance(v, list) and k == "betas" else v)
                        for k, v in g.items() if k != "params"})
        self.state = state

    @staticmethod
    def _cast(key, value, p):
        """A state entry as this optimizer keeps it: "step" an int, buffers Tensors in the
        parameter's dtype and on its device, copied (torch shares a buffer that needs no
        cast; a copy keeps two optimizers, or a torch and a cnnlab one, apart)."""
        if key == "step":
            return int(float(value.item() if hasattr(value, "item") else value))
        if value is None or not hasattr(value, "shape"):
            return value
        data = value._data if isinstance(value, Tensor) else value
        if tuple(data.shape) != tuple(p.shape):
            raise ValueError(f"optimizer state {key!r} has shape {tuple(data.shape)}, its "
                             f"parameter {tuple(p.shape)}")
        placed = place(data, p.device, p.dtype)
        return Tensor._make(ns(placed).copy(placed))

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {group[k]}" for k in sorted(group) if k != "params"]
        return "\n".join(lines) + "\n)"
