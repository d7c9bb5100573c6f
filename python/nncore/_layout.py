"""Rows versus classic column vectors.

Native kernels work on rows: ``(batch, features)``. The classic from-scratch code passes one sample
as a column ``(features, 1)``, and a batch of such samples is ``(batch, features, 1)``; a single
sample may also be a 1-D ``(features,)`` vector. All of these are the same memory as rows, so the
conversion is a free reshape both ways.

Parameter arrays are also placed on 64-byte boundaries (``aligned_zeros``): numpy only aligns to
16 bytes, so every 64-byte vector access of a row would straddle two cache lines.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


CACHE_LINE = 64


def aligned_zeros(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A C-contiguous array of zeros whose first value sits on a 64-byte boundary (a view of a
    slightly larger buffer). The native kernels read and write parameters in 64-byte vectors; from
    numpy's usual 16-byte alignment each such access touches two cache lines (measured: the classic
    per-sample SGD sweep over a 40 x 784 float32 matrix ~20% slower)."""
    dtype = np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize
    buffer = np.zeros(size + CACHE_LINE, dtype=np.uint8)
    start = -buffer.ctypes.data % CACHE_LINE
    return buffer[start : start + size].view(dtype).reshape(shape)


def aligned_copy(array: np.ndarray) -> np.ndarray:
    """``array`` copied into ``aligned_zeros`` of its shape and dtype."""
    out = aligned_zeros(array.shape, array.dtype)
    np.copyto(out, array)
    return out


class Rows(NamedTuple):
    rows: np.ndarray  # (batch, features), C-contiguous
    kind: str  # "rows", "vector", "column" or "columns"

    def restore(self, rows: np.ndarray) -> np.ndarray:
        """Give rows of another width the caller's original layout."""
        if self.kind == "rows":
            return rows
        if self.kind == "vector":
            return rows.reshape(-1)
        if self.kind == "column":
            return rows.reshape(-1, 1)
        return rows.reshape(rows.shape[0], -1, 1)


def to_rows(x: np.ndarray, features: int, where: str) -> Rows:
    """View ``x`` as rows of ``features`` values, or raise ValueError naming the accepted shapes."""
    if x.ndim == 2 and x.shape[1] == features:
        return Rows(np.ascontiguousarray(x), "rows")
    if x.ndim == 1 and x.shape[0] == features:
        return Rows(np.ascontiguousarray(x).reshape(1, features), "vector")
    if x.ndim == 2 and x.shape == (features, 1):
        return Rows(np.ascontiguousarray(x).reshape(1, features), "column")
    if x.ndim == 3 and x.shape[1:] == (features, 1):
        return Rows(np.ascontiguousarray(x).reshape(x.shape[0], features), "columns")
    raise ValueError(
        f"{where}: expected input of shape (batch, {features}), ({features},), ({features}, 1) or "
        f"(batch, {features}, 1), got {x.shape}"
    )


def softmax_width(shape: tuple[int, ...]) -> int:
    """How many values one softmax runs over: the last axis, except in column layouts (a shape
    ending in 1 with more than one value before it), where it is the second to last."""
    if len(shape) >= 2 and shape[-1] == 1 and shape[-2] > 1:
        return shape[-2]
    return shape[-1]
