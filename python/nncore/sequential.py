"""Sequential: a list of layers with Keras-style ``fit``/``predict``/``evaluate``/``save``."""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
import time
import warnings
from typing import Any, Callable, Iterable, Optional, Sequence, TypeVar, Union

import numpy as np

from . import engine
from . import losses as losses_module
from . import optim
from ._files import file_path
from ._random import generator, seed as seed_generator
from ._validation import as_float_array, check_bool, check_positive_int
from .activations import Softmax
from .callbacks import Callback
from .history import History
from .network import check_distinct_layers, check_network, network_dtype
from .ops import all_finite
from .serialization import ModelFileError, load_layers, save_layers

PathLike = Union[str, "os.PathLike[str]"]
Data = Any  # numpy arrays or nested lists


# One lock per model, held by fit for its whole run and by forward/backward and the layer-by-layer
# predict/evaluate (also when the classic predict/train get the model), and by save, copy_state
# and load_state, which must not see a half-applied optimizer step: layers keep their forward
# inputs for backward, so a prediction from another thread during a fit would replace the inputs
# the fit's backward then reads. (Sequential's engine paths keep nothing on the layers and have
# the engine's lock; the single-sample predict does not take this one.) Layers shared with another
# model or list are not covered. A callback that waits for another thread using the same model
# deadlocks.
_model_locks_guard = threading.Lock()
_Method = TypeVar("_Method", bound=Callable[..., Any])


def model_lock(model: Any) -> threading.RLock:
    lock = model.__dict__.get("_nncore_lock")
    if lock is None:
        with _model_locks_guard:
            lock = model.__dict__.setdefault("_nncore_lock", threading.RLock())
    return lock


def _holding_model_lock(method: _Method) -> _Method:
    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        with model_lock(self):
            return method(self, *args, **kwargs)

    return run  # type: ignore[return-value]


class Sequential:
    """A network: ``layers`` applied in order, trained with ``fit``.

    ``Sequential([Dense(784, 256), ReLU(), Dense(256, 10)])``. The layers stay ordinary objects
    (``model.layers[0].weights``), and a user's own ``Layer`` subclass can sit beside the native
    ones. The model is also a sequence of its layers, so the classic ``nncore.predict(model, x)``
    and ``nncore.train(model, ...)`` accept it.
    """

    def __init__(self, layers: Sequence[Any]) -> None:
        self.layers: list[Any] = check_network(layers, "Sequential")
        self.loss: Optional[losses_module.Loss] = None
        self.optimizer: Optional[optim.Optimizer] = None
        self.stop_training = False

    def __getstate__(self) -> dict[str, Any]:
        # Pickles and copies take the layers and settings, not the native engine, the remembered
        # prediction plan or the lock (none of which can be pickled; they are rebuilt on use).
        return {k: v for k, v in self.__dict__.items() if k not in ("_nncore_engine", "_nncore_predictor", "_nncore_lock")}

    # -- the list of layers ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> Any:
        return self.layers[index]

    def __iter__(self) -> Any:
        return iter(self.layers)

    def __repr__(self) -> str:
        return "Sequential([" + ", ".join(repr(layer) for layer in self.layers) + "])"

    @property
    def dtype(self) -> np.dtype:
        """The dtype inputs are converted to: that of the first Dense layer, else float32."""
        return network_dtype(self.layers)

    def parameters(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every layer's ``(parameter, gradient)`` pairs, in layer order."""
        return [pair for layer in self.layers for pair in _parameters_of(layer)]

    @_holding_model_lock
    def copy_state(self) -> list[dict[str, np.ndarray]]:
        """A copy of every layer's ``state_dict()`` (for ``load_state``)."""
        return [{name: np.array(value, copy=True) for name, value in _state_of(layer).items()} for layer in self.layers]

    @_holding_model_lock
    def load_state(self, state: list[dict[str, np.ndarray]]) -> None:
        """Copy what ``copy_state`` returned back into the parameters, in place. All or nothing:
        when a layer refuses its state, the layers before it get their previous values back."""
        if len(state) != len(self.layers):
            raise ValueError(f"Sequential.load_state: expected {len(self.layers)} layer states, got {len(state)}")
        previous = self.copy_state()
        done = 0
        try:
            for layer, layer_state in zip(self.layers, state):
                if layer_state or _state_of(layer):
                    layer.load_state_dict(layer_state)
                done += 1
        except BaseException:  # (the refusing layer too: a user's load_state_dict may have begun)
            for layer, layer_state in zip(self.layers[: done + 1], previous):
                if layer_state:
                    layer.load_state_dict(layer_state)
            raise

    # -- running the network --------------------------------------------------------------------
    @_holding_model_lock
    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        """Run one batch through every layer, with ``training`` set on each layer."""
        self._set_training(training)
        return self._run(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    @_holding_model_lock
    def backward(self, gradient: np.ndarray, learning_rate: Optional[float] = None, *,
                 input_gradient: bool = True) -> Optional[np.ndarray]:
        """Back-propagate ``gradient`` (d loss / d output) through every layer, filling the
        parameter gradients. Layers that list their parameters get ``learning_rate=None`` (an
        optimizer updates them); a user's classic layer that keeps its parameters to itself gets
        ``learning_rate`` and updates itself as in ``nncore.train``. Returns the gradient with
        respect to the network's input; with ``input_gradient=False`` the first layer may skip it
        (a Dense or Conv2D first layer does, and None is returned)."""
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            rate = None if _lists_parameters(layer) else learning_rate
            if i == 0 and not input_gradient and getattr(layer, "_skips_input_gradient", False):
                return layer.backward(gradient, rate, need_input_gradient=False)
            gradient = layer.backward(gradient, rate)
        return gradient

    def _set_training(self, training: bool) -> None:
        for layer in self.layers:
            layer.training = training

    def predict(self, x: Data, batch_size: Optional[int] = None) -> np.ndarray:
        """Outputs for ``x`` (rows are samples), in inference mode (Dropout off). With
        ``batch_size``, the samples go through in chunks of that many, bounding memory."""
        if batch_size is None:
            outputs = engine.predict_rows(self, self.layers, x)
            if outputs is not None:  # the layers are in inference mode
                return outputs
        inputs = self._inputs(x, "Sequential.predict")
        batch_size = _batch_size_or_all(batch_size, len(inputs), "Sequential.predict")
        outputs = self._engine_predict(inputs)
        return outputs if outputs is not None else self._predict_rows(inputs, batch_size)

    def _engine_predict(self, inputs: np.ndarray) -> Optional[np.ndarray]:
        """All of ``inputs`` through the native engine (rows are independent, so ``batch_size``
        cannot change the values), or None when the network needs the Python path."""
        planned = engine.predictor(self, self.layers)
        if planned is None:
            return None
        p, runner = planned
        rows = engine.input_rows(p, inputs)
        if rows is None or rows[0].dtype != p.dtype:
            return None
        self._set_training(False)
        return runner.predict(rows[0]).reshape((len(inputs),) + rows[1])

    @_holding_model_lock
    def _predict_rows(self, inputs: np.ndarray, batch_size: int) -> np.ndarray:
        if batch_size >= len(inputs):
            return np.array(self.forward(inputs, training=False), copy=True)
        first = self.forward(inputs[:batch_size], training=False)
        outputs = np.empty((len(inputs),) + first.shape[1:], dtype=first.dtype)
        outputs[:batch_size] = first
        for start in range(batch_size, len(inputs), batch_size):
            outputs[start : start + batch_size] = self.forward(inputs[start : start + batch_size], training=False)
        return outputs

    def evaluate(
        self, x: Data, y: Data, batch_size: Optional[int] = None, *, loss: Any = None
    ) -> dict[str, float]:
        """Mean loss (and accuracy, for classification losses) over all of ``x``/``y``, in
        inference mode. ``loss`` defaults to the one the last ``fit`` used."""
        where = "Sequential.evaluate"
        loss_fn = self._resolve_loss(loss, where)
        inputs = self._inputs(x, where)
        targets = self._targets(loss_fn, y, inputs, where)
        return self._evaluate_rows(loss_fn, inputs, targets, _batch_size_or_all(batch_size, len(inputs), where))

    def _evaluate_rows(
        self, loss_fn: losses_module.Loss, inputs: np.ndarray, targets: np.ndarray, batch_size: int
    ) -> dict[str, float]:
        data = engine.prepare(self, self.layers, loss_fn, inputs, targets, training=False)
        if data is not None:
            self._set_training(False)
            return engine.evaluate(data, batch_size)
        return self._evaluate_layers(loss_fn, inputs, targets, batch_size)

    @_holding_model_lock
    def _evaluate_layers(
        self, loss_fn: losses_module.Loss, inputs: np.ndarray, targets: np.ndarray, batch_size: int
    ) -> dict[str, float]:
        meter = _Meter(loss_fn)
        for start in range(0, len(inputs), batch_size):
            outputs = self.forward(inputs[start : start + batch_size], training=False)
            y_batch = targets[start : start + batch_size]
            meter.add(loss_fn(y_batch, outputs), y_batch, outputs)
        return meter.logs()

    # -- training -------------------------------------------------------------------------------
    @_holding_model_lock
    def fit(
        self,
        x: Data,
        y: Data,
        epochs: int = 1,
        batch_size: int = 32,
        loss: Any = None,
        optimizer: Any = None,
        validation_data: Optional[tuple[Data, Data]] = None,
        validation_split: float = 0.0,
        shuffle: bool = True,
        seed: Optional[int] = None,
        callbacks: Iterable[Any] = (),
        verbose: int = 1,
    ) -> History:
        """Train on ``x``/``y`` for ``epochs`` passes in mini-batches of ``batch_size``.

        - ``loss``: a name (``"mse"``, ``"mae"``, ``"binary_cross_entropy"``, ``"cross_entropy"``,
          ...) or a ``nncore.losses.Loss``; defaults to the previous fit's. For ``"cross_entropy"``
          the network outputs logits and ``y`` holds integer labels or one-hot rows.
        - ``optimizer``: a name (``"sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``, default
          settings) or a ``nncore.optim`` optimizer; defaults to the previous fit's, else
          ``Adam()``. Passing the same optimizer object again continues with its state.
        - ``validation_data=(x_val, y_val)`` or ``validation_split`` (the last fraction of the
          samples, taken before shuffling) adds ``val_loss``/``val_accuracy`` after each epoch.
        - ``shuffle``: reorder the samples every epoch; ``seed``: calls ``nncore.seed(seed)``
          first, which fixes shuffling and dropout (weights are initialised when layers are made).
          The last batch of an epoch may be smaller than ``batch_size``.
        - ``callbacks``: ``nncore.callbacks`` objects (EarlyStopping, ModelCheckpoint, your own
          ``Callback``) and a learning-rate scheduler from ``nncore.optim`` (at most one, stepped once per epoch).
        - ``verbose``: 0 silent, 1 a progress bar per epoch, 2 one line per epoch. (When the
          native engine runs the epoch, see ``nncore.engine``, the bar advances in about 50 steps
          per epoch rather than per batch.)

        Returns a ``History``. Raises FloatingPointError naming the epoch and batch if the loss
        becomes NaN or infinite; the parameters then hold the last update's values.
        """
        where = "Sequential.fit"
        loss_fn = self._resolve_loss(loss, where)
        opt = self._resolve_optimizer(optimizer, where)
        epochs = _check_count(epochs, "epochs", where)
        batch_size = check_positive_int(batch_size, "batch_size", where)
        if verbose not in (0, 1, 2) or isinstance(verbose, bool):
            raise ValueError(f"{where}: expected verbose to be 0, 1 or 2, got {verbose!r}")
        check_bool(shuffle, "shuffle", where)
        hooks, scheduler = _split_callbacks(callbacks, opt, where)
        check_distinct_layers(self.layers, where)
        _warn_about_double_softmax(self.layers, loss_fn)

        inputs = self._inputs(x, where, check_finite=True)
        targets = self._targets(loss_fn, y, inputs, where)
        validation = self._validation(loss_fn, inputs, targets, validation_data, validation_split, where)
        if validation is not None and validation_data is None:
            n_train = len(inputs) - len(validation[0])
            inputs, targets = inputs[:n_train], targets[:n_train]
        self._check_before_training(loss_fn, inputs, targets, validation, batch_size, where)
        if seed is not None:
            seed_generator(seed)

        self.loss, self.optimizer = loss_fn, opt
        self.stop_training = False
        history = History()
        for hook in hooks:
            hook.set_model(self)
            hook.on_train_begin()
        logs: dict[str, float] = {}
        try:
            for epoch in range(epochs):
                for hook in hooks:
                    hook.on_epoch_begin(epoch)
                started = time.perf_counter()
                logs = self._train_epoch(loss_fn, opt, inputs, targets, batch_size, bool(shuffle), epoch, epochs, verbose)
                if validation is not None:
                    val = self._evaluate_rows(loss_fn, validation[0], validation[1], max(batch_size, 1024))
                    logs.update({f"val_{name}": value for name, value in val.items()})
                logs["lr"] = opt.lr
                seconds = time.perf_counter() - started
                history.append(epoch, logs)
                if verbose:
                    _report_epoch(epoch, epochs, seconds, logs, verbose)
                if scheduler is not None:
                    scheduler.step()
                for hook in hooks:
                    hook.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        finally:
            self._set_training(False)
        for hook in hooks:
            hook.on_train_end(logs)
        return history

    def _train_epoch(
        self,
        loss_fn: losses_module.Loss,
        opt: optim.Optimizer,
        inputs: np.ndarray,
        targets: np.ndarray,
        batch_size: int,
        shuffle: bool,
        epoch: int,
        epochs: int,
        verbose: int,
    ) -> dict[str, float]:
        data = engine.prepare(self, self.layers, loss_fn, inputs, targets, training=True)
        spec = engine.optimizer_spec(opt) if data is not None else None
        if data is not None and spec is not None:
            return self._train_epoch_engine(data, spec, opt, batch_size, shuffle, (epoch, epochs, verbose))
        n = len(inputs)
        n_batches = -(-n // batch_size)
        order = generator().permutation(n) if shuffle else None
        # Shuffled batches are gathered into buffers reused across the epoch.
        x_buffer = np.empty((min(batch_size, n),) + inputs.shape[1:], dtype=inputs.dtype) if shuffle else None
        y_buffer = np.empty((min(batch_size, n),) + targets.shape[1:], dtype=targets.dtype) if shuffle else None
        parameters = self.parameters()
        meter = _Meter(loss_fn)
        bar = _progress_bar(n_batches, epoch, epochs) if verbose == 1 else None
        self._set_training(True)
        try:
            for batch in range(n_batches):
                start = batch * batch_size
                stop = min(start + batch_size, n)
                if order is None:
                    x_batch, y_batch = inputs[start:stop], targets[start:stop]
                else:
                    assert x_buffer is not None and y_buffer is not None
                    x_batch = np.take(inputs, order[start:stop], axis=0, out=x_buffer[: stop - start])
                    y_batch = np.take(targets, order[start:stop], axis=0, out=y_buffer[: stop - start])
                outputs = self._run(x_batch)
                value, gradient = loss_fn.value_and_gradient(y_batch, outputs)
                if not math.isfinite(value):
                    raise _diverged(value, epoch, batch, n_batches, start, stop)
                self.backward(gradient, opt.lr, input_gradient=False)
                opt.step(parameters)
                meter.add(value, y_batch, outputs)
                if bar is not None:
                    bar.update(1)
                    if batch % 25 == 0 or batch == n_batches - 1:
                        bar.set_postfix(meter.logs(), refresh=False)
        finally:
            if bar is not None:
                bar.close()
        return meter.logs()

    def _train_epoch_engine(
        self, data: engine.Data, spec: tuple[str, dict[str, Any]], opt: optim.Optimizer, batch_size: int,
        shuffle: bool, progress: tuple[int, int, int],
    ) -> dict[str, float]:
        """``_train_epoch`` in the native engine: the same batches in the same order (the
        permutation comes from the same generator), the same kernels, the same sums.
        ``progress`` is (epoch, epochs, verbose)."""
        epoch, epochs, verbose = progress
        n = len(data.x)
        n_batches = -(-n // batch_size)
        order = generator().permutation(n) if shuffle else None
        state = engine.OptimizerState(opt, engine.parameters_of(data.plan), f"{type(opt).__name__}.step")
        bar = _progress_bar(n_batches, epoch, epochs) if verbose == 1 else None
        # With a bar, the epoch runs in chunks: at most 50 per epoch, and (after the first) each
        # of about _BAR_SECONDS, since every call has a cost (on the sparse-input path, layer 0's
        # arrays change layout on the way in and out). Chunking never changes the results.
        chunk = n_batches if bar is None else max(1, -(-n_batches // 50))
        result: dict[str, Any] = {"loss_sum": 0.0, "correct": 0, "counted": 0}
        self._set_training(True)
        try:
            first = 0
            while first < n_batches:
                last = min(first + chunk, n_batches)
                started = time.perf_counter()
                result = data.engine.run_epoch(
                    data.x, data.y, order, batch_size, data.loss, spec[0], spec[1], state.arrays, state.steps,
                    opt.clip_norm, first, last, result["loss_sum"], result["correct"],
                    result["counted"], data.classification, data.sparse, engine.flush_denormals(),
                )
                first = last
                if bar is not None:
                    rate = result["batches"] / max(time.perf_counter() - started, 1e-9)
                    chunk = max(chunk, int(rate * _BAR_SECONDS))
                state.finish(result["batches"])
                failed = result["failed_batch"]
                if failed is not None:
                    start = failed * batch_size
                    stop = min(start + batch_size, n)
                    raise _diverged(result["failed_value"], epoch, failed, n_batches, start, stop)
                if bar is not None:
                    bar.update(result["batches"])
                    bar.set_postfix(engine.logs_of(result, n, data.classification), refresh=False)
        finally:
            if bar is not None:
                bar.close()
        return engine.logs_of(result, n, data.classification)

    # -- argument handling ----------------------------------------------------------------------
    def _resolve_loss(self, loss: Any, where: str) -> losses_module.Loss:
        if loss is not None:
            return losses_module.get(loss)
        if self.loss is None:
            raise ValueError(f"{where}: no loss given; pass loss='mse', 'cross_entropy', ... or a nncore.losses.Loss")
        return self.loss

    def _resolve_optimizer(self, optimizer: Any, where: str) -> optim.Optimizer:
        if optimizer is not None:
            return optim.get(optimizer)
        return self.optimizer if self.optimizer is not None else optim.Adam()

    def _inputs(self, x: Data, where: str, check_finite: bool = False) -> np.ndarray:
        inputs = as_float_array(x, self.dtype, "x", where)
        if inputs.ndim == 0:
            raise ValueError(f"{where}: expected x with a sample axis (rows are samples), got a scalar")
        if len(inputs) == 0:
            raise ValueError(f"{where}: x has no samples (shape {inputs.shape})")
        if check_finite and not all_finite(inputs):
            raise ValueError(f"{where}: x contains NaN or infinity")
        return inputs

    def _targets(self, loss_fn: losses_module.Loss, y: Data, inputs: np.ndarray, where: str) -> np.ndarray:
        targets = loss_fn.prepare_targets(y, self.dtype)
        if targets.ndim == 0 or len(targets) != len(inputs):
            raise ValueError(
                f"{where}: x has {len(inputs)} samples (shape {inputs.shape}) but y has "
                f"{len(targets) if targets.ndim else 0} (shape {targets.shape})"
            )
        if targets.dtype.kind == "f" and not all_finite(targets):
            raise ValueError(f"{where}: y contains NaN or infinity")
        return targets

    def _check_before_training(
        self, loss_fn: losses_module.Loss, inputs: np.ndarray, targets: np.ndarray,
        validation: Optional[tuple[np.ndarray, np.ndarray]], batch_size: int, where: str,
    ) -> None:
        """What a later batch, or the validation pass after the first epoch, would refuse, refused
        before any parameter changes: validation data whose first batch does not go through the
        network and the loss, and class labels outside the network's outputs. (The number of
        outputs comes from that validation batch, else from one training sample; when that
        prediction fails, training reports the problem as before.)"""
        classes = None
        if validation is not None:
            x_val, y_val = validation
            try:
                output = self.predict(x_val[:batch_size])
                loss_fn(y_val[:batch_size], output)
            except (ValueError, TypeError) as error:
                kind = ValueError if isinstance(error, ValueError) else TypeError
                raise kind(
                    f"{where} (validation data): the first {min(batch_size, len(x_val))} samples do not go through: {error}"
                ) from error
            classes = output.shape[-1]
        if not isinstance(loss_fn, losses_module.CrossEntropy):
            return
        if classes is None:
            try:
                classes = self.predict(inputs[:1]).shape[-1]
            except (ValueError, TypeError):
                return
        checks = [(targets, where)] + ([(validation[1], f"{where} (validation data)")] if validation is not None else [])
        for labels, at in checks:
            outside = np.flatnonzero((labels < 0) | (labels >= classes)) if labels.ndim == 1 else ()
            if len(outside):
                raise ValueError(
                    f"{at}: the class label {labels[outside[0]]} of sample {outside[0]} is outside 0..{classes - 1} "
                    f"(the network has {classes} outputs; {len(outside)} labels are outside)"
                )

    def _validation(
        self,
        loss_fn: losses_module.Loss,
        inputs: np.ndarray,
        targets: np.ndarray,
        validation_data: Optional[tuple[Data, Data]],
        validation_split: float,
        where: str,
    ) -> Optional[tuple[np.ndarray, np.ndarray]]:
        if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float, np.floating)):
            raise TypeError(f"{where}: expected validation_split to be a number, got {type(validation_split).__name__}")
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(f"{where}: expected 0 <= validation_split < 1, got {validation_split}")
        if validation_data is not None:
            if validation_split:
                raise ValueError(f"{where}: pass validation_data or validation_split, not both")
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError(f"{where}: expected validation_data=(x_val, y_val)")
            x_val = self._inputs(validation_data[0], f"{where} (validation_data)", check_finite=True)
            return x_val, self._targets(loss_fn, validation_data[1], x_val, f"{where} (validation_data)")
        if not validation_split:
            return None
        n_val = int(len(inputs) * validation_split)
        if n_val == 0 or n_val == len(inputs):
            raise ValueError(
                f"{where}: validation_split={validation_split} of {len(inputs)} samples leaves "
                f"{n_val} for validation and {len(inputs) - n_val} for training; both must be >= 1"
            )
        return inputs[-n_val:], targets[-n_val:]

    # -- description and files ------------------------------------------------------------------
    def summary(self, input_shape: Optional[Sequence[int]] = None, *, print_fn: Any = print) -> str:
        """A table of the layers, their output shapes (for one sample of ``input_shape``,
        inferred from the first layer when it is a Dense or Reshape) and parameter counts;
        printed with ``print_fn`` (None: only returned)."""
        shape = _input_shape(self.layers[0], input_shape)
        rows = [("Layer", "Output shape", "Parameters")]
        total = 0
        sample = np.zeros((1,) + shape, dtype=self.dtype) if shape is not None else None
        self._set_training(False)
        for i, layer in enumerate(self.layers):
            count = sum(int(np.asarray(p).size) for p in _state_of(layer).values())
            total += count
            output_text = "?"
            if sample is not None:
                sample = layer.forward(sample)
                output_text = str((None,) + tuple(np.shape(sample))[1:])
            rows.append((f"{i}: {layer!r}", output_text, f"{count:,}"))
        widths = [max(len(row[c]) for row in rows) for c in range(3)]
        rule = "-" * (sum(widths) + 4)
        lines = [rule]
        for r, row in enumerate(rows):
            lines.append(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}")
            if r == 0:
                lines.append(rule)
        lines += [rule, f"Total parameters: {total:,} ({self.dtype.name})"]
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    @_holding_model_lock
    def save(self, path: PathLike) -> None:
        """Write the architecture and parameters to one ``.safetensors`` file, atomically (a
        crash mid-save keeps any previous file). Layers must be native or registered with
        ``@nncore.register_layer``; otherwise nothing is written and TypeError says why. A
        ``fit`` running in another thread finishes first (the file never holds a half-updated
        model)."""
        save_layers(self.layers, path, extra_metadata={"model": "Sequential"})


def load(path: PathLike) -> Sequential:
    """Read a model written by ``Sequential.save``. Every problem with the file raises
    ``nncore.ModelFileError``; no code from the file is ever run."""
    source = file_path(path, "nncore.load")
    layers = load_layers(source)
    if not layers:  # save_layers([]) writes such a file; a Sequential needs a layer
        raise ModelFileError(f"{source}: the file holds no layers, a Sequential needs at least one")
    return Sequential(layers)


# -- helpers ---------------------------------------------------------------------------------------
def _parameters_of(layer: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    parameters = getattr(layer, "parameters", None)
    return list(parameters()) if callable(parameters) else []


def _lists_parameters(layer: Any) -> bool:
    return bool(_parameters_of(layer))


def _state_of(layer: Any) -> dict[str, np.ndarray]:
    state_dict = getattr(layer, "state_dict", None)
    return dict(state_dict()) if callable(state_dict) else {}


def _diverged(value: float, epoch: int, batch: int, n_batches: int, start: int, stop: int) -> FloatingPointError:
    return FloatingPointError(
        f"Sequential.fit: the loss became {value} at epoch {epoch + 1}, batch {batch + 1} "
        f"of {n_batches} (samples {start}..{stop - 1} of this epoch's order); "
        "lower the learning rate, clip gradients (clip_norm=...) or check the data"
    )


def _check_count(value: Any, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: expected {name} to be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{where}: expected {name} >= 0, got {value}")
    return int(value)


def _batch_size_or_all(batch_size: Optional[int], n: int, where: str) -> int:
    return n if batch_size is None else check_positive_int(batch_size, "batch_size", where)


def _split_callbacks(
    callbacks: Iterable[Any], opt: optim.Optimizer, where: str
) -> tuple[list[Callback], Optional[optim.LRScheduler]]:
    """The callbacks' hooks, and the one learning-rate scheduler (None without)."""
    if callbacks is None:
        callbacks = ()
    if isinstance(callbacks, (Callback, optim.LRScheduler)):
        callbacks = [callbacks]
    try:
        callbacks = list(callbacks)
    except TypeError:
        raise TypeError(f"{where}: expected callbacks to be a list of callbacks, got {type(callbacks).__name__}") from None
    hooks: list[Callback] = []
    scheduler: Optional[optim.LRScheduler] = None
    seen: set[int] = set()
    for item in callbacks:
        if id(item) in seen:
            raise ValueError(f"{where}: the callback {type(item).__name__} is listed twice (it would run twice per epoch)")
        seen.add(id(item))
        if isinstance(item, optim.LRScheduler):
            if item.optimizer is not opt:
                raise ValueError(f"{where}: the scheduler {type(item).__name__} drives another optimizer than the one fit uses")
            if scheduler is not None:
                # Each sets optimizer.lr from its own epoch count, so only the last one would count.
                raise ValueError(
                    f"{where}: expected at most one learning-rate scheduler, got {type(scheduler).__name__} "
                    f"and {type(item).__name__}: each would overwrite the other's learning rate"
                )
            scheduler = item
        elif isinstance(item, Callback):
            hooks.append(item)
        else:
            raise TypeError(
                f"{where}: expected callbacks to hold nncore.callbacks.Callback or nncore.optim.LRScheduler "
                f"objects, got {type(item).__name__}"
            )
    return hooks, scheduler


def _warn_about_double_softmax(layers: list[Any], loss_fn: losses_module.Loss) -> None:
    if isinstance(loss_fn, losses_module.CrossEntropy) and isinstance(layers[-1], Softmax):
        warnings.warn(
            "Sequential.fit: the network ends in Softmax but the cross_entropy loss applies softmax "
            "itself (it expects logits); remove the final Softmax layer",
            UserWarning,
            stacklevel=3,
        )


def _input_shape(first: Any, given: Optional[Sequence[int]]) -> Optional[tuple[int, ...]]:
    if given is not None:
        return tuple(check_positive_int(d, "every dimension of input_shape", "Sequential.summary") for d in given)
    if hasattr(first, "input_size"):
        return (int(first.input_size),)
    if hasattr(first, "input_shape"):
        return tuple(first.input_shape)
    return None


class _Meter:
    """Running mean loss (weighted by batch size) and accuracy over an epoch."""

    def __init__(self, loss_fn: losses_module.Loss) -> None:
        self.loss_fn = loss_fn
        self.loss_sum = 0.0
        self.samples = 0
        self.correct = 0
        self.counted = 0
        self.classification = False

    def add(self, value: float, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        self.loss_sum += value * len(y_true)
        self.samples += len(y_true)
        result = self.loss_fn.correct(y_true, y_pred)
        if result is not None:
            self.classification = True
            self.correct += result[0]
            self.counted += result[1]

    def logs(self) -> dict[str, float]:
        logs = {"loss": self.loss_sum / max(self.samples, 1)}
        if self.classification:
            logs["accuracy"] = self.correct / max(self.counted, 1)
        return logs


_BAR_SECONDS = 0.2  # the progress bar's update interval on the engine path


def _progress_bar(n_batches: int, epoch: int, epochs: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=n_batches, desc=f"Epoch {epoch + 1}/{epochs}", unit="batch", leave=True, file=sys.stdout, dynamic_ncols=True)


def _report_epoch(epoch: int, epochs: int, seconds: float, logs: dict[str, float], verbose: int) -> None:
    metrics = " - ".join(f"{name}: {value:.4g}" if name == "lr" else f"{name}: {value:.4f}" for name, value in logs.items())
    if verbose == 2:
        print(f"Epoch {epoch + 1}/{epochs} - {seconds:.2f}s - {metrics}", flush=True)
    elif any(name.startswith("val_") for name in logs):
        print("  validation: " + " - ".join(f"{k}: {v:.4f}" for k, v in logs.items() if k.startswith("val_")), flush=True)
