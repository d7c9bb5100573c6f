"""The classic loss functions and their gradients, computed by native kernels.

As in the classic from-scratch code, each value is the mean over all elements of ``y_true``, and
each gradient is d(mean)/d(y_pred), so a batch of samples averages over the batch as well.
``y_pred`` is the network output (float32 or float64); ``y_true`` is converted to its dtype once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._validation import FLOAT_DTYPES, as_float_array, as_numeric_array


def _pair(y_true: Any, y_pred: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    predicted = as_numeric_array(y_pred, "y_pred", where)
    if predicted.dtype not in FLOAT_DTYPES:
        predicted = predicted.astype(np.float64)
    target = as_float_array(y_true, predicted.dtype, "y_true", where)
    if target.shape != predicted.shape:
        raise ValueError(f"{where}: y_true has shape {target.shape} but y_pred has shape {predicted.shape}")
    if predicted.size == 0:
        raise ValueError(f"{where}: got empty arrays of shape {predicted.shape}")
    return target, predicted


def mse(y_true: Any, y_pred: Any) -> float:
    """Mean squared error: mean((y_pred - y_true)^2)."""
    target, predicted = _pair(y_true, y_pred, "mse")
    return _core.squared_error_sum(target, predicted) / predicted.size


def mse_prime(y_true: Any, y_pred: Any) -> np.ndarray:
    """Gradient of ``mse`` with respect to y_pred: 2 (y_pred - y_true) / n."""
    target, predicted = _pair(y_true, y_pred, "mse_prime")
    return _core.squared_error_grad(target, predicted, 2.0 / predicted.size)


def binary_cross_entropy(y_true: Any, y_pred: Any) -> float:
    """mean(-y log p - (1 - y) log(1 - p)) for probabilities p; each log is clamped at -100, so
    p = 0 or 1 gives a large finite loss instead of inf (as PyTorch's BCELoss)."""
    target, predicted = _pair(y_true, y_pred, "binary_cross_entropy")
    return _core.binary_cross_entropy_sum(target, predicted) / predicted.size


def binary_cross_entropy_prime(y_true: Any, y_pred: Any) -> np.ndarray:
    """Gradient of ``binary_cross_entropy``: (p - y) / (p (1 - p)) / n, the denominator kept
    >= 1e-12."""
    target, predicted = _pair(y_true, y_pred, "binary_cross_entropy_prime")
    return _core.binary_cross_entropy_grad(target, predicted, 1.0 / predicted.size)
