"""What the native core chose at import (ISA, threads), and the thread count control."""

from __future__ import annotations

import warnings
from typing import Any

from . import _core


def cpu_info() -> dict[str, Any]:
    """Describe the kernels in use.

    Keys: ``isa`` (the active instruction set: "avx512", "avx2" or "scalar"),
    ``available_isas`` (what this CPU and OS support), ``compiled_isas`` (what this build
    contains), ``num_threads``, ``requested_isa`` (the ``NNCORE_ISA`` value or None),
    ``isa_note`` (why the request was not honoured, or "") and ``gemm_tile`` (register tile
    per dtype).
    """
    return dict(_core.cpu_info())


def set_num_threads(n: int) -> None:
    """Use ``n`` >= 1 threads in the kernels (the caller's thread counts as one)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: expected an int, got {type(n).__name__}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Threads the kernels use (default: the machine's cores, or ``NNCORE_NUM_THREADS``)."""
    return int(_core.get_num_threads())


def _warn_about_isa_request() -> None:
    note = _core.cpu_info()["isa_note"]
    if note:
        warnings.warn(note, RuntimeWarning, stacklevel=3)
