"""Low-level operations on numpy arrays, running the same SIMD kernels as the layers.

Every function takes float32 or float64 arrays (mixed dtypes raise TypeError) and an optional
``out`` array that must have exactly the result's shape and dtype, be C-contiguous and writable;
it is written in place and returned. Inputs may be any strided view (they are read correctly, and
copied once when the kernel needs contiguous data).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from . import _core
from ._validation import check_finite_float


def matmul(
    a: np.ndarray,
    b: np.ndarray,
    *,
    transpose_a: bool = False,
    transpose_b: bool = False,
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """``op(a) @ op(b)`` for 2-D arrays, where ``op`` transposes when asked.

    Shapes: op(a) is (m, k), op(b) is (k, n), the result (m, n). Transposition is free (it is a
    change of strides inside the packing routines). k == 0 gives zeros, as numpy does.
    """
    return _core.matmul(a, b, transpose_a, transpose_b, out)  # checks the flags too


def tanh(x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Elementwise tanh (max error 4 ulp, see README)."""
    return _core.activation("tanh", x, 0.0, out)


def sigmoid(x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Elementwise 1 / (1 + exp(-x)) (max error 4 ulp)."""
    return _core.activation("sigmoid", x, 0.0, out)


def relu(x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Elementwise max(x, 0); NaN stays NaN."""
    return _core.activation("relu", x, 0.0, out)


def leaky_relu(
    x: np.ndarray, negative_slope: float = 0.01, out: Optional[np.ndarray] = None
) -> np.ndarray:
    """Elementwise x if x >= 0 else negative_slope * x."""
    return _core.activation("leaky_relu", x, check_finite_float(negative_slope, "negative_slope", "leaky_relu"), out)


def exp(x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Elementwise exp (max error 2 ulp)."""
    return _core.exp(x, out)


def all_finite(x: np.ndarray) -> bool:
    """True when ``x`` holds no NaN and no infinity: what ``np.isfinite(x).all()`` answers, without
    its boolean temporary of ``x.size`` bytes (one pass over ``x``, split over the threads)."""
    return _core.all_finite(x)


def softmax(x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Numerically stable softmax over the last axis (each leading index is one row)."""
    return _core.softmax(x, out)
