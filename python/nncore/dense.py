"""Dense (fully connected) layer: y = x W^T + b, computed by the native GEMM."""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from . import _core
from ._layout import Rows, aligned_copy, aligned_zeros, to_rows
from ._validation import (
    check_bool,
    check_float_dtype,
    check_gradient_shape,
    check_non_negative_float,
    check_positive_int,
    layer_input,
)
from .initializers import Initializer, draw
from .layer import Layer, register_layer


@register_layer
class Dense(Layer):
    """Fully connected layer from ``input_size`` to ``output_size`` features.

    Parameters: ``weights`` of shape ``(output_size, input_size)`` (as in the classic code and
    PyTorch) and ``bias`` of shape ``(output_size,)``, with ``weights_gradient`` and
    ``bias_gradient`` beside them, filled by ``backward``. ``init`` names an initialiser
    (default ``"glorot_uniform"``; see ``nncore.initializers``) or is a callable
    ``(fan_in, fan_out, dtype) -> array``. ``dtype`` is float32 (default) or float64.

    Input: ``(batch, input_size)`` rows, a ``(input_size,)`` vector, a classic ``(input_size, 1)``
    column or ``(batch, input_size, 1)`` columns; the output has the same layout.
    """

    _skips_input_gradient = True

    def __init__(
        self,
        input_size: int,
        output_size: int,
        *,
        init: Union[str, Initializer] = "glorot_uniform",
        dtype: Union[str, type, np.dtype] = np.float32,
    ) -> None:
        super().__init__()
        where = "Dense"
        self.input_size = check_positive_int(input_size, "input_size", where)
        self.output_size = check_positive_int(output_size, "output_size", where)
        self.dtype = check_float_dtype(dtype, where)
        # On 64-byte boundaries (see _layout.aligned_zeros): every native kernel streams these.
        self.weights = aligned_copy(draw(init, self.input_size, self.output_size, self.dtype, where))
        self.bias = aligned_zeros((self.output_size,), self.dtype)
        self.weights_gradient = aligned_zeros(self.weights.shape, self.dtype)
        self.bias_gradient = aligned_zeros((self.output_size,), self.dtype)
        self._rows: Optional[Rows] = None

    def __repr__(self) -> str:
        return f"Dense({self.input_size}, {self.output_size}, dtype={self.dtype.name})"

    def forward(self, input: np.ndarray) -> np.ndarray:
        self._pending_forward = None
        where = f"Dense({self.input_size} -> {self.output_size}).forward"
        x = layer_input(input, self.dtype, where)
        # Locals until the result is made: the kernel releases the GIL, and another thread's
        # forward may set these attributes meanwhile.
        rows = to_rows(x, self.input_size, where)
        output = rows.restore(_core.linear(rows.rows, self.weights, self.bias))
        self._rows, self.input, self.output = rows, x, output
        return output

    def backward(self, output_gradient: np.ndarray, learning_rate: Optional[float] = None, *,
                 need_input_gradient: bool = True) -> Optional[np.ndarray]:
        """Fill ``weights_gradient`` and ``bias_gradient``; apply SGD when ``learning_rate`` is given.
        Returns the input gradient, or None (not computed) with ``need_input_gradient=False``."""
        where = f"Dense({self.input_size} -> {self.output_size}).backward"
        need_input_gradient = check_bool(need_input_gradient, "need_input_gradient", where)
        self._require_forward()
        self._check_gradients_apart(where)
        assert self._rows is not None
        gradient = layer_input(output_gradient, self.dtype, where, "output_gradient")
        check_gradient_shape(gradient, self.output.shape, where)
        gradient_rows = np.ascontiguousarray(gradient).reshape(self._rows.rows.shape[0], self.output_size)
        input_gradient, _, _ = _core.linear_backward(
            self._rows.rows, self.weights, gradient_rows, need_input_gradient, self.weights_gradient, self.bias_gradient
        )
        if learning_rate is not None and len(gradient_rows) == 1:
            # One sample: the rank-1 step weights += (-lr g) x^T, two roundings per weight instead
            # of forming lr * weights_gradient first; the native engine's per-sample path applies
            # the same step, so both give the same bits.
            lr = check_non_negative_float(learning_rate, "learning_rate", where)
            _core.sgd_rank1(self.weights, gradient_rows[0], self._rows.rows[0], lr)
            _core.sgd_step(self.bias, self.bias_gradient, lr)
        else:
            self._apply_sgd(learning_rate, where)
        return self._rows.restore(input_gradient) if need_input_gradient else None

    def parameters(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(self.weights, self.weights_gradient), (self.bias, self.bias_gradient)]

    def get_config(self) -> dict[str, Any]:
        return {"input_size": self.input_size, "output_size": self.output_size, "dtype": self.dtype.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Dense":
        # The weights are about to be loaded: allocate zeros rather than draw from the generator,
        # so loading a model never changes what later seeded random choices produce.
        return cls(**config, init="zeros")

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights, "bias": self.bias}
