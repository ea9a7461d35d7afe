"""``cnnlab.utils``: torch.utils's names; ``cnnlab.utils.data`` is the data pipeline."""
from . import data

__all__ = ["data"]
