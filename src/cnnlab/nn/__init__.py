"""``cnnlab.nn``: torch.nn's modules on cnnlab's tensors and kernels.

    import cnnlab as torch
    import cnnlab.nn as nn
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))

Layout (one file per kind, as torch.nn): ``module`` (Module), ``container`` (Sequential,
ModuleList), ``parameter``, ``conv``, ``pooling``, ``batchnorm``, ``linear`` (Linear,
Flatten, Identity), ``activation``, ``dropout``, ``loss``; ``functional`` (the ops on
tensors) and ``init`` (torch's initialisers).
"""
from . import functional, init
from .activation import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .batchnorm import BatchNorm2d
from .container import ModuleList, Sequential
from .conv import Conv2d, ConvTranspose2d
from .dropout import Dropout
from .linear import Flatten, Identity, Linear
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, NLLLoss
from .module import Module
from .parameter import Parameter
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "Conv2d", "ConvTranspose2d",
           "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "BatchNorm2d", "Linear", "Flatten",
           "Identity", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "Dropout",
           "CrossEntropyLoss", "NLLLoss", "MSELoss", "BCEWithLogitsLoss", "functional", "init"]
