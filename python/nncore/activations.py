"""Activation layers: the classic ``Activation(f, f')`` for user functions, and native ones."""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from . import _core
from ._layout import softmax_width
from ._validation import check_gradient_shape, check_non_negative_float, layer_input
from .layer import Layer, register_layer

ArrayFunction = Callable[[np.ndarray], np.ndarray]


class Activation(Layer):
    """Elementwise activation from the user's own functions: ``activation(x)`` and its
    derivative ``activation_prime(x)``, both on numpy arrays (the classic design)."""

    def __init__(self, activation: ArrayFunction, activation_prime: ArrayFunction) -> None:
        super().__init__()
        if not callable(activation) or not callable(activation_prime):
            raise TypeError("Activation: expected two callables, activation and activation_prime")
        self.activation = activation
        self.activation_prime = activation_prime

    def forward(self, input: np.ndarray) -> np.ndarray:
        output = self.activation(input)
        self.input, self.output = input, output
        return output

    def backward(self, output_gradient: np.ndarray, learning_rate: Optional[float] = None) -> np.ndarray:
        self._require_forward()
        return np.multiply(output_gradient, self.activation_prime(self.input))


class _NativeActivation(Activation):
    """An activation computed by the SIMD kernels, forward and fused backward.

    The backward kernel multiplies the incoming gradient by the derivative in one pass, reading
    the forward input (relu family) or output (tanh, sigmoid), whichever gives the exact value.
    """

    _kind = "identity"
    _backward_reads_input = False

    def __init__(self) -> None:
        super().__init__(self._apply, self._derivative)
        self._alpha = 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def _apply(self, x: np.ndarray) -> np.ndarray:
        return _core.activation(self._kind, layer_input(x, None, type(self).__name__), self._alpha)

    def _derivative(self, x: np.ndarray) -> np.ndarray:
        x = layer_input(x, None, type(self).__name__)
        y = self._apply(x)
        return _core.activation_backward(self._kind, x, y, np.ones_like(x), self._alpha)

    def forward(self, input: np.ndarray) -> np.ndarray:
        self._pending_forward = None
        x = layer_input(input, None, f"{type(self).__name__}.forward")
        output = _core.activation(self._kind, x, self._alpha)
        self.input, self.output = x, output
        return output

    def backward(self, output_gradient: np.ndarray, learning_rate: Optional[float] = None) -> np.ndarray:
        where = f"{type(self).__name__}.backward"
        self._require_forward()
        gradient = layer_input(output_gradient, self.output.dtype, where, "output_gradient")
        check_gradient_shape(gradient, self.output.shape, where)
        x = self.input if self._backward_reads_input else None
        y = None if self._backward_reads_input else self.output
        return _core.activation_backward(self._kind, x, y, gradient, self._alpha)


@register_layer
class Tanh(_NativeActivation):
    """tanh, elementwise (max error 4 ulp)."""

    _kind = "tanh"


@register_layer
class Sigmoid(_NativeActivation):
    """1 / (1 + exp(-x)), elementwise (max error 4 ulp)."""

    _kind = "sigmoid"


@register_layer
class ReLU(_NativeActivation):
    """max(x, 0); its derivative at 0 is taken as 0 (as PyTorch does)."""

    _kind = "relu"
    _backward_reads_input = True


@register_layer
class LeakyReLU(_NativeActivation):
    """x for x > 0, ``negative_slope * x`` otherwise."""

    _kind = "leaky_relu"
    _backward_reads_input = True

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self._alpha = check_non_negative_float(negative_slope, "negative_slope", "LeakyReLU")

    @property
    def negative_slope(self) -> float:
        return self._alpha

    def __repr__(self) -> str:
        return f"LeakyReLU(negative_slope={self._alpha})"

    def get_config(self) -> dict[str, Any]:
        return {"negative_slope": self._alpha}


@register_layer
class GELU(_NativeActivation):
    """x * Phi(x), Phi the standard normal CDF (``approximate="none"``, PyTorch's default), or
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (``approximate="tanh"``). The backward reads
    the forward input. erf is vectorised natively (max error stated in kernels/math.h)."""

    _backward_reads_input = True

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if not isinstance(approximate, str):
            raise TypeError(f"GELU: expected approximate to be a str, got {type(approximate).__name__}")
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: expected approximate 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate
        self._kind = "gelu" if approximate == "none" else "gelu_tanh"

    def __repr__(self) -> str:
        return f"GELU(approximate={self.approximate!r})"

    def get_config(self) -> dict[str, Any]:
        return {"approximate": self.approximate}


@register_layer
class Softmax(Layer):
    """Numerically stable softmax over each sample's features.

    Rows ``(batch, n)`` are normalised along the last axis; classic columns ``(n, 1)`` and
    ``(batch, n, 1)`` along the column. Backward is the exact Jacobian-vector product
    ``y * (g - sum(g * y))`` in one native pass.
    """

    def __repr__(self) -> str:
        return "Softmax()"

    def forward(self, input: np.ndarray) -> np.ndarray:
        x = layer_input(input, None, "Softmax.forward")
        if x.ndim == 0:
            raise ValueError("Softmax.forward: expected at least 1 dimension, got a scalar")
        rows = np.ascontiguousarray(x).reshape(-1, softmax_width(x.shape))
        output = _core.softmax(rows).reshape(x.shape)
        self.input, self.output = x, output
        return output

    def backward(self, output_gradient: np.ndarray, learning_rate: Optional[float] = None) -> np.ndarray:
        where = "Softmax.backward"
        self._require_forward()
        gradient = layer_input(output_gradient, self.output.dtype, where, "output_gradient")
        check_gradient_shape(gradient, self.output.shape, where)
        width = softmax_width(self.output.shape)
        y_rows = self.output.reshape(-1, width)
        g_rows = np.ascontiguousarray(gradient).reshape(-1, width)
        return _core.softmax_backward(y_rows, g_rows).reshape(self.output.shape)
