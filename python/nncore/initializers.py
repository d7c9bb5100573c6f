"""Weight initialisers: each draws an (fan_out, fan_in) array from nncore's seeded generator."""

from __future__ import annotations

from typing import Callable, Union

import numpy as np

from ._random import generator

Initializer = Callable[[int, int, np.dtype], np.ndarray]


def glorot_uniform(fan_in: int, fan_out: int, dtype: np.dtype, receptive_field: int = 1) -> np.ndarray:
    """U(-a, a) with a = sqrt(6 / (fan_in + fan_out * receptive_field)) (Glorot & Bengio 2010);
    the default for Dense. A convolution's kernels are (out, fan_in) rows whose fan_out counts
    every kernel position, as torch.nn.init.xavier_uniform_ does: receptive_field = kh * kw."""
    limit = np.sqrt(6.0 / (fan_in + fan_out * receptive_field))
    return generator().uniform(-limit, limit, (fan_out, fan_in)).astype(dtype)


def glorot_normal(fan_in: int, fan_out: int, dtype: np.dtype, receptive_field: int = 1) -> np.ndarray:
    """N(0, 2 / (fan_in + fan_out * receptive_field)); receptive_field as in glorot_uniform."""
    std = np.sqrt(2.0 / (fan_in + fan_out * receptive_field))
    return (generator().standard_normal((fan_out, fan_in)) * std).astype(dtype)


def he_uniform(fan_in: int, fan_out: int, dtype: np.dtype) -> np.ndarray:
    """U(-a, a) with a = sqrt(6 / fan_in) (He et al. 2015), for ReLU networks."""
    limit = np.sqrt(6.0 / fan_in)
    return generator().uniform(-limit, limit, (fan_out, fan_in)).astype(dtype)


def he_normal(fan_in: int, fan_out: int, dtype: np.dtype) -> np.ndarray:
    """N(0, 2 / fan_in)."""
    return (generator().standard_normal((fan_out, fan_in)) * np.sqrt(2.0 / fan_in)).astype(dtype)


def standard_normal(fan_in: int, fan_out: int, dtype: np.dtype) -> np.ndarray:
    """N(0, 1), what the original from-scratch code used (trains poorly on wide layers)."""
    return generator().standard_normal((fan_out, fan_in)).astype(dtype)


def zeros(fan_in: int, fan_out: int, dtype: np.dtype) -> np.ndarray:
    return np.zeros((fan_out, fan_in), dtype=dtype)


INITIALIZERS: dict[str, Initializer] = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "standard_normal": standard_normal,
    "zeros": zeros,
}


def draw(init: Union[str, Initializer], fan_in: int, fan_out: int, dtype: np.dtype, where: str) -> np.ndarray:
    """A C-contiguous (fan_out, fan_in) array of ``dtype`` from ``init`` (a name or a callable),
    checked to have that shape; errors name the layer (``where``)."""
    initializer = resolve(init, where)
    try:
        weights = np.asarray(initializer(fan_in, fan_out, dtype))
    except (ValueError, MemoryError) as error:
        # As the base class: a subclass may need other arguments (numpy's _ArrayMemoryError does).
        kind = MemoryError if isinstance(error, MemoryError) else ValueError
        raise kind(f"{where}: cannot create {fan_out} x {fan_in} weights: {error}") from error
    if weights.shape != (fan_out, fan_in):
        raise ValueError(f"{where}: the initialiser returned shape {weights.shape}, expected {(fan_out, fan_in)}")
    return np.ascontiguousarray(weights, dtype=dtype)


def resolve(init: Union[str, Initializer], where: str) -> Initializer:
    if callable(init):
        return init
    if not isinstance(init, str):
        raise TypeError(f"{where}: expected init to be an initialiser name or a callable, got {type(init).__name__}")
    if init in INITIALIZERS:
        return INITIALIZERS[init]
    raise ValueError(f"{where}: unknown initialiser {init!r}; expected one of {sorted(INITIALIZERS)} or a callable")
