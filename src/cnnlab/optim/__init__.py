"""``cnnlab.optim``: torch.optim's optimizers and schedules, with torch's update formulas.

    optimizer = cnnlab.optim.Adam(model.parameters(), lr=1e-3)
    optimizer.zero_grad(); loss.backward(); optimizer.step()

``optimizer`` (the base class: groups, state, state_dict), ``sgd``, ``adam`` (Adam, AdamW),
``rmsprop``, ``lr_scheduler``. Updates run on the parameters' arrays, in place, under
``no_grad``, on whichever twin holds them.
"""
from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "lr_scheduler"]
