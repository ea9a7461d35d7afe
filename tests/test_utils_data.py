"""cnnlab.utils.data against torch.utils.data: the same data sets, samplers, collation and
DataLoader batches where no randomness is involved; torch's error messages for the same
bad arguments; and, where randomness is involved, the properties torch documents
(a permutation per epoch, disjoint splits of the right lengths, the same order from the same
seed) plus cnnlab's own promise: ``num_workers`` never changes a batch.
"""
from __future__ import annotations

import collections
import threading
import warnings

import numpy as np
import pytest

import cnnlab
from cnnlab.utils import data as cdata

torch = pytest.importorskip("torch")
tdata = torch.utils.data


def as_np(x):
    """A batch (nested) as NumPy / plain Python, for comparing cnnlab's and torch's."""
    if isinstance(x, cnnlab.Tensor):
        return ("tensor", x.dtype.name, x.numpy(force=True).tolist())
    if isinstance(x, torch.Tensor):
        return ("tensor", str(x.dtype)[6:], x.numpy().tolist())
    if isinstance(x, np.ndarray):
        return ("ndarray", x.dtype.name, x.tolist())
    if isinstance(x, dict):
        return ("dict", type(x).__name__, {k: as_np(v) for k, v in x.items()})
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return ("namedtuple", type(x).__name__, [as_np(v) for v in x])
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [as_np(v) for v in x])
    return ("value", x)


Pair = collections.namedtuple("Pair", ["a", "b"])


def _samples(lib):
    """The same list of samples built from each library's tensors."""
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = (lambda a: torch.from_numpy(a.copy())) if lib == "torch" else cnnlab.tensor
    return [
        [(t(arr + i), i) for i in range(3)],                            # (image, label)
        [{"x": t(arr * i), "y": float(i), "name": f"s{i}"} for i in range(2)],
        [Pair(i, [i, 2 * i]) for i in range(3)],                        # namedtuple, list
        [np.full((2, 2), i, np.uint8) for i in range(4)],               # NumPy arrays
        [np.float64(i) / 3 for i in range(3)],                          # NumPy scalars
        [True, False, True],                                            # bools
        [(b"x", "y", 1.5)] * 2,                                         # bytes, str, float
    ]


@pytest.mark.parametrize("case", range(7))
def test_default_collate_matches_torch(case):
    ours = cdata.default_collate(_samples("cnnlab")[case])
    theirs = tdata.default_collate(_samples("torch")[case])
    assert as_np(ours) == as_np(theirs)


def test_default_convert_matches_torch():
    sample = {"a": np.arange(3), "b": (np.float32(2.5), "s"), "c": [np.zeros((2, 2), np.uint8)]}
    assert as_np(cdata.default_collate([sample])) == as_np(tdata.default_collate([sample]))
    from torch.utils.data._utils.collate import default_convert as t_convert
    assert as_np(cdata.default_convert(sample)) == as_np(t_convert(sample))


@pytest.mark.parametrize("batch, kind", [
    ([object(), object()], TypeError),
    ([np.array(["a", "b"]), np.array(["c", "d"])], TypeError),
    ([[1, 2], [1, 2, 3]], RuntimeError),
])
def test_default_collate_errors_match_torch(batch, kind):
    with pytest.raises(kind) as theirs:
        tdata.default_collate(batch)
    with pytest.raises(kind) as ours:
        cdata.default_collate(batch)
    expected = str(theirs.value).replace("torch", "cnnlab")
    assert str(ours.value).split("found")[0] == expected.split("found")[0]


def test_collate_unequal_images_says_what_torch_says():
    with pytest.raises(RuntimeError) as theirs:
        tdata.default_collate([torch.zeros(3, 4), torch.zeros(3, 5)])
    with pytest.raises(RuntimeError) as ours:
        cdata.default_collate([cnnlab.zeros(3, 4), cnnlab.zeros(3, 5)])
    assert str(ours.value) == str(theirs.value)


class Squares(cdata.Dataset):
    """Sample i is (i*i as float32 (1, 2) array, i): a subclass as the course writes one."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return np.full((1, 2), i * i, np.float32), i


class TorchSquares(tdata.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.full((1, 2), i * i, np.float32), i


@pytest.mark.parametrize("n, batch_size, drop_last", [(10, 3, False), (10, 3, True), (9, 3, True),
                                                      (2, 5, False), (2, 5, True), (0, 4, False)])
def test_sequential_batches_match_torch(n, batch_size, drop_last):
    ours = cdata.DataLoader(Squares(n), batch_size=batch_size, drop_last=drop_last)
    theirs = tdata.DataLoader(TorchSquares(n), batch_size=batch_size, drop_last=drop_last)
    assert len(ours) == len(theirs)
    assert [as_np(b) for b in ours] == [as_np(b) for b in theirs]


def test_batch_size_none_matches_torch():
    ours = list(cdata.DataLoader(Squares(3), batch_size=None))
    theirs = list(tdata.DataLoader(TorchSquares(3), batch_size=None))
    assert [as_np(b) for b in ours] == [as_np(b) for b in theirs]


def test_batches_are_tensors_of_torch_dtypes():
    x, y = next(iter(cdata.DataLoader(Squares(5), batch_size=4)))
    assert isinstance(x, cnnlab.Tensor) and x.shape == (4, 1, 2) and x.dtype == cnnlab.float32
    assert isinstance(y, cnnlab.Tensor) and y.dtype == cnnlab.int64 and y.tolist() == [0, 1, 2, 3]


def test_tensor_dataset_and_subset_match_torch():
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10) % 3
    ours = cdata.TensorDataset(cnnlab.tensor(x), cnnlab.tensor(y))
    theirs = tdata.TensorDataset(torch.tensor(x), torch.tensor(y))
    assert len(ours) == len(theirs) == 10
    assert as_np(ours[4]) == as_np(theirs[4])
    sub_ours, sub_theirs = cdata.Subset(ours, [7, 2, 2]), tdata.Subset(theirs, [7, 2, 2])
    assert len(sub_ours) == 3
    assert [as_np(sub_ours[i]) for i in range(3)] == [as_np(sub_theirs[i]) for i in range(3)]
    loader = cdata.DataLoader(sub_ours, batch_size=2)
    tloader = tdata.DataLoader(sub_theirs, batch_size=2)
    assert [as_np(b) for b in loader] == [as_np(b) for b in tloader]
    with pytest.raises(AssertionError, match="Size mismatch between tensors"):
        cdata.TensorDataset(cnnlab.zeros(3), cnnlab.zeros(4))


def test_concat_dataset_matches_torch():
    ours = Squares(3) + Squares(2)
    theirs = tdata.ConcatDataset([TorchSquares(3), TorchSquares(2)])
    assert len(ours) == 5
    assert [as_np(ours[i]) for i in range(-5, 5)] == [as_np(theirs[i]) for i in range(-5, 5)]
    with pytest.raises(ValueError, match="absolute value of index"):
        ours[-6]


def test_base_dataset_needs_getitem():
    with pytest.raises(NotImplementedError, match="Subclasses of Dataset should implement"):
        cdata.Dataset()[0]


@pytest.mark.parametrize("n, lengths", [
    (10, [3, 7]), (10, [0.3, 0.7]), (10, [0.5, 0.5]), (7, [0.5, 0.5]), (11, [0.25, 0.25, 0.5]),
    (1989, [0.8, 0.2]), (5, [1.0]), (3, [0.1, 0.1, 0.8]),
])
def test_random_split_lengths_match_torch(n, lengths):
    with warnings.catch_warnings():  # both warn about empty splits
        warnings.simplefilter("ignore")
        theirs = [len(s) for s in tdata.random_split(range(n), lengths)]
        splits = cdata.random_split(Squares(n), lengths,
                                    generator=cnnlab.Generator().manual_seed(0))
    assert [len(s) for s in splits] == theirs
    indices = sorted(i for s in splits for i in s.indices)
    assert indices == list(range(n))                       # disjoint, and all of them


def test_random_split_is_seeded_and_random():
    a = cdata.random_split(Squares(50), [25, 25], generator=cnnlab.Generator().manual_seed(1))
    b = cdata.random_split(Squares(50), [25, 25], generator=cnnlab.Generator().manual_seed(1))
    c = cdata.random_split(Squares(50), [25, 25], generator=cnnlab.Generator().manual_seed(2))
    assert a[0].indices == b[0].indices != c[0].indices
    cnnlab.manual_seed(3)
    d = cdata.random_split(Squares(50), [0.5, 0.5])
    cnnlab.manual_seed(3)
    assert cdata.random_split(Squares(50), [0.5, 0.5])[0].indices == d[0].indices


@pytest.mark.parametrize("lengths", [[3, 3], [0.5, 0.6], [1.2, -0.2], [0.2, 0.2, 0.2]])
def test_random_split_errors_match_torch(lengths):
    with pytest.raises(ValueError) as theirs:
        tdata.random_split(range(10), lengths)
    with pytest.raises(ValueError) as ours:
        cdata.random_split(Squares(10), lengths)
    assert str(ours.value) == str(theirs.value)


def _order(loader):
    return [y.tolist() for _, y in loader]


def test_shuffle_is_a_new_permutation_each_epoch_and_seeded():
    g = cnnlab.Generator().manual_seed(0)
    loader = cdata.DataLoader(Squares(20), batch_size=6, shuffle=True, generator=g)
    epochs = [sum(_order(loader), []) for _ in range(3)]
    for e in epochs:
        assert sorted(e) == list(range(20))
    assert epochs[0] != epochs[1] != epochs[2]
    again = cdata.DataLoader(Squares(20), batch_size=6, shuffle=True,
                             generator=cnnlab.Generator().manual_seed(0))
    assert [sum(_order(again), []) for _ in range(3)] == epochs
    cnnlab.manual_seed(5)
    first = _order(cdata.DataLoader(Squares(20), batch_size=6, shuffle=True))
    cnnlab.manual_seed(5)
    assert _order(cdata.DataLoader(Squares(20), batch_size=6, shuffle=True)) == first


def test_drop_last_with_shuffle():
    loader = cdata.DataLoader(Squares(10), batch_size=4, shuffle=True, drop_last=True)
    batches = _order(loader)
    assert len(loader) == 2 and [len(b) for b in batches] == [4, 4]


class RandomNoise(cdata.Dataset):
    """Draws from cnnlab's current generator in __getitem__, as random transforms do."""

    def __len__(self):
        return 40

    def __getitem__(self, i):
        return cnnlab.rand(3), i


@pytest.mark.parametrize("num_workers", [1, 2, 4])
def test_workers_give_the_same_batches(num_workers):
    def run(workers):
        g = cnnlab.Generator().manual_seed(7)
        loader = cdata.DataLoader(RandomNoise(), batch_size=6, shuffle=True, generator=g,
                                  num_workers=workers)
        return [(x.numpy().tolist(), y.tolist()) for _ in range(2) for x, y in loader]

    assert run(num_workers) == run(0)


def test_workers_are_threads_with_worker_info():
    seen = []

    class Where(cdata.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            info = cdata.get_worker_info()
            seen.append((threading.current_thread() is threading.main_thread(),
                         None if info is None else info.num_workers))
            return i

    list(cdata.DataLoader(Where(), batch_size=2))
    assert set(seen) == {(True, None)}
    seen.clear()
    ids = []
    list(cdata.DataLoader(Where(), batch_size=2, num_workers=2, worker_init_fn=ids.append))
    assert set(seen) == {(False, 2)} and sorted(ids) == [0, 1]
    assert cdata.get_worker_info() is None


def test_worker_keeps_the_callers_backend():
    backends = set()

    class Which(cdata.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            backends.add(cnnlab.get_backend())
            return i

    with cnnlab.use_backend("numpy"):
        list(cdata.DataLoader(Which(), num_workers=2))
    assert backends == {"numpy"}


def test_worker_exception_reaches_the_loop_and_stops_the_pool():
    class Broken(cdata.Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            if i == 5:
                raise KeyError("sample 5 is broken")
            return i

    before = threading.active_count()
    loader = cdata.DataLoader(Broken(), batch_size=2, num_workers=2)
    got = []
    with pytest.raises(KeyError, match="sample 5 is broken"):
        for b in loader:
            got.append(b.tolist())
    assert got == [[0, 1], [2, 3]]
    assert threading.active_count() == before


def test_breaking_out_of_a_threaded_loop_stops_the_pool():
    before = threading.active_count()
    for i, _ in enumerate(cdata.DataLoader(Squares(100), batch_size=2, num_workers=3)):
        if i == 2:
            break
    assert threading.active_count() == before


def test_iterator_has_len_and_loader_settings_are_frozen():
    loader = cdata.DataLoader(Squares(7), batch_size=2)
    assert len(iter(loader)) == 4
    with pytest.raises(ValueError, match="batch_size attribute should not be set after "
                                         "DataLoader is initialized"):
        loader.batch_size = 3
    t = tdata.DataLoader(TorchSquares(7), batch_size=2)
    with pytest.raises(ValueError, match="batch_size attribute should not be set after "
                                         "DataLoader is initialized"):
        t.batch_size = 3


@pytest.mark.parametrize("kwargs", [
    dict(num_workers=-1),
    dict(timeout=-1),
    dict(prefetch_factor=2),
    dict(persistent_workers=True),
    dict(sampler=[0, 1], shuffle=True),
    dict(batch_sampler=[[0, 1]], batch_size=2),
    dict(batch_sampler=[[0, 1]], drop_last=True),
    dict(batch_size=None, drop_last=True),
    dict(batch_size=0),
    dict(batch_size=-3),
    dict(drop_last="yes"),
])
def test_argument_errors_match_torch(kwargs):
    with pytest.raises(Exception) as theirs:
        tdata.DataLoader(TorchSquares(4), **kwargs)
    with pytest.raises(Exception) as ours:
        cdata.DataLoader(Squares(4), **kwargs)
    assert type(ours.value) is type(theirs.value)
    assert str(ours.value) == str(theirs.value)


def test_random_sampler_errors_match_torch():
    for kwargs in (dict(num_samples=0), dict(replacement=1)):
        with pytest.raises(Exception) as theirs:
            tdata.RandomSampler(range(3), **kwargs)
        with pytest.raises(Exception) as ours:
            cdata.RandomSampler(range(3), **kwargs)
        assert type(ours.value) is type(theirs.value) and str(ours.value) == str(theirs.value)


def test_random_sampler_with_replacement_and_num_samples():
    g = cnnlab.Generator().manual_seed(0)
    draws = list(cdata.RandomSampler(range(5), replacement=True, num_samples=200, generator=g))
    assert len(draws) == 200 and set(draws) == set(range(5))
    more = list(cdata.RandomSampler(range(5), num_samples=12, generator=g))
    assert len(more) == 12 and sorted(more[:5]) == sorted(more[5:10]) == list(range(5))


def test_generator_must_be_cnnlabs():
    with pytest.raises(TypeError, match="cnnlab.Generator"):
        cdata.DataLoader(Squares(3), shuffle=True, generator=torch.Generator())
