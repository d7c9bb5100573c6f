"""The one random generator behind every random choice nncore makes."""

from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()


def seed(value: int) -> None:
    """Make every later random choice of nncore reproducible.

    Weight initialisation, shuffling in ``train`` and (later) dropout all draw from one
    ``numpy.random.Generator``; ``seed(n)`` replaces it with a fresh one seeded with ``n``.
    """
    global _generator
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"seed: expected a non-negative int, got {value}")
    _generator = np.random.default_rng(int(value))


def generator() -> np.random.Generator:
    """The generator nncore draws from (replaced by ``seed``)."""
    return _generator
