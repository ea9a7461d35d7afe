"""Reverse-mode automatic differentiation: the graph a forward pass records, and the walk back.

How the pieces fit::

    Function           one differentiable op (see cnnlab/_ops/): a class with
                         forward(ctx, *args, **options) -> array, or (array, extras...)
                         backward(ctx, grad) -> one gradient (or None) per positional arg
                       on arrays (NumPy arrays or torch tensors), never on Tensors. The math
                       is a cnnlab.functional kernel (conv2d_backward, ...) or a few array
                       expressions; this module only keeps the books.
    Function.apply     unwraps the Tensor arguments, runs forward, wraps the result in a
                       Tensor. With grad mode on and an argument that requires grad, the
                       call's Context becomes the result's ``grad_fn``: a node of the graph.
                       Extra outputs (indices, batch statistics) are plain Tensors.
    Context (a node)   what one call's backward needs: ``save_for_backward(*arrays)`` /
                       ``saved_tensors`` (freed after a backward unless retain_graph),
                       attributes forward sets (shapes, options), ``needs_input_grad``, and
                       per positional argument its edge: the node that made it, the leaf
                       Tensor to accumulate into, or None.
    backward(t, g)     orders the nodes reachable from ``t`` (reverse topological), calls
                       each node's backward once with the sum of its output's gradients,
                       then adds each leaf's gradient into its ``.grad``. (The first one
                       also tunes glibc's malloc to keep freed activations: _malloc.py.)
    no_grad, enable_grad, set_grad_enabled, inference_mode: grad mode, per thread.

A node holds its inputs' nodes, not the input Tensors, so an activation is kept alive only
by the arrays a backward saved, as in torch.
"""
from __future__ import annotations

import functools
import threading

from ._array import as_array, ns
from ._malloc import keep_freed_memory

__all__ = ["Function", "Context", "backward", "no_grad", "enable_grad", "set_grad_enabled",
           "inference_mode", "is_grad_enabled"]

FREED = ("Trying to backward through the graph a second time (or directly access saved "
         "tensors after they have already been freed). Saved intermediate values of the graph "
         "are freed when you call .backward() or autograd.grad(). Specify retain_graph=True if "
         "you need to backward through the graph a second time or if you need to access saved "
         "tensors after calling backward.")

_Tensor = None  # cnnlab.tensor.Tensor, registered by that module (it sits on top of this one)


def _register_tensor_type(cls) -> None:
    global _Tensor
    _Tensor = cls


# --------------------------------------------------------------------------- grad mode


class _Mode(threading.local):
    enabled = True


_mode = _Mode()


def is_grad_enabled() -> bool:
    """True when ops record the graph (the default; False under ``no_grad``)."""
    return _mode.enabled


class _ModeContext:
    """A context manager that is also a decorator (a fresh context per decorated call)."""

    mode = True

    def __enter__(self):
        self._prev = _mode.enabled
        _mode.enabled = self.mode

    def __exit__(self, *exc):
        _mode.enabled = self._prev

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_ModeContext):
    """``with cnnlab.no_grad():`` (or ``@cnnlab.no_grad()``): ops record nothing, results do
    not require grad; for evaluation and for updating parameters by hand."""

    mode = False


class enable_grad(_ModeContext):
    """Turns recording back on inside a ``no_grad`` block."""

    mode = True


class inference_mode(no_grad):
    """As ``no_grad`` (cnnlab has no separate inference mode); ``inference_mode(False)``
    records."""

    def __init__(self, mode: bool = True):
        self.mode = not mode

    def __call__(self, fn):
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with inference_mode(not mode):
                return fn(*args, **kwargs)
        return wrapper


class set_grad_enabled(_ModeContext):
    """``set_grad_enabled(False)`` turns recording off now (as a call) or inside a ``with``
    block (restored on exit), as torch's."""

    def __init__(self, mode: bool):
        self._prev = _mode.enabled
        self.mode = bool(mode)
        _mode.enabled = self.mode

    def __enter__(self):
        pass

    def __call__(self, fn):
        mode = self.mode
        _mode.enabled = self._prev

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)
        return wrapper


# --------------------------------------------------------------------------- the graph


class Context:
    """The node of one recorded call (the ``ctx`` of forward/backward, the ``grad_fn`` of
    its result)."""

    def __init__(self):
        self._saved = ()
        self._fn = None
        self._edges = ()
        self.needs_input_grad = ()

    def save_for_backward(self, *arrays) -> None:
        """Keep arrays for backward; freed after the backward unless retain_graph."""
        self._saved = arrays

    @property
    def saved_tensors(self) -> tuple:
        if self._saved is None:
            raise RuntimeError(FREED)
        return self._saved

    @property
    def next_functions(self) -> tuple:
        """Per positional argument: (its node or "AccumulateGrad" for a leaf, or None, 0)."""
        return tuple((e if isinstance(e, Context) else
                      None if e is None else "AccumulateGrad", 0) for e in self._edges)

    def name(self) -> str:
        return f"{self._fn.__name__}Backward0"

    def __repr__(self):
        return f"<{self.name()} object at {id(self):#x}>"


class Function:
    """Base class of the differentiable ops; see the module docstring."""

    @staticmethod
    def forward(ctx, *args, **options):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **options):
        """Run the op on Tensors (and plain values); returns a Tensor, or a tuple of Tensors
        when forward returns extra outputs."""
        T = _Tensor
        ctx = Context()
        record = False
        if _mode.enabled:
            edges = []
            for a in args:
                if isinstance(a, T) and a._requires_grad:
                    edges.append(a._node or a)
                    record = True
                else:
                    edges.append(None)
            if record:
                ctx._fn = cls
                ctx._edges = edges
                ctx.needs_input_grad = tuple(e is not None for e in edges)
        out = cls.forward(ctx, *[a._data if isinstance(a, T) else a for a in args], **options)
        if type(out) is tuple:
            first = T._make(as_array(out[0]), ctx if record else None, record)
            return (first,) + tuple(T._make(as_array(o)) for o in out[1:])
        return T._make(as_array(out), ctx if record else None, record)


# --------------------------------------------------------------------------- the walk back


def _order(root: Context) -> list:
    """The nodes reachable from ``root``, each after every node that uses its output."""
    post, seen, stack = [], {root}, [(root, iter(root._edges))]
    while stack:
        node, edges = stack[-1]
        for e in edges:
            if type(e) is Context and e not in seen:
                seen.add(e)
                stack.append((e, iter(e._edges)))
                break
        else:
            stack.pop()
            post.append(node)
    post.reverse()
    return post


def _owned(g, given: set):
    """``g``, or a copy when it may be shared (a view, or an array already given to another
    leaf in this walk): a leaf's ``.grad`` must own its memory, since users and
    ``clip_grad_norm_`` modify it in place."""
    base = getattr(g, "base", None) if type(g).__module__ == "numpy" else g._base
    if base is not None or id(g) in given:
        g = ns(g).copy(g)
    given.add(id(g))
    return g


def _accumulate(leaf, g, given: set) -> None:
    """Add ``g`` into ``leaf.grad`` (in place when it exists, as torch does)."""
    d = leaf._data
    if g.dtype != d.dtype:
        g = ns(d).astype(g, d.dtype)
    if leaf._grad is None:
        leaf._grad = _Tensor._make(_owned(g, given))
        return
    current = leaf._grad._data
    try:
        current += g
    except (ValueError, TypeError, RuntimeError):  # read-only or another family: replace
        leaf._grad._data = current + g


def backward(root, gradient, retain_graph: bool = False) -> None:
    """Gradients of ``root`` (a Tensor) with ``gradient`` (an array of root's shape, family
    and dtype) into the ``.grad`` of every leaf that requires grad."""
    keep_freed_memory()
    given: set = set()
    node = root._node
    if node is None:
        _accumulate(root, gradient, given)
        return
    grads = {node: gradient}
    leaves: dict = {}
    for node in _order(node):
        g = grads.pop(node, None)
        if g is None:
            continue
        out = node._fn.backward(node, g)
        if type(out) is not tuple:
            out = (out,)
        for edge, gi in zip(node._edges, out):
            if edge is None or gi is None:
                continue
            if type(edge) is Context:
                prev = grads.get(edge)
                grads[edge] = gi if prev is None else prev + gi
            else:
                key = id(edge)
                prev = leaves.get(key)
                leaves[key] = (edge, gi if prev is None else prev[1] + gi)
        if not retain_graph:
            node._saved = None
    for leaf, g in leaves.values():
        _accumulate(leaf, g, given)
