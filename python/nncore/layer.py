"""The Layer contract every layer follows, native or written by a user."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np


class Layer:
    """Base class of all layers: ``forward(input)`` and ``backward(output_gradient, learning_rate)``.

    A network is a plain list of layers. Batches are rows (``(batch, features...)``); the classic
    single-sample column vector ``(features, 1)`` works as well. Subclass it to write a layer in
    numpy: store what ``backward`` needs in ``forward``, return the gradient with respect to the
    input from ``backward``, and update your parameters there when a learning rate is given.
    """

    def __init__(self) -> None:
        self.input: Any = None
        self.output: Any = None

    def forward(self, input: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, output_gradient: np.ndarray, learning_rate: Optional[float] = None) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def parameters(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(parameter, gradient)`` pairs; empty for layers without parameters."""
        return []

    def _require_forward(self) -> None:
        if self.output is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
