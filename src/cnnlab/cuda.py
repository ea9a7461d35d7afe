"""``cnnlab.cuda``: whether the torch twin has a GPU here (``torch.cuda``'s few functions that
course code calls). Tensors and modules go to the GPU with ``.to("cuda")``; see
cnnlab/_types.py for how devices are spelled."""
from __future__ import annotations

__all__ = ["is_available", "device_count", "manual_seed", "manual_seed_all"]


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def is_available() -> bool:
    """True when torch is installed and sees a CUDA GPU."""
    torch = _torch()
    return bool(torch is not None and torch.cuda.is_available())


def device_count() -> int:
    torch = _torch()
    return torch.cuda.device_count() if torch is not None else 0


def manual_seed(seed) -> None:
    """Seeds cnnlab's default generator (cnnlab draws on the host for every device)."""
    from .random import manual_seed as seed_default
    seed_default(seed)


manual_seed_all = manual_seed
