"""``DataLoader``: batches from a data set, with torch's arguments, defaults and errors.

How the pieces fit::

    sampler            SequentialSampler, or RandomSampler when shuffle=True (or yours)
    batch_sampler      BatchSampler(sampler, batch_size, drop_last): lists of indices
    iter(loader)       draws one base seed from ``generator`` (default: cnnlab's default
                       generator), as torch does, then walks the batch sampler
    batch k            with cnnlab's default generator replaced by one seeded from
                       (base seed, k): fetch the samples (``dataset.__getitems__(indices)``
                       if the data set has it, else ``dataset[i]`` each), then
                       ``collate_fn(samples)`` (``default_collate``)

Seeding each batch on its own makes random transforms give the same batches whatever
``num_workers`` is, and whichever thread loads a batch: ``num_workers > 0`` loads up to
``num_workers * prefetch_factor`` batches ahead in a pool of threads (no processes: no
pickling, no fork, which GNU OpenMP does not survive). Pillow's decoders and NumPy release
the GIL, so the threads overlap. Batches come back in order; an exception raised while
loading a batch is raised again by ``next()``.
"""
from __future__ import annotations

import contextvars
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from typing import NamedTuple, Optional

import numpy as np

from ...random import Generator, resolve, use_generator
from .collate import default_collate, default_convert
from .sampler import BatchSampler, RandomSampler, SequentialSampler

__all__ = ["DataLoader", "get_worker_info", "WorkerInfo"]


class WorkerInfo(NamedTuple):
    """What ``get_worker_info()`` tells code running in a loader's worker thread."""

    id: int
    num_workers: int
    seed: int
    dataset: object


_worker = threading.local()


def get_worker_info() -> Optional[WorkerInfo]:
    """Inside a DataLoader worker thread: its :class:`WorkerInfo`; elsewhere None."""
    return getattr(_worker, "info", None)


def _batch_generator(base_seed: int, index: int) -> Generator:
    """The generator of batch ``index`` of a pass: seeded from (base_seed, index)."""
    seed = np.random.SeedSequence([base_seed, index]).generate_state(1, np.uint64)[0]
    return Generator().manual_seed(int(seed))


class DataLoader:
    """Iterate over ``dataset`` in batches (see the module docstring).

    ``DataLoader(dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None,
    num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
    worker_init_fn=None, multiprocessing_context=None, generator=None, *,
    prefetch_factor=None, persistent_workers=False)``: torch's signature. Workers are
    threads, so ``pin_memory``, ``multiprocessing_context`` and ``persistent_workers`` change
    nothing; ``generator`` is a ``cnnlab.Generator``.
    """

    _frozen = ("batch_size", "batch_sampler", "sampler", "drop_last", "dataset",
               "persistent_workers")

    def __init__(self, dataset, batch_size: Optional[int] = 1, shuffle: Optional[bool] = None,
                 sampler=None, batch_sampler=None, num_workers: int = 0, collate_fn=None,
                 pin_memory: bool = False, drop_last: bool = False, timeout: float = 0,
                 worker_init_fn=None, multiprocessing_context=None, generator=None, *,
                 prefetch_factor: Optional[int] = None, persistent_workers: bool = False,
                 pin_memory_device: str = "", in_order: bool = True):
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) \
                or num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 "
                             "to disable multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in "
                             "multiprocessing.let num_workers > 0 to enable multiprocessing, "
                             "otherwise set prefetch_factor to None.")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        if prefetch_factor is not None and prefetch_factor < 0:
            raise ValueError("prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        if generator is not None:
            resolve(generator)  # a TypeError now rather than at the first batch
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, "
                                 "shuffle, sampler, and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually "
                             "exclusive with drop_last")
        if sampler is None:
            sampler = RandomSampler(dataset, generator=generator) if shuffle \
                else SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        if collate_fn is None:
            collate_fn = default_collate if batch_sampler is not None else default_convert

        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.num_workers = num_workers
        self.collate_fn = collate_fn
        self.pin_memory = pin_memory
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.generator = generator
        self.prefetch_factor = prefetch_factor
        self.persistent_workers = persistent_workers
        self.in_order = in_order
        self.__initialized = True

    def __setattr__(self, name, value):
        if getattr(self, "_DataLoader__initialized", False) and name in self._frozen:
            raise ValueError(f"{name} attribute should not be set after "
                             f"{type(self).__name__} is initialized")
        super().__setattr__(name, value)

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    @property
    def _index_sampler(self):
        return self.batch_sampler if self._auto_collation else self.sampler

    def __len__(self) -> int:
        return len(self._index_sampler)

    def __iter__(self) -> "_LoaderIter":
        return _LoaderIter(self)

    def __repr__(self):
        return (f"<cnnlab DataLoader: {len(self.dataset) if hasattr(self.dataset, '__len__') else '?'}"
                f" samples, batch_size={self.batch_size}, num_workers={self.num_workers}>")


class _LoaderIter:
    """One pass over a DataLoader: ``next()`` gives the next batch, in order."""

    def __init__(self, loader: DataLoader):
        self._loader = loader
        self._base_seed = int(resolve(loader.generator).integers(0, 2**63 - 1, ()))
        self._indices = iter(loader._index_sampler)
        self._length = len(loader)
        self._next_index = 0
        self._pool = None
        self._pending: deque = deque()
        if loader.num_workers > 0:
            self._start_workers()

    def __iter__(self):
        return self

    def __len__(self) -> int:
        return self._length

    # ------------------------------------------------------------------ workers
    def _start_workers(self):
        loader, base_seed = self._loader, self._base_seed
        counter = iter(range(loader.num_workers))
        lock = threading.Lock()

        def init():  # refers to the loader only, so a dropped iterator is freed at once
            with lock:
                worker_id = next(counter)
            _worker.info = WorkerInfo(worker_id, loader.num_workers, base_seed + worker_id,
                                      loader.dataset)
            if loader.worker_init_fn is not None:
                loader.worker_init_fn(worker_id)

        self._pool = ThreadPoolExecutor(loader.num_workers, thread_name_prefix="cnnlab-loader",
                                        initializer=init)
        for _ in range(loader.num_workers * loader.prefetch_factor):
            if not self._submit():
                break

    def _take(self):
        """(number, indices) of the next batch; StopIteration when the pass is over."""
        indices = next(self._indices)
        number = self._next_index
        self._next_index += 1
        return number, indices

    def _submit(self) -> bool:
        """Hand the next batch to the pool; False when the sampler is exhausted."""
        try:
            number, indices = self._take()
        except StopIteration:
            return False
        context = contextvars.copy_context()  # the caller's backend and generator choices
        self._pending.append(self._pool.submit(context.run, _load, self._loader,
                                               self._base_seed, number, indices))
        return True

    def __next__(self):
        if self._pool is None:
            return _load(self._loader, self._base_seed, *self._take())
        if not self._pending:
            self.close()
            raise StopIteration
        future = self._pending.popleft()
        self._submit()
        try:
            return future.result(timeout=self._loader.timeout or None)
        except FutureTimeout:
            self.close()
            raise RuntimeError(f"DataLoader timed out after {self._loader.timeout} "
                               f"seconds") from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the worker threads (batches being loaded are finished, queued ones
        dropped)."""
        pool, self._pool = getattr(self, "_pool", None), None
        if pool is not None:
            self._pending.clear()
            self._indices = iter(())
            pool.shutdown(wait=True, cancel_futures=True)

    def __del__(self):
        self.close()


def _load(loader: DataLoader, base_seed: int, number: int, indices):
    """Batch ``number`` of a pass: its samples (``indices``, or one index without
    auto-collation) fetched and collated under the batch's own generator."""
    with use_generator(_batch_generator(base_seed, number)):
        if loader._auto_collation:
            getitems = getattr(loader.dataset, "__getitems__", None)
            samples = getitems(indices) if callable(getitems) \
                else [loader.dataset[i] for i in indices]
        else:
            samples = loader.dataset[indices]
        return loader.collate_fn(samples)
