"""Losses computed by native kernels: the classic functions (``mse``, ``mse_prime``, ...) and the
loss objects (``MSE``, ``MAE``, ``BinaryCrossEntropy``, ``CrossEntropy``, ``get``).

As in the classic from-scratch code, each value is the mean over all elements of ``y_true``, and
each gradient is d(mean)/d(y_pred), so a batch of samples averages over the batch as well.
``y_pred`` is the network output (float32 or float64); ``y_true`` is converted to its dtype once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import _core
from ._validation import (
    FLOAT_DTYPES,
    as_float_array,
    as_numeric_array,
    check_bool,
    check_float_dtype,
    resolve_named,
)


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


# ----------------------------------------------------------------------------------------------
# Loss objects: one native pass gives the value and the gradient of the mean loss.


class Loss:
    """Base of the loss objects. ``loss(y_true, y_pred)`` is the mean loss (a float);
    ``value_and_gradient`` also gives d(mean loss)/d(y_pred), from the same native pass."""

    name = "loss"

    def __call__(self, y_true: Any, y_pred: Any) -> float:
        return self._compute(y_true, y_pred, need_gradient=False)[0]

    def value_and_gradient(self, y_true: Any, y_pred: Any) -> tuple[float, np.ndarray]:
        value, gradient = self._compute(y_true, y_pred, need_gradient=True)
        assert gradient is not None
        return value, gradient

    def _compute(self, y_true: Any, y_pred: Any, need_gradient: bool) -> tuple[float, np.ndarray | None]:
        raise NotImplementedError(f"{type(self).__name__} does not implement _compute")

    def prepare_targets(self, y: Any, dtype: Any) -> np.ndarray:
        """Validate and convert a whole target array once (``fit`` calls this before batching)."""
        where = f"{type(self).__name__}.prepare_targets"
        return as_float_array(y, check_float_dtype(dtype, where), "y", where)

    def correct(self, y_true: Any, y_pred: Any) -> tuple[int, int] | None:
        """(number correct, number counted) for an accuracy metric; None for regression losses."""
        return None

    def get_config(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


class _ElementwiseLoss(Loss):
    """Mean over every element of a native elementwise loss."""

    _kernel = "squared_error"

    def _compute(self, y_true: Any, y_pred: Any, need_gradient: bool) -> tuple[float, np.ndarray | None]:
        target, predicted = _pair(y_true, y_pred, type(self).__name__)
        n = predicted.size
        total, gradient = _core.loss(self._kernel, target, predicted, 1.0 / n, need_gradient)
        return total / n, gradient


class MSE(_ElementwiseLoss):
    """Mean squared error over all elements, like ``torch.nn.MSELoss()``."""

    name = "mse"
    _kernel = "squared_error"


class MAE(_ElementwiseLoss):
    """Mean absolute error over all elements, like ``torch.nn.L1Loss()`` (gradient 0 where
    y_pred == y_true)."""

    name = "mae"
    _kernel = "absolute_error"


class BinaryCrossEntropy(_ElementwiseLoss):
    """Mean binary cross-entropy over all elements.

    ``from_logits=False``: y_pred are probabilities, logs clamped at -100 (``torch.nn.BCELoss``).
    ``from_logits=True``: y_pred are logits z, computed stably as
    max(z, 0) - z t + log1p(exp(-|z|)) (``torch.nn.BCEWithLogitsLoss``).
    """

    def __init__(self, from_logits: bool = False) -> None:
        self.from_logits = check_bool(from_logits, "from_logits", "BinaryCrossEntropy")
        self.name = "binary_cross_entropy_logits" if self.from_logits else "binary_cross_entropy"
        self._kernel = self.name

    def correct(self, y_true: Any, y_pred: Any) -> tuple[int, int]:
        target, predicted = _pair(y_true, y_pred, "BinaryCrossEntropy.correct")
        threshold = 0.0 if self.from_logits else 0.5
        hits = np.count_nonzero((predicted > threshold) == (target > 0.5))
        return int(hits), int(predicted.size)

    def get_config(self) -> dict[str, Any]:
        return {"from_logits": self.from_logits}


class CrossEntropy(Loss):
    """Softmax + cross-entropy over the classes of each row, fused; the mean over the rows
    (``torch.nn.CrossEntropyLoss()``). y_pred are logits (batch, classes); y_true is either
    integer class labels (batch,) or probabilities / one-hot rows (batch, classes)."""

    name = "cross_entropy"

    def prepare_targets(self, y: Any, dtype: Any) -> np.ndarray:
        where = "CrossEntropy.prepare_targets"
        dtype = check_float_dtype(dtype, where)
        return self._targets(as_numeric_array(y, "y", where), dtype, where)

    @staticmethod
    def _targets(target: np.ndarray, dtype: np.dtype, where: str) -> np.ndarray:
        if target.ndim == 1:  # class labels
            if target.dtype.kind in "iub":
                return target.astype(np.int64, copy=False)
            with np.errstate(invalid="ignore"):
                integral = np.isfinite(target) & (target == np.round(target))
            if not np.all(integral):
                bad = target[~integral][0]
                raise ValueError(
                    f"{where}: class labels must be integers, got the non-integral value {bad} "
                    f"in an array of dtype {target.dtype}"
                )
            # (2**63 as a float is the first value beyond int64, which the cast would not keep.)
            beyond = np.abs(target) >= 2.0**63
            if np.any(beyond):
                raise ValueError(f"{where}: the class label {target[beyond][0]} is beyond any number of classes")
            return target.astype(np.int64)
        if target.ndim == 2:  # probabilities or one-hot rows
            return as_float_array(target, dtype, "y_true", where)
        raise ValueError(
            f"{where}: expected class labels of shape (batch,) or probabilities of shape "
            f"(batch, classes), got shape {target.shape}"
        )

    def _arrays(self, y_true: Any, y_pred: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
        logits = as_numeric_array(y_pred, "y_pred", where)
        if logits.dtype not in FLOAT_DTYPES:
            logits = logits.astype(np.float64)
        if logits.ndim != 2:
            raise ValueError(f"{where}: expected y_pred (logits) of shape (batch, classes), got shape {logits.shape}")
        if logits.shape[0] == 0 or logits.shape[1] == 0:
            raise ValueError(f"{where}: got an empty batch: y_pred has shape {logits.shape}")
        target = self._targets(as_numeric_array(y_true, "y_true", where), logits.dtype, where)
        expected = logits.shape[:1] if target.ndim == 1 else logits.shape
        if target.shape != expected:
            raise ValueError(f"{where}: y_true has shape {target.shape} but y_pred has shape {logits.shape}")
        return target, logits

    def _compute(self, y_true: Any, y_pred: Any, need_gradient: bool) -> tuple[float, np.ndarray | None]:
        target, logits = self._arrays(y_true, y_pred, "CrossEntropy")
        batch = logits.shape[0]
        total, gradient = _core.softmax_cross_entropy(logits, target, 1.0 / batch, need_gradient)
        return total / batch, gradient

    def correct(self, y_true: Any, y_pred: Any) -> tuple[int, int]:
        target, logits = self._arrays(y_true, y_pred, "CrossEntropy.correct")
        labels = target if target.ndim == 1 else np.argmax(target, axis=1)
        hits = np.count_nonzero(np.argmax(logits, axis=1) == labels)
        return int(hits), int(logits.shape[0])


_LOSSES: dict[str, Callable[[], Loss]] = {
    "mse": MSE,
    "mean_squared_error": MSE,
    "mae": MAE,
    "mean_absolute_error": MAE,
    "binary_cross_entropy": BinaryCrossEntropy,
    "bce": BinaryCrossEntropy,
    "binary_cross_entropy_logits": lambda: BinaryCrossEntropy(from_logits=True),
    "cross_entropy": CrossEntropy,
    "categorical_cross_entropy": CrossEntropy,
}


def get(loss: Any) -> Loss:
    """A Loss from its name (a fresh object) or the Loss itself."""
    return resolve_named(loss, Loss, _LOSSES, "loss", "losses.get")
