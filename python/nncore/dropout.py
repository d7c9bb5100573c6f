"""Dropout: zero a random fraction of the values while training, identity otherwise."""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from ._random import generator
from ._validation import check_gradient_shape, layer_input
from .layer import Layer, register_layer


@register_layer
class Dropout(Layer):
    """While ``training``, each value is zeroed with probability ``p`` and the rest are scaled by
    ``1 / (1 - p)`` ("inverted" dropout, as in PyTorch and Keras), so at inference the layer is
    the identity. The mask is drawn from nncore's generator, so ``nncore.seed`` (or
    ``fit(seed=...)``) makes it reproducible.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
            raise TypeError(f"Dropout: expected p to be a number, got {type(p).__name__}")
        if not (math.isfinite(p) and 0.0 <= p < 1.0):
            raise ValueError(f"Dropout: expected 0 <= p < 1, got {p}")
        self.p = float(p)
        self._scaled_mask: Optional[np.ndarray] = None

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"

    def get_config(self) -> dict[str, Any]:
        return {"p": self.p}

    def forward(self, input: np.ndarray) -> np.ndarray:
        x = layer_input(input, None, "Dropout.forward")
        if not self.training or self.p == 0.0:
            self._scaled_mask, self.input, self.output = None, x, x
            return x
        keep = generator().random(x.shape, dtype=x.dtype) >= x.dtype.type(self.p)
        scaled_mask = keep * x.dtype.type(1.0 / (1.0 - self.p))
        output = x * scaled_mask
        self._scaled_mask, self.input, self.output = scaled_mask, x, output
        return output

    def backward(self, output_gradient: np.ndarray, learning_rate: Optional[float] = None) -> np.ndarray:
        where = "Dropout.backward"
        self._require_forward()
        gradient = layer_input(output_gradient, self.output.dtype, where, "output_gradient")
        check_gradient_shape(gradient, self.output.shape, where)
        if self._scaled_mask is None:
            return gradient
        return gradient * self._scaled_mask
