"""Reshape layer: the classic bridge between convolutional and dense layers."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import math

import numpy as np

from ._validation import check_gradient_shape, check_positive_int, layer_input
from .layer import Layer, register_layer


def _shape(value: Sequence[int], name: str) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)):
        value = (value,)
    try:
        dims = tuple(value)
    except TypeError:
        raise TypeError(f"Reshape: expected {name} to be a tuple of ints, got {value!r}") from None
    if not dims:
        raise ValueError(f"Reshape: {name} must have at least one dimension")
    return tuple(check_positive_int(d, f"every dimension of {name}", "Reshape") for d in dims)


@register_layer
class Reshape(Layer):
    """Reshape one sample from ``input_shape`` to ``output_shape`` (same number of values).

    An input of exactly ``input_shape`` is one sample; an input of ``(batch,) + input_shape`` is a
    batch and becomes ``(batch,) + output_shape``.
    """

    def __init__(self, input_shape: Sequence[int], output_shape: Sequence[int]) -> None:
        super().__init__()
        self.input_shape = _shape(input_shape, "input_shape")
        self.output_shape = _shape(output_shape, "output_shape")
        # math.prod: Python integers cannot overflow, unlike numpy's int64 product.
        if math.prod(self.input_shape) != math.prod(self.output_shape):
            raise ValueError(
                f"Reshape: input_shape {self.input_shape} has {math.prod(self.input_shape)} values "
                f"but output_shape {self.output_shape} has {math.prod(self.output_shape)}"
            )

    def __repr__(self) -> str:
        return f"Reshape({self.input_shape}, {self.output_shape})"

    def get_config(self) -> dict[str, Any]:
        return {"input_shape": list(self.input_shape), "output_shape": list(self.output_shape)}

    def forward(self, input: np.ndarray) -> np.ndarray:
        self._pending_forward = None
        x = np.asarray(input)
        if x.shape == self.input_shape:
            target = self.output_shape
        elif x.shape[1:] == self.input_shape:
            target = (x.shape[0],) + self.output_shape
        else:
            raise ValueError(
                f"Reshape.forward: expected input of shape {self.input_shape} or "
                f"(batch,) + {self.input_shape}, got {x.shape}"
            )
        output = np.reshape(x, target)
        self.input, self.output = x, output
        return output

    def backward(self, output_gradient: np.ndarray, learning_rate: Optional[float] = None) -> np.ndarray:
        self._require_forward()
        gradient = np.asarray(output_gradient)
        check_gradient_shape(gradient, self.output.shape, "Reshape.backward")
        return np.reshape(gradient, self.input.shape)


@register_layer
class Flatten(Layer):
    """``(batch, d1, d2, ...)`` -> ``(batch, d1 * d2 * ...)``: keeps the first axis as the batch
    (like ``torch.nn.Flatten``), for feeding image-shaped data or feature maps to Dense."""

    def __repr__(self) -> str:
        return "Flatten()"

    def forward(self, input: np.ndarray) -> np.ndarray:
        self._pending_forward = None
        x = layer_input(input, None, "Flatten.forward")
        if x.ndim < 2:
            raise ValueError(f"Flatten.forward: expected input of shape (batch, ...) with at least 2 dimensions, got {x.shape}")
        output = np.reshape(x, (x.shape[0], -1))
        self.input, self.output = x, output
        return output

    def backward(self, output_gradient: np.ndarray, learning_rate: Optional[float] = None) -> np.ndarray:
        self._require_forward()
        gradient = np.asarray(output_gradient)
        check_gradient_shape(gradient, self.output.shape, "Flatten.backward")
        return np.reshape(gradient, self.input.shape)
