"""2-D convolution layers (cross-correlation over NCHW arrays), computed by the native conv2d."""

from __future__ import annotations

import collections.abc
import functools
from typing import Any, Optional, Sequence, Union

import numpy as np

from . import _core
from ._random import generator
from ._validation import (
    check_bool,
    check_float_dtype,
    check_gradient_shape,
    check_positive_int,
    layer_input,
)
from .initializers import Initializer, draw, glorot_normal, glorot_uniform, resolve
from .layer import Layer, register_layer

Pair = Union[int, Sequence[int]]


def _pair(value: Any, name: str, where: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= minimum, as a tuple of two Python ints."""
    items = (value, value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    try:
        # (a set's order is not the caller's, and a mapping's items are its keys)
        if isinstance(items, (str, bytes, collections.abc.Set, collections.abc.Mapping)):
            raise TypeError
        items = tuple(items)
    except TypeError:
        raise TypeError(f"{where}: expected {name} to be an int or a pair of ints, got {value!r}") from None
    if len(items) != 2:
        raise ValueError(f"{where}: expected {name} to be an int or a pair of ints, got {value!r}")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
            raise TypeError(f"{where}: expected {name} to be an int or a pair of ints, got {value!r}")
        if item < minimum:
            raise ValueError(f"{where}: expected {name} >= {minimum}, got {value!r}")
    return int(items[0]), int(items[1])


def _kernels(init: Union[str, Initializer], shape: tuple[int, ...], dtype: np.dtype, where: str) -> np.ndarray:
    """Kernels of ``shape`` (out, in, kh, kw) drawn as an (out, in * kh * kw) matrix by the
    initialiser; nncore's Glorot initialisers count fan_out as out * kh * kw (as PyTorch does)."""
    out, depth_in, kh, kw = shape
    initializer = resolve(init, where)
    if initializer in (glorot_uniform, glorot_normal):
        initializer = functools.partial(initializer, receptive_field=kh * kw)
    return draw(initializer, depth_in * kh * kw, out, dtype, where).reshape(shape)


@register_layer
class Conv2D(Layer):
    """2-D convolution (cross-correlation, as ``torch.nn.Conv2d``) of ``(N, C, H, W)`` batches.

    Parameters: ``weights`` of shape ``(out_channels, in_channels, kh, kw)`` and ``bias`` of shape
    ``(out_channels,)``, with ``weights_gradient`` and ``bias_gradient`` filled by ``backward``.
    ``kernel_size``, ``stride``, ``padding`` (zeros) and ``dilation`` are an int or a pair.
    The output is ``(N, out_channels, OH, OW)`` with
    ``OH = (H + 2 padding - dilation (kh - 1) - 1) // stride + 1``.
    """

    _skips_input_gradient = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Pair,
        stride: Pair = 1,
        padding: Pair = 0,
        dilation: Pair = 1,
        *,
        init: Union[str, Initializer] = "he_uniform",
        dtype: Union[str, type, np.dtype] = np.float32,
    ) -> None:
        super().__init__()
        where = "Conv2D"
        self.in_channels = check_positive_int(in_channels, "in_channels", where)
        self.out_channels = check_positive_int(out_channels, "out_channels", where)
        self.kernel_size = _pair(kernel_size, "kernel_size", where, 1)
        self.stride = _pair(stride, "stride", where, 1)
        self.padding = _pair(padding, "padding", where, 0)
        self.dilation = _pair(dilation, "dilation", where, 1)
        self.dtype = check_float_dtype(dtype, where)
        kh, kw = self.kernel_size
        self.weights = _kernels(init, (self.out_channels, self.in_channels, kh, kw), self.dtype, where)
        self.bias = np.zeros(self.out_channels, dtype=self.dtype)
        self.weights_gradient = np.zeros_like(self.weights)
        self.bias_gradient = np.zeros_like(self.bias)

    def __repr__(self) -> str:
        return (f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, dtype={self.dtype.name})")

    def _where(self, what: str) -> str:
        return f"Conv2D({self.in_channels} -> {self.out_channels}).{what}"

    def forward(self, input: np.ndarray) -> np.ndarray:
        x = layer_input(input, self.dtype, self._where("forward"))
        if x.ndim != 4:
            raise ValueError(f"{self._where('forward')}: expected input of shape (N, {self.in_channels}, H, W), "
                             f"got {x.shape}")
        output = _core.conv2d(x, self.weights, self.bias, self.stride, self.padding, self.dilation)
        self.input, self.output = x, output
        return output

    def backward(self, output_gradient: np.ndarray, learning_rate: Optional[float] = None, *,
                 need_input_gradient: bool = True) -> Optional[np.ndarray]:
        """Fill ``weights_gradient`` and ``bias_gradient``; apply SGD when ``learning_rate`` is given.
        Returns the input gradient, or None (not computed) with ``need_input_gradient=False``."""
        where = self._where("backward")
        need_input_gradient = check_bool(need_input_gradient, "need_input_gradient", where)
        self._require_forward()
        self._check_gradients_apart(where)
        gradient = layer_input(output_gradient, self.dtype, where, "output_gradient")
        check_gradient_shape(gradient, self.output.shape, where)
        input_gradient, _, _ = _core.conv2d_backward(
            self.input, self.weights, gradient, self.stride, self.padding, self.dilation, need_input_gradient,
            self.weights_gradient, self.bias_gradient,
        )
        self._apply_sgd(learning_rate, where)
        return input_gradient

    def parameters(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(self.weights, self.weights_gradient), (self.bias, self.bias_gradient)]

    def get_config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "dilation": list(self.dilation),
            "dtype": self.dtype.name,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Conv2D":
        return cls(**config, init="zeros")

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights, "bias": self.bias}


@register_layer
class Convolutional(Layer):
    """The classic from-scratch convolutional layer: valid cross-correlation of one
    ``(depth_in, height, width)`` sample (or a batch ``(N, depth_in, height, width)``) with
    ``depth`` kernels of shape ``(depth_in, kernel_size, kernel_size)``, plus a bias per output
    position: ``kernels`` ``(depth, depth_in, k, k)``, ``biases`` ``(depth, height-k+1, width-k+1)``.

    ``init`` draws the kernels (default ``"standard_normal"``, as the classic code's randn); with
    ``"standard_normal"`` the biases are drawn from N(0, 1) as well, otherwise they start at zero.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        kernel_size: int,
        depth: int,
        *,
        init: Union[str, Initializer] = "standard_normal",
        dtype: Union[str, type, np.dtype] = np.float32,
    ) -> None:
        super().__init__()
        where = "Convolutional"
        try:
            dims = tuple(input_shape)
        except TypeError:
            raise TypeError(f"{where}: expected input_shape to be (depth, height, width), got {input_shape!r}") from None
        if len(dims) != 3:
            raise ValueError(f"{where}: expected input_shape to be (depth, height, width), got {input_shape!r}")
        self.input_shape = tuple(check_positive_int(d, "every dimension of input_shape", where) for d in dims)
        self.kernel_size = check_positive_int(kernel_size, "kernel_size", where)
        self.depth = check_positive_int(depth, "depth", where)
        self.dtype = check_float_dtype(dtype, where)
        depth_in, height, width = self.input_shape
        k = self.kernel_size
        if k > height or k > width:
            raise ValueError(f"{where}: kernel_size {k} is larger than the input {height} x {width} "
                             f"(input_shape {self.input_shape})")
        self.output_shape = (self.depth, height - k + 1, width - k + 1)
        self.kernels_shape = (self.depth, depth_in, k, k)
        self.kernels = _kernels(init, self.kernels_shape, self.dtype, where)
        if isinstance(init, str) and init == "standard_normal":
            self.biases = generator().standard_normal(self.output_shape).astype(self.dtype)
        else:
            self.biases = np.zeros(self.output_shape, dtype=self.dtype)
        self.kernels_gradient = np.zeros_like(self.kernels)
        self.biases_gradient = np.zeros_like(self.biases)
        self._single = False

    def __repr__(self) -> str:
        return (f"Convolutional({self.input_shape}, kernel_size={self.kernel_size}, depth={self.depth}, "
                f"dtype={self.dtype.name})")

    def forward(self, input: np.ndarray) -> np.ndarray:
        where = "Convolutional.forward"
        x = layer_input(input, self.dtype, where)
        # One sample or a batch: a local, not an attribute, until the result is made, since the
        # kernel releases the GIL and another thread's forward may run meanwhile.
        single = x.shape == self.input_shape
        if single:
            x = x[np.newaxis]
        elif not (x.ndim == 4 and x.shape[1:] == self.input_shape):
            raise ValueError(f"{where}: expected input of shape {self.input_shape} or (N,) + {self.input_shape}, "
                             f"got {x.shape}")
        y = _core.conv2d(x, self.kernels, None)
        y += self.biases
        output = y[0] if single else y
        self._single, self.input, self.output = single, x, output
        return output

    def backward(self, output_gradient: np.ndarray, learning_rate: Optional[float] = None) -> np.ndarray:
        """Fill ``kernels_gradient`` and ``biases_gradient``; apply SGD when ``learning_rate`` is given."""
        where = "Convolutional.backward"
        self._require_forward()
        self._check_gradients_apart(where)
        gradient = layer_input(output_gradient, self.dtype, where, "output_gradient")
        check_gradient_shape(gradient, self.output.shape, where)
        g = gradient[np.newaxis] if self._single else gradient
        input_gradient, _, _ = _core.conv2d_backward(self.input, self.kernels, g, 1, 0, 1, True, self.kernels_gradient)
        np.sum(g, axis=0, out=self.biases_gradient)
        self._apply_sgd(learning_rate, where)
        return input_gradient[0] if self._single else input_gradient

    def parameters(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(self.kernels, self.kernels_gradient), (self.biases, self.biases_gradient)]

    def get_config(self) -> dict[str, Any]:
        return {"input_shape": list(self.input_shape), "kernel_size": self.kernel_size, "depth": self.depth,
                "dtype": self.dtype.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Convolutional":
        return cls(**config, init="zeros")

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"kernels": self.kernels, "biases": self.biases}


class _Pool2D(Layer):
    """Shared body of MaxPool2D and AvgPool2D: windows of ``kernel_size`` moved by ``stride``
    (default: the kernel size) over ``(N, C, H, W)`` batches, no padding, no parameters."""

    _forward = staticmethod(_core.max_pool2d)
    _backward = staticmethod(_core.max_pool2d_backward)

    def __init__(self, kernel_size: Pair, stride: Optional[Pair] = None) -> None:
        super().__init__()
        where = type(self).__name__
        self.kernel_size = _pair(kernel_size, "kernel_size", where, 1)
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride", where, 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride})"

    def forward(self, input: np.ndarray) -> np.ndarray:
        where = f"{type(self).__name__}.forward"
        x = layer_input(input, None, where)
        if x.ndim != 4:
            raise ValueError(f"{where}: expected input of shape (N, C, H, W), got {x.shape}")
        output = type(self)._forward(x, self.kernel_size, self.stride)
        self.input, self.output = x, output
        return output

    def backward(self, output_gradient: np.ndarray, learning_rate: Optional[float] = None) -> np.ndarray:
        where = f"{type(self).__name__}.backward"
        self._require_forward()
        gradient = layer_input(output_gradient, self.input.dtype, where, "output_gradient")
        check_gradient_shape(gradient, self.output.shape, where)
        return type(self)._backward(self.input, gradient, self.kernel_size, self.stride)

    def get_config(self) -> dict[str, Any]:
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride)}


@register_layer
class MaxPool2D(_Pool2D):
    """Maximum of each window (the first one on ties; NaN propagates, as in PyTorch)."""


@register_layer
class AvgPool2D(_Pool2D):
    """Mean of each window."""

    _forward = staticmethod(_core.avg_pool2d)
    _backward = staticmethod(_core.avg_pool2d_backward)
