"""The classic training loop: a network is a plain list of layers."""

from __future__ import annotations

import contextlib
import math
import threading
import weakref
from typing import Any, Callable, ContextManager, Sequence

import numpy as np

from . import engine
from . import losses as losses_module
from ._layout import to_rows
from ._random import generator
from ._validation import FLOAT_DTYPES, as_float_array, check_non_negative_float, check_positive_int
from .ops import all_finite

LossFunction = Callable[[np.ndarray, np.ndarray], float]
LossGradient = Callable[[np.ndarray, np.ndarray], np.ndarray]


def network_dtype(network: Sequence[Any]) -> np.dtype:
    """The dtype of the first layer that has one (Dense), else float32."""
    for layer in network:
        dtype = getattr(layer, "dtype", None)
        if dtype is not None and np.dtype(dtype) in FLOAT_DTYPES:
            return np.dtype(dtype)
    return np.dtype(np.float32)


def check_network(network: Any, where: str) -> list[Any]:
    """The layers of ``network`` (a list or tuple of layers, or a Sequential) as a new list."""
    layers = getattr(network, "layers", None)
    if isinstance(layers, list) and not isinstance(network, (list, tuple)):
        network = layers
    if not isinstance(network, (list, tuple)):
        raise TypeError(f"{where}: expected the network as a list of layers, got {type(network).__name__}")
    if not network:
        raise ValueError(f"{where}: the network has no layers")
    for i, layer in enumerate(network):
        if isinstance(layer, type):
            raise TypeError(f"{where}: network[{i}] is the class {layer.__name__}, not a layer; write {layer.__name__}(...)")
        if not (callable(getattr(layer, "forward", None)) and callable(getattr(layer, "backward", None))):
            raise TypeError(f"{where}: network[{i}] ({type(layer).__name__}) has no forward/backward methods")
    return list(network)


def check_distinct_layers(layers: Sequence[Any], where: str) -> None:
    """Raise ValueError when one layer object sits at two places of a network that is to be
    trained: a layer keeps its forward input for its backward (and fills its gradients there), so
    its second use would overwrite what the first one's backward needs."""
    first: dict[int, int] = {}
    for i, layer in enumerate(layers):
        j = first.setdefault(id(layer), i)
        if j != i:
            raise ValueError(
                f"{where}: layer {i} is the same {type(layer).__name__} object as layer {j}; a layer keeps its "
                "forward input for its backward, so each place in the network needs its own layer object"
            )


def predict(network: Sequence[Any], input: Any) -> np.ndarray:
    """Run ``input`` (one sample, a batch, or nested lists) forward through every layer.

    The input is converted once to the network's dtype (float32 unless its Dense layers are
    float64).
    """
    if type(network) is list:
        native = engine.predict_rows(None, network, input)
        if native is not None:
            _ReplayForward.mark(network, input)
            return native
    layers = check_network(network, "predict")
    output = as_float_array(input, network_dtype(layers), "input", "predict")
    if output.size == 0:
        raise ValueError(f"predict: got an empty input of shape {output.shape}")
    native = _engine_predict(network, layers, output)
    if native is not None:
        _ReplayForward.mark(layers, output)
        return native
    with _model_held(network):
        for layer in layers:
            output = layer.forward(output)
    return output


def _model_held(network: Any) -> ContextManager[Any]:
    """A Sequential's lock (see sequential.model_lock), so that the classic functions given a model
    wait for its fit in another thread; nothing for a plain list."""
    from .sequential import Sequential, model_lock  # (sequential imports this module)

    return model_lock(network) if isinstance(network, Sequential) else contextlib.nullcontext()


class _ReplayForward:
    """A forward pass that the engine ran for ``predict`` in place of the layers' own, which keep no
    inputs then: run again through the layers' ``forward`` (same values) when a layer's
    ``backward`` in the same thread needs them, i.e. when the caller's own loop back-propagates
    the prediction, as the original classic training loop does (see ``Layer._pending_forward``).
    It holds the input, as the layers' own forward would have (the original code's layers hold
    every input and output). A backward in another thread (a fit running there) ignores it."""

    __slots__ = ("layers", "x", "thread")

    def __init__(self, layers: Sequence[Any], x: Any) -> None:
        # Weakly: each layer holds this object, which must not keep the network alive in a cycle.
        self.layers = tuple(map(weakref.ref, layers))
        self.x = x
        self.thread = threading.get_ident()

    @classmethod
    def mark(cls, layers: Sequence[Any], x: Any) -> None:
        replay = cls(layers, x)
        for layer in layers:
            layer._pending_forward = replay

    def __call__(self) -> None:
        if threading.get_ident() != self.thread:
            return
        layers = [ref() for ref in self.layers]
        for layer in layers:
            if layer is not None:
                layer._pending_forward = None
        if any(layer is None for layer in layers):
            raise RuntimeError("backward after predict: a layer of the predicted network no longer exists")
        output = self.x
        for layer in layers:
            output = layer.forward(output)


def train(
    network: Sequence[Any],
    loss: LossFunction,
    loss_prime: LossGradient,
    x_train: Any,
    y_train: Any,
    epochs: int = 1000,
    learning_rate: float = 0.01,
    verbose: bool = True,
    *,
    batch_size: int = 1,
    shuffle: bool = False,
) -> list[float]:
    """Train with plain SGD, the classic way: for each sample (or mini-batch of ``batch_size``
    samples), forward, ``loss_prime``, then every layer's ``backward(gradient, learning_rate)``.

    ``x_train``/``y_train``: arrays or nested lists whose first axis indexes samples, e.g. classic
    columns ``(N, features, 1)`` or rows ``(N, features)``. ``shuffle`` reorders the samples each
    epoch with nncore's seeded generator. Prints ``epoch/epochs, error=...`` per epoch when
    ``verbose``. Returns the mean loss of each epoch. Raises FloatingPointError, naming the epoch
    and sample, as soon as the loss becomes NaN or infinite.
    """
    with _model_held(network):
        return _train(network, loss, loss_prime, x_train, y_train, epochs, learning_rate, verbose, batch_size, shuffle)


def _train(network: Any, loss: LossFunction, loss_prime: LossGradient, x_train: Any, y_train: Any, epochs: int,
           learning_rate: float, verbose: bool, batch_size: int, shuffle: bool) -> list[float]:
    where = "train"
    layers = check_network(network, where)
    check_distinct_layers(layers, where)
    dtype = network_dtype(layers)
    x = as_float_array(x_train, dtype, "x_train", where)
    y = as_float_array(y_train, dtype, "y_train", where)
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"{where}: x_train and y_train must have a sample axis, got shapes {x.shape} and {y.shape}")
    if len(x) != len(y):
        raise ValueError(f"{where}: x_train has {len(x)} samples (shape {x.shape}) but y_train has {len(y)} (shape {y.shape})")
    if len(x) == 0:
        raise ValueError(f"{where}: x_train is empty (shape {x.shape})")
    if not (all_finite(x) and all_finite(y)):
        raise ValueError(f"{where}: x_train or y_train contains NaN or infinity")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"{where}: expected epochs to be an int >= 0, got {epochs!r}")
    lr = check_non_negative_float(learning_rate, "learning_rate", where)
    batch_size = check_positive_int(batch_size, "batch_size", where)
    for name, flag in (("verbose", verbose), ("shuffle", shuffle)):
        if not (flag is None or isinstance(flag, (bool, np.bool_)) or (isinstance(flag, int) and flag in (0, 1))):
            raise TypeError(f"{where}: expected {name} to be True or False, got {flag!r}")
    if not (callable(loss) and callable(loss_prime)):
        raise TypeError(f"{where}: loss and loss_prime must be callables, e.g. nncore.mse and nncore.mse_prime")

    n_samples = len(x)
    history: list[float] = []
    native = _classic_engine(network, layers, loss, loss_prime, x, y)
    if native is not None:
        runner, x_rows, y_rows, loss_name = native
        for epoch in range(int(epochs)):
            order = generator().permutation(n_samples) if shuffle else None
            result = runner.run_epoch(x_rows, y_rows, order, batch_size, loss_name, "sgd_step", {"lr": lr},
                                      flush_denormals=engine.flush_denormals())
            if result["failed_batch"] is not None:
                start = result["failed_batch"] * batch_size
                count = min(batch_size, n_samples - start)
                raise _diverged(where, result["failed_value"], epoch, start, count, order)
            history.append(result["loss_sum"] / n_samples)
            if verbose:
                print(f"{epoch + 1}/{epochs}, error={history[-1]}")
        return history
    for epoch in range(int(epochs)):
        order = generator().permutation(n_samples) if shuffle else None
        error = 0.0
        for start in range(0, n_samples, batch_size):
            if batch_size == 1:
                index = order[start] if order is not None else start
                xb, yb, count = x[index], y[index], 1
            else:
                index = order[start : start + batch_size] if order is not None else slice(start, start + batch_size)
                xb, yb = x[index], y[index]
                count = len(xb)
            output = xb
            for layer in layers:
                output = layer.forward(output)
            batch_error = float(loss(yb, output))
            if not math.isfinite(batch_error):
                raise _diverged(where, batch_error, epoch, start, count, order)
            error += batch_error * count
            gradient = loss_prime(yb, output)
            for layer in reversed(layers):
                gradient = layer.backward(gradient, lr)
        error /= n_samples
        history.append(error)
        if verbose:
            print(f"{epoch + 1}/{epochs}, error={error}")
    return history


def _diverged(where: str, value: float, epoch: int, start: int, count: int, order: Any) -> FloatingPointError:
    """The error for a non-finite loss on the batch at positions start.. of the epoch's order
    (named by the samples' indices in x_train: a range, or the shuffled indices themselves)."""
    if order is None:
        samples = f"samples {start}..{start + count - 1}"
    else:
        picked = [int(i) for i in order[start : start + count]]
        shown = ", ".join(map(str, picked[:8])) + (", ..." if count > 8 else "")
        samples = f"{'sample' if count == 1 else 'samples'} {shown} of x_train (shuffled)"
    return FloatingPointError(
        f"{where}: the loss became {value} at epoch {epoch + 1}, {samples}; lower the learning rate or check the data"
    )


_CLASSIC_LOSSES = {
    (losses_module.mse, losses_module.mse_prime): "classic_mse",
    (losses_module.binary_cross_entropy, losses_module.binary_cross_entropy_prime): "classic_bce",
}


def _classic_engine(
    owner: Any, layers: list[Any], loss: Any, loss_prime: Any, x: np.ndarray, y: np.ndarray
) -> Any:
    """(engine, x rows, y rows, loss name) when ``train`` can run on the native engine: native
    layers only, nncore's own classic loss pair, and sample layouts Dense reads as rows. Each
    sample (or mini-batch) then takes the same kernels in the same order as the loop below."""
    loss_name = _CLASSIC_LOSSES.get((loss, loss_prime))
    p = engine.plan(layers, allow_prefix=False) if loss_name is not None else None
    rows = engine.input_rows(p, x) if p is not None and not p.shares_memory else None
    if rows is None or rows[0].dtype != p.dtype or y.shape != (len(x),) + rows[1] or y.dtype != p.dtype:
        return None
    runner = engine.engine_for(owner, p)
    if runner is None:
        return None
    return runner, rows[0], np.ascontiguousarray(y).reshape(len(y), p.output_size), loss_name


def _engine_predict(owner: Any, layers: list[Any], x: np.ndarray) -> Any:
    planned = engine.predictor(None if isinstance(owner, (list, tuple)) else owner, layers, allow_prefix=False)
    if planned is None or x.dtype != planned[0].dtype:
        return None
    p, runner = planned
    try:
        rows = to_rows(x, p.input_size, "predict")
    except ValueError:
        return None  # the layer-by-layer path raises its own, more specific, error
    if rows.kind in ("column", "columns") and not p.columns_survive:
        return None
    return rows.restore(runner.predict(rows.rows))
