"""Samplers: the order in which a DataLoader visits a data set's indices (torch's classes).

``SequentialSampler`` (0..n-1), ``RandomSampler`` (a permutation per pass, or draws with
replacement), ``SubsetRandomSampler`` (a permutation of given indices) and
``BatchSampler`` (groups of ``batch_size`` indices). Random ones draw from a
``cnnlab.Generator``: the one given, else a fresh generator seeded from cnnlab's default
generator at the start of each pass (torch's rule), so ``cnnlab.manual_seed(n)`` fixes the
order of every epoch.
"""
from __future__ import annotations

from ...random import Generator, resolve

__all__ = ["Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler",
           "BatchSampler"]


class Sampler:
    """Base class: ``__iter__`` yields indices (or lists of indices, for a batch sampler)."""

    def __init__(self, data_source=None):
        pass

    def __iter__(self):
        raise NotImplementedError


class SequentialSampler(Sampler):
    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


def _pass_generator(generator):
    """The generator of one pass: ``generator``, or a new one seeded from the default."""
    if generator is not None:
        return resolve(generator)
    seed = int(resolve(None).integers(0, 2**63 - 1, ()))
    return Generator().manual_seed(seed)


class RandomSampler(Sampler):
    """A random permutation of the indices per pass, or ``num_samples`` draws with
    replacement."""

    def __init__(self, data_source, replacement: bool = False, num_samples=None,
                 generator=None):
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator
        if not isinstance(replacement, bool):
            raise TypeError(f"replacement should be a boolean value, but got "
                            f"replacement={replacement}")
        n = self.num_samples
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"num_samples should be a positive integer value, but got "
                             f"num_samples={n}")

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self):
        n = len(self.data_source)
        g = _pass_generator(self.generator)
        if self.replacement:
            return iter(g.integers(0, n, (self.num_samples,)).tolist())
        full, rest = divmod(self.num_samples, n)
        order = []
        for _ in range(full):
            order += g.permutation(n).tolist()
        if rest:
            order += g.permutation(n).tolist()[:rest]
        return iter(order)

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given ``indices`` in a random order, a new one per pass."""

    def __init__(self, indices, generator=None):
        self.indices = indices
        self.generator = generator

    def __iter__(self):
        g = _pass_generator(self.generator)
        return iter([self.indices[i] for i in g.permutation(len(self.indices)).tolist()])

    def __len__(self) -> int:
        return len(self.indices)


class BatchSampler(Sampler):
    """Lists of ``batch_size`` indices from ``sampler``; the last one shorter unless
    ``drop_last``."""

    def __init__(self, sampler, batch_size: int, drop_last: bool):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size should be a positive integer value, but got "
                             f"batch_size={batch_size}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got "
                             f"drop_last={drop_last}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self):
        batch = []
        for index in self.sampler:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
