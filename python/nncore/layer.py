"""The Layer contract every layer follows, native or written by a user."""

from __future__ import annotations

from typing import Any, Callable, Optional, TypeVar

import numpy as np

from . import _core
from ._validation import check_non_negative_float


class Layer:
    """Base class of all layers: ``forward(input)`` and ``backward(output_gradient, learning_rate)``.

    A network is a plain list of layers. Batches are rows (``(batch, features...)``); the classic
    single-sample column vector ``(features, 1)`` works as well. Subclass it to write a layer in
    numpy: store what ``backward`` needs in ``forward``, return the gradient with respect to the
    input from ``backward``, and update your parameters there when a learning rate is given.

    Beyond the classic pair, a layer may take part in the batched API:

    - ``parameters()``: ``(parameter, gradient)`` array pairs. ``backward`` fills the gradients
      (in place); an optimizer then updates the parameters in place. ``Sequential.fit`` calls
      ``backward(gradient, None)`` on layers that list parameters and leaves the update to its
      optimizer.
    - ``training``: True while ``fit`` trains, False in ``predict``/``evaluate`` (Dropout reads it).
    - ``get_config()`` / ``from_config(config)``: the constructor arguments as JSON-ready values,
      and ``state_dict()`` / ``load_state_dict(state)``: named parameter arrays. With these and
      ``@nncore.register_layer``, a user's layer can be saved and loaded like a native one.
    """

    training: bool = True
    # Set by the classic ``predict`` on each layer of a network whose forward pass the native engine
    # ran in place of the layers' own (keeping no layer inputs): runs that pass again through the
    # layers' forward, so that a ``backward`` called next sees this sample's inputs and outputs, as
    # the original training loop (``output = predict(network, x)``, then every layer's
    # ``backward``) expects. A layer's own ``forward`` clears it.
    _pending_forward: Optional[Callable[[], None]] = None
    # True for layers whose backward takes ``need_input_gradient=False`` (then fills only the
    # parameter gradients and returns None): Sequential.fit asks that of its first layer.
    _skips_input_gradient: bool = False

    def __init__(self) -> None:
        self.input: Any = None
        self.output: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # A pending replay (see _pending_forward) belongs to this process and to these very layers:
        # pickles and copies go without it.
        state = self.__dict__.copy()
        state.pop("_pending_forward", None)
        return state

    def forward(self, input: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, output_gradient: np.ndarray, learning_rate: Optional[float] = None) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def parameters(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(parameter, gradient)`` pairs; empty for layers without parameters."""
        return []

    def get_config(self) -> dict[str, Any]:
        """Constructor keyword arguments that rebuild this layer: ``type(self)(**get_config())``.

        Values must be JSON types (numbers, strings, lists, dicts, None). The default, ``{}``,
        suits layers whose constructor takes no arguments.
        """
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Layer":
        return cls(**config)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The parameters by name (the arrays themselves, not copies). The default names them
        ``"0"``, ``"1"``, ... in the order of ``parameters()``."""
        return {str(i): param for i, (param, _) in enumerate(self.parameters())}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy ``state`` into the parameters in place (so optimizers keep tracking them).

        Raises ValueError unless the names, shapes and dtypes match ``state_dict()`` exactly.
        """
        own = self.state_dict()
        where = f"{type(self).__name__}.load_state_dict"
        if set(state) != set(own):
            raise ValueError(f"{where}: expected parameters {sorted(own)}, got {sorted(state)}")
        for name, target in own.items():
            source = np.asarray(state[name])
            if source.shape != target.shape or source.dtype != target.dtype:
                raise ValueError(
                    f"{where}: parameter {name!r} must have shape {target.shape} and dtype "
                    f"{target.dtype}, got shape {source.shape} and dtype {source.dtype}"
                )
        for name, target in own.items():
            np.copyto(target, state[name])

    def _apply_sgd(self, learning_rate: Optional[float], where: str) -> None:
        """The classic update: when ``learning_rate`` is given, ``param -= learning_rate * grad``
        for every pair of ``parameters()`` (one native pass each)."""
        if learning_rate is None:
            return
        lr = check_non_negative_float(learning_rate, "learning_rate", where)
        for param, grad in self.parameters():
            _core.sgd_step(param, grad, lr)

    def _check_gradients_apart(self, where: str) -> None:
        """backward fills the gradients before it steps any parameter, so a gradient array that
        shares memory with a parameter (``layer.bias_gradient = layer.bias``) would overwrite it."""
        pairs = self.parameters()
        for i, (_, gradient) in enumerate(pairs):
            for j, (parameter, _) in enumerate(pairs):
                if np.may_share_memory(gradient, parameter):
                    raise ValueError(
                        f"{where}: the gradient of parameter {i} (shape {np.shape(gradient)}) shares memory with "
                        f"parameter {j} (shape {np.shape(parameter)}); each needs its own array"
                    )

    def _require_forward(self) -> None:
        if self._pending_forward is not None:
            self._pending_forward()  # (a no-op unless it was left by this thread's predict)
        if self.output is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")


LAYER_TYPES: dict[str, type] = {}

L = TypeVar("L", bound=type)


def register_layer(cls: Optional[L] = None, *, name: Optional[str] = None) -> Any:
    """Class decorator that lets ``Sequential.save``/``nncore.load`` handle a layer type.

    The class must be a ``Layer`` subclass rebuilt by ``from_config(get_config())``, with its
    parameters in ``state_dict()``. It is saved under ``name`` (default: the class name), so
    the same registration must have run before ``nncore.load`` reads the file. Loading only
    constructs registered classes; it never runs code stored in a file.
    """

    def register(klass: L) -> L:
        if not (isinstance(klass, type) and issubclass(klass, Layer)):
            raise TypeError(f"register_layer: expected a Layer subclass, got {klass!r}")
        key = name if name is not None else klass.__name__
        if not isinstance(key, str) or not key:
            raise TypeError(f"register_layer: expected a non-empty str name, got {key!r}")
        existing = LAYER_TYPES.get(key)
        if existing is not None and existing is not klass and (
            existing.__module__, existing.__qualname__) != (klass.__module__, klass.__qualname__):
            raise ValueError(
                f"register_layer: the name {key!r} is already taken by "
                f"{existing.__module__}.{existing.__qualname__}; pass name=... to choose another"
            )
        LAYER_TYPES[key] = klass
        klass._nncore_type_name = key  # type: ignore[attr-defined]
        return klass

    if cls is None:
        return register
    return register(cls)


def registered_name(layer: Any) -> Optional[str]:
    """The name ``layer``'s exact class was registered under, or None."""
    key = type(layer).__dict__.get("_nncore_type_name")
    return key if key is not None and LAYER_TYPES.get(key) is type(layer) else None

