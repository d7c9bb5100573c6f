# Type stub of the compiled module (src/cpp/bindings.cpp); tests/python/test_stub.py keeps the
# names in sync.
from typing import Any, Optional, Sequence, Union

import numpy as np

def cpu_info() -> dict[str, Any]: ...
def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def set_skip_zero_inputs(on: bool) -> None: ...
def skip_zero_inputs() -> bool: ...
# GFLOP/s of a register-only FMA loop on the active ISA (best of short runs, summed over threads).
def fma_peak(dtype: str = "float32", seconds: float = 0.5, threads: int = 1) -> float: ...
# GFLOP/s of the GEMM register tile alone, its operands in L1 (1 thread, best of short runs).
def tile_peak(dtype: str = "float32", seconds: float = 0.5) -> float: ...
def matmul(
    a: np.ndarray, b: np.ndarray, transpose_a: bool = False, transpose_b: bool = False,
    out: Optional[np.ndarray] = None,
) -> np.ndarray: ...
def linear(
    x: np.ndarray, weights: np.ndarray, bias: Optional[np.ndarray] = None,
    activation: str = "identity", alpha: float = 0.0, out: Optional[np.ndarray] = None,
) -> np.ndarray: ...
def linear_backward(
    x: np.ndarray, weights: np.ndarray, output_gradient: np.ndarray,
    need_input_gradient: bool = True, weights_gradient: Optional[np.ndarray] = None,
    bias_gradient: Optional[np.ndarray] = None,
) -> tuple[Optional[np.ndarray], np.ndarray, np.ndarray]: ...
def conv2d(
    x: np.ndarray, weights: np.ndarray, bias: Optional[np.ndarray] = None,
    stride: Union[int, tuple[int, int]] = 1, padding: Union[int, tuple[int, int]] = 0,
    dilation: Union[int, tuple[int, int]] = 1, out: Optional[np.ndarray] = None,
) -> np.ndarray: ...
def conv2d_backward(
    x: np.ndarray, weights: np.ndarray, output_gradient: np.ndarray,
    stride: Union[int, tuple[int, int]] = 1, padding: Union[int, tuple[int, int]] = 0,
    dilation: Union[int, tuple[int, int]] = 1, need_input_gradient: bool = True,
    weights_gradient: Optional[np.ndarray] = None, bias_gradient: Optional[np.ndarray] = None,
) -> tuple[Optional[np.ndarray], np.ndarray, np.ndarray]: ...
def max_pool2d(
    x: np.ndarray, kernel_size: Union[int, tuple[int, int]], stride: Union[int, tuple[int, int], None] = None,
    out: Optional[np.ndarray] = None,
) -> np.ndarray: ...
def avg_pool2d(
    x: np.ndarray, kernel_size: Union[int, tuple[int, int]], stride: Union[int, tuple[int, int], None] = None,
    out: Optional[np.ndarray] = None,
) -> np.ndarray: ...
def max_pool2d_backward(
    x: np.ndarray, output_gradient: np.ndarray, kernel_size: Union[int, tuple[int, int]],
    stride: Union[int, tuple[int, int], None] = None,
) -> np.ndarray: ...
def avg_pool2d_backward(
    x: np.ndarray, output_gradient: np.ndarray, kernel_size: Union[int, tuple[int, int]],
    stride: Union[int, tuple[int, int], None] = None,
) -> np.ndarray: ...
def activation(name: str, x: np.ndarray, alpha: float = 0.0, out: Optional[np.ndarray] = None) -> np.ndarray: ...
def activation_backward(
    name: str, x: Optional[np.ndarray], y: Optional[np.ndarray], output_gradient: np.ndarray,
    alpha: float = 0.0, out: Optional[np.ndarray] = None,
) -> np.ndarray: ...
def exp(x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray: ...
def all_finite(x: np.ndarray) -> bool: ...
def softmax(x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray: ...
def softmax_backward(y: np.ndarray, output_gradient: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray: ...
def squared_error_sum(y_true: np.ndarray, y_pred: np.ndarray) -> float: ...
def squared_error_grad(y_true: np.ndarray, y_pred: np.ndarray, scale: float, out: Optional[np.ndarray] = None) -> np.ndarray: ...
def binary_cross_entropy_sum(y_true: np.ndarray, y_pred: np.ndarray) -> float: ...
def binary_cross_entropy_grad(
    y_true: np.ndarray, y_pred: np.ndarray, scale: float, out: Optional[np.ndarray] = None
) -> np.ndarray: ...
def sgd_step(param: np.ndarray, grad: np.ndarray, lr: float) -> None: ...
def sgd_rank1(weights: np.ndarray, gradient: np.ndarray, input: np.ndarray, lr: float) -> None: ...
def same_attributes(layers: Sequence[Any], names: tuple[tuple[str, ...], ...], expected: tuple[Any, ...]) -> bool: ...
def loss(
    name: str, y_true: np.ndarray, y_pred: np.ndarray, scale: float, need_gradient: bool = True
) -> tuple[float, Optional[np.ndarray]]: ...
def softmax_cross_entropy(
    logits: np.ndarray, target: np.ndarray, scale: float, need_gradient: bool = True
) -> tuple[float, Optional[np.ndarray]]: ...
def sgd_update(
    param: np.ndarray, grad: np.ndarray, momentum_buffer: Optional[np.ndarray], lr: float,
    momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
) -> None: ...
def adam_update(
    param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray, step: int,
    lr: float, beta1: float, beta2: float, eps: float, weight_decay: float, decoupled: bool,
) -> None: ...
def rmsprop_update(
    param: np.ndarray, grad: np.ndarray, square_avg: np.ndarray, lr: float, alpha: float, eps: float,
    weight_decay: float, momentum: float, momentum_buffer: Optional[np.ndarray], centered: bool,
    grad_avg: Optional[np.ndarray],
) -> None: ...
def sum_of_squares(x: np.ndarray) -> float: ...
def scale(x: np.ndarray, factor: float) -> None: ...

class Engine:
    """A network of Dense layers, each optionally followed by a native activation, run natively
    (see nncore.engine). ``layers``: one ``(weights (out, in), bias (out,), weights_gradient,
    bias_gradient, activation name, alpha)`` tuple per Dense; the arrays (writable, C-contiguous,
    all float32 or all float64) are kept alive and updated in place."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str, float]]) -> None: ...
    @property
    def dtype(self) -> np.dtype: ...
    def unchanged(self) -> bool:
        """Whether every array still has the memory, shape, strides and writability it was built with."""
    @property
    def input_size(self) -> int: ...
    @property
    def output_size(self) -> int: ...
    @property
    def workspace_bytes(self) -> int:
        """Bytes of reused workspace (grows to the largest batch seen, then stays)."""
    def predict(self, x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """x (n, input_size) of the engine's dtype -> (n, output_size)."""
    def predict_if_current(
        self, layers: Sequence[Any], names: tuple[tuple[str, ...], ...], expected: tuple[Any, ...], x: Any,
        column: bool = False, inference_mode: bool = False,
    ) -> Optional[np.ndarray]:
        """predict(x) if same_attributes(layers, names, expected) and unchanged() hold and x is a
        C-contiguous ndarray (n, input_size) of the engine's dtype (or, with column, one
        (input_size, 1) column, giving (output_size, 1)); else None. With inference_mode, sets
        every layer's ``training`` to False when it answers."""
    def run_epoch(
        self, x: np.ndarray, y: np.ndarray, order: Optional[np.ndarray], batch_size: int, loss: str,
        optimizer: Optional[str] = None, hyper: dict[str, Any] = ..., state: list[dict[str, np.ndarray]] = ...,
        steps: Optional[np.ndarray] = None, clip_norm: Optional[float] = None, first_batch: int = 0,
        last_batch: Optional[int] = None, loss_sum: float = 0.0, correct: int = 0, counted: int = 0,
        count_accuracy: bool = False, sparse_input: bool = False,
    ) -> dict[str, Any]:
        """Batches [first_batch, last_batch) of an epoch over x (n, input_size) and y ((n,) int64
        labels for cross_entropy, else (n, output_size) rows), gathered by ``order`` (an int64
        permutation) or in order. loss: squared_error, absolute_error, binary_cross_entropy,
        binary_cross_entropy_logits, cross_entropy (means, as nncore.losses), classic_mse or
        classic_bce (nncore.mse / binary_cross_entropy and their _prime). optimizer: None
        (evaluate only), sgd_step (classic plain SGD, hyper {"lr"}), sgd, adam, adamw or rmsprop
        with ``hyper`` (lr, momentum, nesterov, weight_decay, beta1, beta2, eps, alpha, centered),
        one dict of state arrays per parameter (weights0, bias0, weights1, ...) and ``steps``
        (int64 per parameter, incremented in place). Totals continue from loss_sum/correct/counted.
        sparse_input (with sgd, adam, adamw or rmsprop): the first layer reads each batch's
        nonzeros only (see nncore.engine.sparse_input), for batches of at most 2^20 values. Returns loss_sum, correct, counted, batches
        (run by this call), failed_batch (the batch whose loss was not finite, where training
        stopped; None) and failed_value."""
