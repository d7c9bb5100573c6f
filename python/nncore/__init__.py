"""nncore: small, fast neural networks on numpy arrays.

The classic from-scratch API (layers with ``forward``/``backward``, a network is a list of
layers, ``train``/``predict``) backed by SIMD C++ kernels chosen at import for this CPU.
"""

from . import _core, callbacks, datasets, initializers, losses, ops, optim, serialization
from ._random import seed
from .activations import GELU, Activation, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .conv import AvgPool2D, Conv2D, Convolutional, MaxPool2D
from .dense import Dense
from .dropout import Dropout
from .history import History, plot_history
from .layer import Layer, register_layer
from .losses import binary_cross_entropy, binary_cross_entropy_prime, mse, mse_prime
from .network import predict, train
from .reshape import Flatten, Reshape
from .sequential import Sequential, load
from .serialization import ModelFileError
from .runtime import _warn_about_environment, cpu_info, get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "AvgPool2D",
    "Conv2D",
    "Convolutional",
    "Dense",
    "Dropout",
    "Flatten",
    "GELU",
    "History",
    "Layer",
    "LeakyReLU",
    "MaxPool2D",
    "ModelFileError",
    "ReLU",
    "Reshape",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "binary_cross_entropy",
    "binary_cross_entropy_prime",
    "callbacks",
    "cpu_info",
    "datasets",
    "get_num_threads",
    "initializers",
    "load",
    "losses",
    "mse",
    "mse_prime",
    "ops",
    "optim",
    "plot_history",
    "predict",
    "register_layer",
    "seed",
    "serialization",
    "set_num_threads",
    "train",
]

_warn_about_environment()
