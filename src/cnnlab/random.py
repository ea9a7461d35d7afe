"""Random numbers as torch's API spells them: ``cnnlab.Generator``, ``cnnlab.manual_seed``.

A Generator wraps a NumPy ``PCG64`` bit generator: ``manual_seed(n)`` restarts it from n,
``get_state()`` / ``set_state()`` save and restore it exactly (a uint8 Tensor, as torch's
ByteTensor state), ``initial_seed()`` tells the seed. The default generator
(``cnnlab.default_generator``, seeded by ``cnnlab.manual_seed``) is what every draw uses
unless a ``generator=`` is given: parameter initialisation (``nn.init``), ``randn``,
``rand``, ``randint``, ``randperm``, dropout masks. ``use_generator(g)`` makes ``g`` the
default inside a block (how ``cnnlab.models`` builds a network from its own seed).

Draws are made on the host, in the requested dtype, and then placed on the device, so the
same seed gives the same values on every device (the values differ from torch's, whose
generator is another algorithm: compare with torch by loading weights, not by seeding).
"""
from __future__ import annotations

import contextlib
import contextvars
import secrets

import numpy as np

from . import autograd

__all__ = ["Generator", "default_generator", "manual_seed", "seed", "initial_seed",
           "get_rng_state", "set_rng_state", "fork_rng", "use_generator"]

_STATE_BYTES = 8 + 16 + 16 + 1 + 4  # seed, PCG64 state, increment, has_uint32, uinteger
_U64 = 1 << 64


def _seed_value(value) -> int:
    """torch's rule: an int in [-2**63, 2**64); negative seeds wrap to 2**64 + seed."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"manual_seed expected an int, got {type(value).__name__}")
    value = int(value)
    if not -(1 << 63) <= value < _U64:
        raise RuntimeError(f"Overflow when unpacking long: seed {value} is outside "
                           "[-2**63, 2**64)")
    return value % _U64


class Generator:
    """A seedable source of random numbers (see the module docstring)."""

    def __init__(self, device="cpu"):
        from ._types import as_device
        self.device = as_device(device)
        self.manual_seed(67280421310721)  # torch's default seed for a new Generator

    def manual_seed(self, seed) -> "Generator":
        """Restart from ``seed``; returns the generator."""
        self._seed = _seed_value(seed)
        self.numpy = np.random.Generator(np.random.PCG64(self._seed))
        return self

    def seed(self) -> int:
        """Restart from a non-deterministic seed, and return it."""
        value = secrets.randbits(64)
        self.manual_seed(value)
        return value

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self):
        """The state as a uint8 Tensor (restore it with ``set_state``)."""
        s = self.numpy.bit_generator.state
        raw = (self._seed.to_bytes(8, "little")
               + s["state"]["state"].to_bytes(16, "little")
               + s["state"]["inc"].to_bytes(16, "little")
               + bytes([s["has_uint32"]]) + int(s["uinteger"]).to_bytes(4, "little"))
        return autograd._Tensor._make(np.frombuffer(raw, np.uint8).copy())

    def set_state(self, new_state) -> "Generator":
        """Restore a state from ``get_state`` (a uint8 Tensor or array of its length)."""
        raw = np.asarray(getattr(new_state, "_data", new_state))
        if hasattr(raw, "cpu") and not isinstance(raw, np.ndarray):
            raw = raw.cpu().numpy()
        if raw.dtype != np.uint8 or raw.shape != (_STATE_BYTES,) or raw[40] > 1:
            raise RuntimeError(f"Expected a cnnlab Generator state: a uint8 tensor of "
                               f"{_STATE_BYTES} elements, got dtype {raw.dtype} and shape "
                               f"{tuple(raw.shape)}")
        b = raw.tobytes()
        bits = np.random.PCG64()
        bits.state = {"bit_generator": "PCG64",
                      "state": {"state": int.from_bytes(b[8:24], "little"),
                                "inc": int.from_bytes(b[24:40], "little")},
                      "has_uint32": b[40], "uinteger": int.from_bytes(b[41:45], "little")}
        self._seed = int.from_bytes(b[:8], "little")
        self.numpy = np.random.Generator(bits)
        return self

    # -- draws, as NumPy arrays of ``dtype`` (a NumPy dtype)
    def uniform(self, low, high, shape, dtype):
        u = self.numpy.random(shape, dtype=dtype if dtype in (np.float32, np.float64)
                              else np.float64)
        return (low + (high - low) * u).astype(dtype, copy=False)

    def normal(self, mean, std, shape, dtype):
        z = self.numpy.standard_normal(shape, dtype=dtype if dtype in (np.float32, np.float64)
                                       else np.float64)
        return (mean + std * z).astype(dtype, copy=False)

    def integers(self, low, high, shape):
        return self.numpy.integers(low, high, size=shape, dtype=np.int64)

    def permutation(self, n):
        return self.numpy.permutation(n).astype(np.int64, copy=False)

    def __repr__(self):
        return f"<cnnlab.Generator seed={self._seed} device={self.device}>"


default_generator = Generator()
default_generator.seed()
_current = contextvars.ContextVar("cnnlab_generator", default=None)


def resolve(generator=None) -> Generator:
    """``generator``, else the default (``use_generator``'s inside its block)."""
    if generator is not None:
        if not isinstance(generator, Generator):
            raise TypeError(f"expected a cnnlab.Generator, got {type(generator).__name__}")
        return generator
    return _current.get() or default_generator


@contextlib.contextmanager
def use_generator(generator: Generator):
    """Inside the block, draws without ``generator=`` come from ``generator``."""
    token = _current.set(resolve(generator))
    try:
        yield generator
    finally:
        _current.reset(token)


def manual_seed(seed) -> Generator:
    """Seed the default generator; returns it (as ``torch.manual_seed``)."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    """Seed the default generator non-deterministically; returns the seed."""
    return default_generator.seed()


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state():
    return default_generator.get_state()


def set_rng_state(new_state) -> None:
    default_generator.set_state(new_state)


@contextlib.contextmanager
def fork_rng(devices=None, enabled: bool = True):
    """Restore the default generator's state when the block ends (as torch's)."""
    if not enabled:
        yield
        return
    state = default_generator.get_state()
    try:
        yield
    finally:
        default_generator.set_state(state)
