"""What the native core chose at import (ISA, threads), and the thread count control."""

from __future__ import annotations

import operator
import os
import warnings
from typing import Any

from . import _core


def cpu_info() -> dict[str, Any]:
    """Describe the kernels in use.

    Keys: ``isa`` (the active instruction set: "avx512", "avx2" or "scalar"),
    ``available_isas`` (what this CPU and OS support), ``compiled_isas`` (what this build
    contains), ``num_threads``, ``requested_isa`` (the ``NNCORE_ISA`` value or None),
    ``isa_note`` (why the request was not honoured, or ""), ``gemm_tile`` (register tile
    per dtype), ``gemm_short_tile_rows`` (per dtype, the rows of the second, shorter tile the
    GEMM takes when the main one would pad a product's rows by much; None where there is none),
    ``gemm_stream_max_rows`` (per dtype, the most rows of a product for which the GEMM streams
    an L2-sized B through its unpacked kernels instead of packing it; None for no limit, 16 on
    Intel cores) and ``cpu_vendor`` (CPUID's vendor string, "" off x86).
    """
    return dict(_core.cpu_info())


MAX_THREADS = 1024


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in the kernels, 1 <= n <= 1024 (the caller's thread counts as one)."""
    if isinstance(n, bool):
        raise TypeError("set_num_threads: expected an int, got bool")
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"set_num_threads: expected an int, got {type(n).__name__}") from None
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"set_num_threads: expected 1 <= n <= {MAX_THREADS}, got {n}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Threads the kernels use (default: the CPUs this process may run on, as
    ``os.sched_getaffinity`` counts them, or ``NNCORE_NUM_THREADS``)."""
    return int(_core.get_num_threads())


def _warn_about_environment() -> None:
    """Say at import when NNCORE_ISA or NNCORE_NUM_THREADS could not be honoured."""
    note = _core.cpu_info()["isa_note"]
    if note:
        warnings.warn(note, RuntimeWarning, stacklevel=3)
    threads = os.environ.get("NNCORE_NUM_THREADS", "")
    if threads and not (threads.isdigit() and 1 <= int(threads) <= MAX_THREADS):
        warnings.warn(
            f"NNCORE_NUM_THREADS={threads!r} is not a whole number from 1 to {MAX_THREADS}; "
            f"using {get_num_threads()} threads",
            RuntimeWarning,
            stacklevel=3,
        )
