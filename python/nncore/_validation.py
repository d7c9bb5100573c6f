"""Argument checks shared by the Python layer, with messages that name what was expected."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_float_dtype(dtype: Any, where: str) -> np.dtype:
    """Return ``dtype`` as a numpy dtype if it is float32 or float64, else raise TypeError."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{where}: expected dtype float32 or float64, got {dtype!r}") from None
    if resolved not in FLOAT_DTYPES:
        raise TypeError(f"{where}: expected dtype float32 or float64, got {resolved}")
    return resolved


def check_bool(value: Any, name: str, where: str) -> bool:
    """True/False or a numpy bool; TypeError for anything else (a truthy string or 1 is a mistake,
    never silently taken as True)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: expected {name} to be a bool, got {type(value).__name__}")
    return bool(value)


def check_positive_int(value: Any, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: expected {name} to be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{where}: expected {name} > 0, got {value}")
    return int(value)


def _as_number(value: Any, name: str, where: str) -> float:
    """``value`` (a Python or numpy int or float, not a bool) as a float; an int beyond the float
    range becomes inf."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where}: expected {name} to be a number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        return math.inf


def check_finite_float(value: Any, name: str, where: str) -> float:
    result = _as_number(value, name, where)
    if not math.isfinite(result):
        raise ValueError(f"{where}: expected {name} to be finite, got {value}")
    return result


def check_non_negative_float(value: Any, name: str, where: str) -> float:
    result = _as_number(value, name, where)
    if not math.isfinite(result) or result < 0:
        raise ValueError(f"{where}: expected {name} to be finite and >= 0, got {value}")
    return result


def as_numeric_array(data: Any, name: str, where: str) -> np.ndarray:
    """``np.asarray(data)``, refusing what cannot be a real number (complex, object, strings)."""
    try:
        array = np.asarray(data)
    except ValueError as error:  # ragged nested lists
        raise ValueError(f"{where}: {name} is not a rectangular array ({error})") from None
    if array.dtype.kind not in "fiub":
        raise TypeError(
            f"{where}: expected {name} with a real numeric dtype (float, int or bool), got {array.dtype}"
        )
    return array


def as_float_array(data: Any, dtype: np.dtype, name: str, where: str) -> np.ndarray:
    """Convert data (arrays or nested lists) to ``dtype`` once, at the boundary of nncore."""
    return _cast(as_numeric_array(data, name, where), dtype)


def _cast(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if array.dtype == dtype:  # nothing to convert (and entering errstate costs about a microsecond)
        return array
    # Values beyond float32's range become inf here; the caller's finiteness checks (or the loss)
    # report them, so numpy's overflow warning would only be noise.
    with np.errstate(over="ignore"):
        return array.astype(dtype, copy=False)


def layer_input(data: Any, dtype: np.dtype | None, where: str, name: str = "input") -> np.ndarray:
    """The input of a native layer as a float array.

    A native layer with its own dtype (Dense) converts other real inputs to it once, e.g. the
    float64 output of a user's numpy layer; layers without one (activations) keep float32/float64
    and turn other real inputs into float32.
    """
    array = as_numeric_array(data, name, where)
    if dtype is None:
        dtype = array.dtype if array.dtype in FLOAT_DTYPES else np.dtype(np.float32)
    if array.size == 0:
        raise ValueError(f"{where}: got an empty {name} of shape {array.shape}")
    return _cast(array, dtype)


def check_gradient_shape(gradient: np.ndarray, expected: tuple[int, ...], where: str) -> None:
    if gradient.shape != expected:
        raise ValueError(
            f"{where}: expected output_gradient of shape {expected} (the shape of the forward "
            f"output), got {gradient.shape}"
        )


def resolve_named(
    value: Any, base: type, factories: Mapping[str, Callable[[], Any]], what: str, where: str
) -> Any:
    """``value`` itself if it is a ``base``, else a fresh object from ``factories[value]``.

    Unknown names raise ValueError listing the known ones; other types raise TypeError.
    """
    if isinstance(value, base):
        return value
    if isinstance(value, str):
        factory = factories.get(value)
        if factory is None:
            raise ValueError(
                f"{where}: unknown {what} {value!r}; expected one of {', '.join(factories)}"
            )
        return factory()
    raise TypeError(
        f"{where}: expected a {what} name (str) or a {base.__name__}, got {type(value).__name__}"
    )
