"""Optimizers and learning-rate schedules.

Each optimizer updates ``(parameter, gradient)`` pairs in place with one fused native pass per
parameter, following PyTorch's single-tensor (``foreach=False``) formulas, so a step agrees with
``torch.optim`` to float rounding. Per-parameter state (momentum buffers, moment estimates) is
created on first sight of a parameter array and kept for it, so training can continue with the
same optimizer object.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from . import _core
from ._validation import FLOAT_DTYPES, check_bool, check_positive_int, resolve_named

# ----------------------------------------------------------------------------------------------
# Hyper-parameter checks: TypeError for what is not a number (bools included), ValueError naming
# the argument and the value for what is out of range.


def _number(value: Any, name: str, where: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{where}: expected {name} to be a number, got {type(value).__name__}")
    return float(value)


def _in_range(
    value: Any,
    name: str,
    where: str,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    number = _number(value, name, where)
    above = number > low if low_open else number >= low
    below = number < high if high_open else number <= high
    if not (math.isfinite(number) and above and below):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{where}: expected {name} in {interval}, got {value!r}")
    return number


def _non_negative(value: Any, name: str, where: str) -> float:
    number = _number(value, name, where)
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"{where}: expected {name} to be finite and >= 0, got {value!r}")
    return number


def _positive(value: Any, name: str, where: str) -> float:
    number = _number(value, name, where)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{where}: expected {name} to be finite and > 0, got {value!r}")
    return number


# ----------------------------------------------------------------------------------------------


def clip_grad_norm(gradients: Iterable[np.ndarray], max_norm: float) -> float:
    """Scale all gradients in place so that their global L2 norm is at most ``max_norm``.

    Returns the norm before clipping. As ``torch.nn.utils.clip_grad_norm_``: the factor is
    ``max_norm / (norm + 1e-6)``, applied only when it is below 1. Each gradient must be a
    writable, C-contiguous float32/float64 array (it is scaled in place).
    """
    max_norm = _positive(max_norm, "max_norm", "clip_grad_norm")
    grads = list(gradients)
    total = math.sqrt(sum(_core.sum_of_squares(g) for g in grads))
    factor = max_norm / (total + 1e-6)
    if factor < 1.0:
        for g in grads:
            _core.scale(g, factor)
    return total


class _Slot:
    """The state of one parameter array: the array itself (so its id cannot be reused while the
    state lives), its shape and dtype when first seen, and the named state arrays."""

    __slots__ = ("arrays", "dtype", "param", "shape", "steps")

    def __init__(self, param: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
        self.param = param
        self.shape = param.shape
        self.dtype = param.dtype
        self.arrays = arrays
        self.steps = 0


class Optimizer:
    """Base of the optimizers: ``step(pairs)`` updates each parameter in place from its gradient.

    ``clip_norm``: when given, the gradients of one step are first scaled in place so that their
    global L2 norm is at most ``clip_norm`` (see ``clip_grad_norm``).
    """

    def __init__(self, lr: float, *, clip_norm: float | None = None) -> None:
        where = type(self).__name__
        self.lr = lr
        self.clip_norm = None if clip_norm is None else _positive(clip_norm, "clip_norm", where)
        self.iterations = 0
        self._state: dict[int, _Slot] = {}

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _non_negative(value, "lr", type(self).__name__)

    def step(self, parameters: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
        """Update every ``(param, grad)`` pair in place (one step)."""
        where = f"{type(self).__name__}.step"
        pairs = [self._checked_pair(pair, where) for pair in parameters]
        if self.clip_norm is not None:
            clip_grad_norm([grad for _, grad in pairs], self.clip_norm)
        for param, grad in pairs:
            slot = self._slot(param, where)
            slot.steps += 1
            self._update(param, grad, slot)
        self.iterations += 1

    def reset(self) -> None:
        """Drop all per-parameter state and the step count."""
        self._state.clear()
        self.iterations = 0

    def get_config(self) -> dict[str, Any]:
        return {"lr": self.lr, "clip_norm": self.clip_norm}

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"

    # -- for subclasses --------------------------------------------------------------------------
    _state_names: tuple[str, ...] = ()

    def _wanted_state(self) -> tuple[str, ...]:
        return self._state_names

    def _update(self, param: np.ndarray, grad: np.ndarray, slot: _Slot) -> None:
        raise NotImplementedError

    # -- helpers ---------------------------------------------------------------------------------
    def _checked_pair(self, pair: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            param, grad = pair
        except (TypeError, ValueError):
            raise TypeError(
                f"{where}: expected (param, grad) pairs of numpy arrays, got {pair!r:.80}"
            ) from None
        if not isinstance(param, np.ndarray):
            raise TypeError(
                f"{where}: expected param to be a numpy array, got {type(param).__name__}"
            )
        if param.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"{where}: expected param of dtype float32 or float64, got {param.dtype}"
            )
        if not param.flags.c_contiguous or not param.flags.writeable:
            raise ValueError(
                f"{where}: param of shape {param.shape} must be C-contiguous and writable (it is updated in place)"
            )
        if not isinstance(grad, np.ndarray):
            raise TypeError(
                f"{where}: expected grad to be a numpy array, got {type(grad).__name__}"
            )
        if grad.shape != param.shape or grad.dtype != param.dtype:
            raise ValueError(
                f"{where}: grad of shape {grad.shape} and dtype {grad.dtype} does not match its param "
                f"of shape {param.shape} and dtype {param.dtype}"
            )
        if self.clip_norm is not None and not (grad.flags.c_contiguous and grad.flags.writeable):
            grad = np.array(grad, order="C")  # clipping scales in place: work on a private copy
        return param, grad

    def _slot(self, param: np.ndarray, where: str) -> _Slot:
        slot = self._state.get(id(param))
        if slot is None:
            arrays = {name: np.zeros_like(param) for name in self._wanted_state()}
            slot = self._state[id(param)] = _Slot(param, arrays)
        elif slot.shape != param.shape or slot.dtype != param.dtype:
            raise ValueError(
                f"{where}: a parameter changed from shape {slot.shape} and dtype {slot.dtype} to shape "
                f"{param.shape} and dtype {param.dtype} since this optimizer last saw it; call reset() "
                f"to start over"
            )
        return slot


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay
    (``torch.optim.SGD`` with dampening 0)."""

    def __init__(
        self,
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        *,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, clip_norm=clip_norm)
        self.momentum = _in_range(momentum, "momentum", "SGD", 0.0, 1.0, high_open=True)
        self.nesterov = check_bool(nesterov, "nesterov", "SGD")
        if self.nesterov and self.momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0, got momentum=0.0")
        self.weight_decay = _non_negative(weight_decay, "weight_decay", "SGD")

    def _wanted_state(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.momentum != 0 else ()

    def _update(self, param: np.ndarray, grad: np.ndarray, slot: _Slot) -> None:
        _core.sgd_update(
            param,
            grad,
            slot.arrays.get("momentum_buffer"),
            self.lr,
            self.momentum,
            self.nesterov,
            self.weight_decay,
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
            "clip_norm": self.clip_norm,
        }


class Adam(Optimizer):
    """Adam with L2 weight decay added to the gradient (``torch.optim.Adam``)."""

    _decoupled = False
    _state_names = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, clip_norm=clip_norm)
        where = type(self).__name__
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"{where}: expected betas to be a pair of numbers, got {betas!r}")
        self.betas = (
            _in_range(betas[0], "betas[0]", where, 0.0, 1.0, high_open=True),
            _in_range(betas[1], "betas[1]", where, 0.0, 1.0, high_open=True),
        )
        self.eps = _positive(eps, "eps", where)
        self.weight_decay = _non_negative(weight_decay, "weight_decay", where)

    def _update(self, param: np.ndarray, grad: np.ndarray, slot: _Slot) -> None:
        _core.adam_update(
            param,
            grad,
            slot.arrays["exp_avg"],
            slot.arrays["exp_avg_sq"],
            slot.steps,
            self.lr,
            self.betas[0],
            self.betas[1],
            self.eps,
            self.weight_decay,
            self._decoupled,
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "clip_norm": self.clip_norm,
        }


class AdamW(Adam):
    """Adam with decoupled weight decay, ``p *= 1 - lr * weight_decay`` (``torch.optim.AdamW``)."""

    _decoupled = True

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        *,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, betas, eps, weight_decay, clip_norm=clip_norm)


class RMSprop(Optimizer):
    """RMSprop, optionally centered and with momentum (``torch.optim.RMSprop``)."""

    def __init__(
        self,
        lr: float = 0.01,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, clip_norm=clip_norm)
        self.alpha = _in_range(alpha, "alpha", "RMSprop", 0.0, 1.0)
        self.eps = _positive(eps, "eps", "RMSprop")
        self.weight_decay = _non_negative(weight_decay, "weight_decay", "RMSprop")
        self.momentum = _in_range(momentum, "momentum", "RMSprop", 0.0, 1.0, high_open=True)
        self.centered = check_bool(centered, "centered", "RMSprop")

    def _wanted_state(self) -> tuple[str, ...]:
        names = ["square_avg"]
        if self.momentum > 0:
            names.append("momentum_buffer")
        if self.centered:
            names.append("grad_avg")
        return tuple(names)

    def _update(self, param: np.ndarray, grad: np.ndarray, slot: _Slot) -> None:
        state = slot.arrays
        _core.rmsprop_update(
            param,
            grad,
            state["square_avg"],
            self.lr,
            self.alpha,
            self.eps,
            self.weight_decay,
            self.momentum,
            state.get("momentum_buffer"),
            self.centered,
            state.get("grad_avg"),
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "alpha": self.alpha,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
            "centered": self.centered,
            "clip_norm": self.clip_norm,
        }


_OPTIMIZERS: dict[str, type] = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def get(optimizer: Any) -> Optimizer:
    """An optimizer from its name (a fresh object with default settings) or the Optimizer itself."""
    return resolve_named(optimizer, Optimizer, _OPTIMIZERS, "optimizer", "optim.get")


# ----------------------------------------------------------------------------------------------
# Learning-rate schedules, stepped once per epoch, in closed form.


class LRScheduler:
    """Sets ``optimizer.lr`` from the epoch count: ``step()`` once per epoch (after it)."""

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"{type(self).__name__}: expected an Optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        self._last_lr = self.base_lr

    def lr_at(self, epoch: int) -> float:
        raise NotImplementedError

    def step(self) -> None:
        self.last_epoch += 1
        self._last_lr = self.lr_at(self.last_epoch)
        self.optimizer.lr = self._last_lr

    def get_last_lr(self) -> float:
        return self._last_lr


class StepLR(LRScheduler):
    """``base_lr * gamma ** (epoch // step_size)`` (``torch.optim.lr_scheduler.StepLR``)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = check_positive_int(step_size, "step_size", "StepLR")
        self.gamma = _non_negative(gamma, "gamma", "StepLR")
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """``eta_min + (base_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2``
    (``torch.optim.lr_scheduler.CosineAnnealingLR``)."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        self.T_max = check_positive_int(T_max, "T_max", "CosineAnnealingLR")
        self.eta_min = _non_negative(eta_min, "eta_min", "CosineAnnealingLR")
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return (
            self.eta_min
            + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2
        )
