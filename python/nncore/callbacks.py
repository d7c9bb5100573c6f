"""Callbacks that ``Sequential.fit`` calls around each epoch: early stopping and checkpoints.

A callback sees the model (``self.model``) and each epoch's logs, a dict such as
``{"loss": 0.12, "accuracy": 0.96, "val_loss": 0.15, "val_accuracy": 0.95, "lr": 0.001}``.
Setting ``self.model.stop_training = True`` ends training after the current epoch.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Optional

import numpy as np

from ._files import file_path
from ._validation import check_bool, check_non_negative_float

if TYPE_CHECKING:
    from .sequential import Sequential

Logs = dict[str, float]


class Callback:
    """Base class: override the hooks you need. ``epoch`` counts from 0."""

    model: "Sequential"

    def set_model(self, model: "Sequential") -> None:
        self.model = model

    def on_train_begin(self) -> None:
        pass

    def on_epoch_begin(self, epoch: int) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        pass

    def on_train_end(self, logs: Logs) -> None:
        pass


def _monitored(logs: Logs, monitor: str, where: str) -> float:
    """The monitored value; a name fit does not log is a mistake, never silently ignored."""
    if monitor not in logs:
        hint = " (val_* values need validation_data or validation_split)" if monitor.startswith("val_") else ""
        raise ValueError(f"{where}: monitor {monitor!r} is not logged{hint}; logged values: {sorted(logs)}")
    return float(logs[monitor])


class _Monitor:
    """Tracks the best value of one logged metric: lower is better for losses, higher for
    accuracies (``mode="auto"``), or as ``mode="min"``/``"max"`` says."""

    def __init__(self, monitor: str, mode: str, min_delta: float, where: str) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"{where}: expected monitor to be a metric name such as 'val_loss', got {monitor!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{where}: expected mode 'auto', 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.where = where
        self.maximize = mode == "max" or (mode == "auto" and "acc" in monitor)
        self.min_delta = check_non_negative_float(min_delta, "min_delta", where)
        self.best = -math.inf if self.maximize else math.inf

    def reset(self) -> None:
        self.best = -math.inf if self.maximize else math.inf

    def improved(self, logs: Logs) -> bool:
        """Whether this epoch beats the best by more than min_delta; records it if so."""
        value = _monitored(logs, self.monitor, self.where)
        better = value > self.best + self.min_delta if self.maximize else value < self.best - self.min_delta
        if better:
            self.best = value
        return better


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs
    (at least one). With ``restore_best_weights``, the parameters of the best epoch are put back
    when training ends, so the model is the best one seen, not the last. What is put back is each
    layer's ``state_dict()``: all of nncore's layers, and yours that define it; a classic layer of
    yours that updates itself in ``backward`` and has no ``state_dict()`` keeps its last values."""

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 0,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best_weights: bool = False,
    ) -> None:
        where = "EarlyStopping"
        if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 0:
            raise ValueError(f"{where}: expected patience to be an int >= 0, got {patience!r}")
        self._monitor = _Monitor(monitor, mode, min_delta, where)
        self.monitor = monitor
        self.patience = int(patience)
        self.restore_best_weights = check_bool(restore_best_weights, "restore_best_weights", where)
        self.best_epoch: Optional[int] = None
        self.stopped_epoch: Optional[int] = None
        self._wait = 0
        self._best_state: Optional[list[dict[str, np.ndarray]]] = None

    @property
    def best(self) -> float:
        return self._monitor.best

    def on_train_begin(self) -> None:
        self._monitor.reset()
        self._wait = 0
        self.best_epoch = self.stopped_epoch = None
        self._best_state = None

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if self._monitor.improved(logs):
            self._wait = 0
            self.best_epoch = epoch
            if self.restore_best_weights:
                self._best_state = self.model.copy_state()
            return
        self._wait += 1
        if self._wait >= max(self.patience, 1):
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: Logs) -> None:
        if self._best_state is not None:
            self.model.load_state(self._best_state)


class ModelCheckpoint(Callback):
    """Save the model (``Sequential.save``, atomic) after each epoch, or with ``save_best_only``
    only when ``monitor`` improves. ``path`` may contain ``{epoch}`` and logged names, e.g.
    ``"ckpt-{epoch:02d}-{val_loss:.3f}.safetensors"``. The best value is kept across ``fit``
    calls, so a later fit never replaces the best file with a worse model."""

    def __init__(
        self,
        path: "str | os.PathLike[str]",
        monitor: str = "val_loss",
        save_best_only: bool = False,
        mode: str = "auto",
    ) -> None:
        where = "ModelCheckpoint"
        file_path(path, where)  # (the check; the template is kept as given)
        self.path = os.fsdecode(os.fspath(path))
        self._monitor = _Monitor(monitor, mode, 0.0, where)
        self.monitor = monitor
        self.save_best_only = check_bool(save_best_only, "save_best_only", where)
        self.saved: list[str] = []

    @property
    def best(self) -> float:
        return self._monitor.best

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if self.save_best_only and not self._monitor.improved(logs):
            return
        try:
            path = self.path.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(
                f"ModelCheckpoint: cannot fill in path {self.path!r} ({error}); it may use {{epoch}} "
                f"and the logged names {sorted(logs)}"
            ) from None
        self.model.save(path)
        self.saved.append(path)
