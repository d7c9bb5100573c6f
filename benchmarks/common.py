"""Shared pieces of the benchmark scripts: optional peers, thread caps, interleaved median timing,
markdown tables.

Peers (PyTorch, scikit-learn, threadpoolctl) are optional imports; a missing one is reported as
"not installed" by the callers, never replaced by something else.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

import nncore

try:
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None
try:
    import sklearn
except ImportError:  # pragma: no cover
    sklearn = None
try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

NOT_INSTALLED = "not installed"


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Run nncore, numpy's BLAS (via threadpoolctl) and PyTorch with ``n`` threads each."""
    previous_nncore = nncore.get_num_threads()
    previous_torch = torch.get_num_threads() if torch is not None else None
    nncore.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)
    limits = threadpool_limits(n) if threadpool_limits is not None else None
    try:
        yield
    finally:
        if limits is not None:
            limits.unregister()
        if previous_torch is not None:
            torch.set_num_threads(previous_torch)
        nncore.set_num_threads(previous_nncore)


def warm_up(seconds: float) -> None:
    """Busy the cores for ``seconds`` so clocks have ramped before the first measurement."""
    a = np.ones((256, 256), np.float32)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        a @ a


# With several threads, OpenBLAS and OpenMP (torch) workers keep spinning for a while after a
# call; on a 2-core machine they would steal a core from the next library timed (measured: nncore's
# batch-10000 predict at half its speed when timed right after scikit-learn's). A pause before
# each timing lets them go to sleep.
SETTLE_SECONDS = 0.15


def settle_time(n_threads: int) -> float:
    """The pause before each timing: SETTLE_SECONDS with several threads, else none."""
    return SETTLE_SECONDS if n_threads > 1 else 0.0


def compare(fns: dict[str, Optional[Callable[[], object]]], min_time: float = 0.2,
            min_runs: int = 5, rounds: int = 5, settle: float = 0.0) -> dict[str, Optional[float]]:
    """Median seconds per call of each function, measured in interleaved rounds so that all peers
    see the same machine state (the machine is shared and noisy). ``None`` entries stay ``None``.

    Each function is called once to warm up, and then timed for a tenth of a round to guess how
    many calls fill one (the warm-up call is not the guess: a first call that builds a plan or
    touches fresh memory is far slower, and would leave that function a few calls per round,
    each right after the pause). Every round then times each function for about
    ``min_time / rounds`` seconds (at least ``min_runs / rounds`` calls), after a pause of
    ``settle`` seconds and one untimed call; the median of all calls is returned.
    """
    live = {name: fn for name, fn in fns.items() if fn is not None}
    calls: dict[str, int] = {}
    per_round = max(min_time / rounds, 1e-6)
    for name, fn in live.items():
        fn()
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            spent = time.perf_counter() - t0
            if spent >= per_round / 10:
                break
        calls[name] = max(1, -(-min_runs // rounds), min(10_000, int(per_round * n / max(spent, 1e-7))))
    samples: dict[str, list[float]] = {name: [] for name in live}
    for _ in range(rounds):
        for name, fn in live.items():
            if settle:
                time.sleep(settle)
                fn()
            for _ in range(calls[name]):
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
    return {name: (float(np.median(samples[name])) if name in samples else None) for name in fns}


# A trainer is (epoch, accuracy): ``epoch()`` trains one epoch, ``accuracy()`` is the test accuracy now.
Trainer = tuple[Callable[[], object], Callable[[], float]]


def time_epochs(trainers: dict[str, Optional[Trainer]], epochs: int, row: dict[str, Any],
                settle: float = 0.0) -> dict[str, Optional[float]]:
    """Trains ``epochs`` epochs of every framework, interleaved (so a burst of load on the shared
    machine hits all of them), each after a pause of ``settle`` seconds; puts each one's median
    seconds per epoch and final test accuracy in ``row`` ("not installed" for a None trainer) and
    returns the medians (None when missing)."""
    times: dict[str, list[float]] = {name: [] for name, trainer in trainers.items() if trainer is not None}
    for _ in range(epochs):
        for name in times:
            if settle:
                time.sleep(settle)
            t0 = time.perf_counter()
            trainers[name][0]()  # type: ignore[index]
            times[name].append(time.perf_counter() - t0)
    seconds: dict[str, Optional[float]] = {}
    for name, trainer in trainers.items():
        if trainer is None:
            seconds[name] = None
            row[f"{name} s/epoch"] = row[f"{name} acc"] = NOT_INSTALLED
            continue
        seconds[name] = float(np.median(times[name]))
        row[f"{name} s/epoch"] = seconds[name]
        row[f"{name} acc"] = f"{trainer[1]():.2%}"
    return seconds


def ratio(baseline: Optional[float], ours: Optional[float]) -> str:
    """How many times faster ``ours`` is than ``baseline`` (both in seconds)."""
    if baseline is None or ours is None or ours <= 0:
        return "n/a"
    return f"{baseline / ours:.2f}x"


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return NOT_INSTALLED
    if isinstance(value, float):
        if value != value:
            return "n/a"
        return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:.3g}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Optional[Sequence[str]] = None) -> str:
    """A markdown table of ``rows`` (dicts); columns default to the keys of all rows, in order."""
    if not rows:
        return "(no rows)\n"
    if columns is None:
        columns = []
        for row in rows:
            columns += [key for key in row if key not in columns]
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def max_ulp(values: np.ndarray, reference: np.ndarray) -> float:
    """Largest error of float32 ``values`` in units of the float32 spacing at the float64 reference."""
    ref = np.asarray(reference, np.float64)
    got = np.asarray(values, np.float64)
    spacing = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    return float(np.max(np.abs(got - ref) / spacing)) if ref.size else 0.0
