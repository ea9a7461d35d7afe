"""``cnnlab.utils.data``: torch.utils.data's data pipeline for cnnlab Tensors.

    dataset.py      Dataset, TensorDataset, Subset, ConcatDataset, random_split
    sampler.py      SequentialSampler, RandomSampler, SubsetRandomSampler, BatchSampler
    collate.py      default_collate (samples -> a batch), default_convert
    dataloader.py   DataLoader (batches, shuffling, worker threads), get_worker_info

Randomness (shuffling, ``random_split``, random transforms run by a loader) comes from
``cnnlab.Generator`` s: the one given as ``generator=``, else cnnlab's default generator,
so ``cnnlab.manual_seed(n)`` makes a run repeat exactly.
"""
from .collate import default_collate, default_convert
from .dataloader import DataLoader, WorkerInfo, get_worker_info
from .dataset import ConcatDataset, Dataset, Subset, TensorDataset, random_split
from .sampler import (BatchSampler, RandomSampler, Sampler, SequentialSampler,
                      SubsetRandomSampler)

__all__ = ["Dataset", "TensorDataset", "Subset", "ConcatDataset", "random_split",
           "DataLoader", "get_worker_info", "WorkerInfo", "default_collate", "default_convert",
           "Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler",
           "BatchSampler"]
