"""GEMM benchmark: nncore.ops.matmul against numpy (OpenBLAS) and PyTorch, side by side.

Usage: python benchmarks/bench_gemm.py [--quick] [--threads 1,2] [--dtype float32,float64]

Each case is timed for all three libraries in the same run, with the same thread count (numpy via
threadpoolctl, torch via torch.set_num_threads, nncore via nncore.set_num_threads), as the median of
many repetitions after a warm-up, the libraries taking turns in rounds (``common.compare``) so that
a burst of load on the shared machine hits all of them. With 2 threads, float64 runs the square
and 128x1024x1024 cases only (the pauses between turns make each case cost ~1.5 s). GF/s are
2*m*n*k / median time; "% peak" is relative to nncore._core.fma_peak (a register-only FMA loop on
the active ISA, measured in the same run, for the same dtype and thread count). "vs best" is
nncore's speed over the faster of numpy and torch.

Importable: run(quick) -> list[dict] (one dict per case); markdown(rows) -> str; scaling(quick) ->
list[dict] (nncore's 1- against 2-thread speed on the large squares, the two counts alternated
without peers in between).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time
from typing import Callable, Optional

import numpy as np

import nncore
from nncore import _core

from common import compare, markdown_table, settle_time

try:
    import torch
except ImportError:  # peers are optional
    torch = None
try:
    from threadpoolctl import threadpool_limits
except ImportError:
    threadpool_limits = None

# The MLP of the issue: 784-256-128-10. Each Dense layer (in -> out) at batch m gives three GEMMs:
#   forward  Y = X W^T    : (m x in) (in x out)      -> m x out x in,  b transposed
#   backward dX = dY W    : (m x out) (out x in)     -> m x in x out
#   backward dW = dY^T X  : (out x m) (m x in)       -> out x in x m,  a transposed
MLP_LAYERS = [(784, 256), (256, 128), (128, 10)]
BATCHES = [1, 32, 64, 128, 256]


def _cases(quick: bool) -> list[tuple[str, int, int, int, bool, bool]]:
    """(label, m, n, k, transpose_a, transpose_b)."""
    cases = []
    sizes = [256, 1024] if quick else [64, 256, 512, 1024, 2048]
    for s in sizes:
        cases.append((f"square {s}", s, s, s, False, False))
    cases.append(("128x1024x1024", 128, 1024, 1024, False, False))
    batches = [1, 64, 256] if quick else BATCHES
    for m in batches:
        for fan_in, fan_out in MLP_LAYERS:
            cases.append((f"fwd XW^T b{m} {fan_in}->{fan_out}", m, fan_out, fan_in, False, True))
            cases.append((f"bwd dY W b{m} {fan_in}->{fan_out}", m, fan_in, fan_out, False, False))
            cases.append((f"bwd dY^T X b{m} {fan_in}->{fan_out}", fan_out, fan_in, m, True, False))
    return cases


def _operands(m: int, n: int, k: int, ta: bool, tb: bool, dtype) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    return a, b


def run(quick: bool = False, threads: tuple[int, ...] = (1, 2), dtypes: tuple[str, ...] = ("float32", "float64"),
        min_time: Optional[float] = None) -> list[dict]:
    """Times every case for each thread count and dtype; returns one dict per (case, threads, dtype)."""
    min_time = (0.05 if quick else 0.15) if min_time is None else min_time
    rows: list[dict] = []
    saved_threads = nncore.get_num_threads()
    torch_threads = torch.get_num_threads() if torch is not None else None
    try:
        for nthreads in threads:
            nncore.set_num_threads(nthreads)
            if torch is not None:
                torch.set_num_threads(nthreads)
            limits = threadpool_limits(nthreads) if threadpool_limits is not None else None
            try:
                for dtype in dtypes:
                    peak = _core.fma_peak(dtype, 0.3 if quick else 0.5, nthreads) * 1e9 if hasattr(_core, "fma_peak") else None
                    for label, m, n, k, ta, tb in _cases(quick):
                        mlp_shape = label.startswith(("fwd", "bwd"))
                        if dtype == "float64" and mlp_shape and (quick or nthreads > 1):
                            continue
                        a, b = _operands(m, n, k, ta, tb, dtype)
                        out = np.empty((m, n), dtype)
                        flops = 2.0 * m * n * k
                        # Enough time for the big cases to get several repetitions.
                        budget = min_time if flops < 1e9 else max(min_time, 0.4)
                        an = a.T if ta else a
                        bn = b.T if tb else b
                        fns: dict[str, Optional[Callable[[], object]]] = {
                            "nncore": lambda: nncore.ops.matmul(a, b, transpose_a=ta, transpose_b=tb, out=out),
                            "numpy": lambda: np.matmul(an, bn, out=out), "torch": None}
                        if torch is not None:
                            at, bt, ot = torch.from_numpy(an), torch.from_numpy(bn), torch.from_numpy(out)
                            fns["torch"] = lambda: torch.matmul(at, bt, out=ot)
                        with torch.no_grad() if torch is not None else contextlib.nullcontext():
                            seconds = compare(fns, budget, min_runs=5, rounds=5 if nthreads == 1 else 3,
                                              settle=settle_time(nthreads))
                        t_ours, t_np, t_torch = seconds["nncore"], seconds["numpy"], seconds["torch"]
                        assert t_ours is not None and t_np is not None
                        best_peer = min(t for t in (t_np, t_torch) if t is not None)
                        rows.append({
                            "case": label, "m": m, "n": n, "k": k, "dtype": dtype, "threads": nthreads,
                            "nncore_gflops": flops / t_ours / 1e9, "numpy_gflops": flops / t_np / 1e9,
                            "torch_gflops": None if t_torch is None else flops / t_torch / 1e9,
                            "nncore_us": t_ours * 1e6,
                            "peak_gflops": None if peak is None else peak / 1e9,
                            "pct_peak": None if peak is None else 100.0 * flops / t_ours / peak,
                            "vs_best": best_peer / t_ours,
                        })
            finally:
                if limits is not None:
                    limits.unregister()
    finally:
        nncore.set_num_threads(saved_threads)
        if torch is not None:
            torch.set_num_threads(torch_threads)
    return rows


def scaling(quick: bool = False, threads: int = 2,
            cases: Optional[list[tuple[int, str]]] = None) -> list[dict]:
    """nncore's own speed-up from 1 to ``threads`` threads on the large square products, measured
    alone: the two thread counts take turns in rounds (``common.compare``) on the same operands.
    In run(), the 1- and 2-thread tables are timed minutes apart and each 2-thread turn follows
    numpy's and PyTorch's, whose threads may still poll on the second core; this measures only
    nncore's scaling, under the same machine state for both counts."""
    if threads < 2:
        raise ValueError(f"scaling: expected threads >= 2 (it compares against 1 thread), got {threads}")
    saved = nncore.get_num_threads()
    rows: list[dict] = []

    def on(n: int, fn: Callable[[], object]) -> Callable[[], object]:
        def call() -> object:
            if nncore.get_num_threads() != n:
                nncore.set_num_threads(n)
            return fn()
        return call

    if cases is None:  # (m = n = k, dtype)
        cases = [(1024, "float32")] if quick else [(1024, "float32"), (2048, "float32"), (1024, "float64")]
    try:
        for size, dtype in cases:
            a, b = _operands(size, size, size, False, False, dtype)
            out = np.empty((size, size), dtype)
            product = lambda: nncore.ops.matmul(a, b, out=out)  # noqa: E731
            # compare's pause before each turn (settle, never 0 here) is followed by one untimed
            # call, which switches the thread count outside the timing.
            seconds = compare({"1": on(1, product), str(threads): on(threads, product)}, 0.2 if quick else 2.0,
                              min_runs=5, rounds=3 if quick else 5, settle=max(settle_time(threads), 1e-3))
            flops = 2.0 * size ** 3
            t1, tn = seconds["1"], seconds[str(threads)]
            assert t1 is not None and tn is not None
            rows.append({"m = n = k": size, "dtype": dtype, "nncore GF/s, 1 thread": flops / t1 / 1e9,
                         f"nncore GF/s, {threads} threads": flops / tn / 1e9, "speed-up": t1 / tn})
    finally:
        nncore.set_num_threads(saved)
    return rows


def markdown(rows: list[dict]) -> str:
    def f(x: Optional[float], digits: int = 1) -> str:
        return "not installed" if x is None else f"{x:.{digits}f}"

    lines = ["| case | m x n x k | dtype | thr | nncore GF/s | % peak | numpy GF/s | torch GF/s | nncore us | vs best |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['m']}x{r['n']}x{r['k']} | {r['dtype']} | {r['threads']} | "
                     f"{f(r['nncore_gflops'])} | {f(r['pct_peak'])} | {f(r['numpy_gflops'])} | "
                     f"{f(r['torch_gflops'])} | {f(r['nncore_us'])} | {r['vs_best']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--dtype", default="float32,float64")
    parser.add_argument("--filter", default="", help="only cases whose label contains this text")
    args = parser.parse_args()
    threads = tuple(int(t) for t in args.threads.split(","))
    dtypes = tuple(args.dtype.split(","))
    info = nncore.cpu_info() if hasattr(nncore, "cpu_info") else _core.cpu_info()
    print(f"# GEMM benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"machine: {cpu}, isa {info['isa']}, numpy {np.__version__}, "
          f"torch {torch.__version__ if torch is not None else 'not installed'}, "
          f"threadpoolctl {'yes' if threadpool_limits else 'not installed'}")
    if hasattr(_core, "fma_peak"):
        for d in dtypes:
            print(f"fma_peak {d}: " + ", ".join(f"{t} thr {_core.fma_peak(d, 0.5, t):.1f} GF/s" for t in threads))
    if args.filter:
        global _cases
        all_cases = _cases
        _cases = lambda quick: [c for c in all_cases(quick) if args.filter in c[0]]  # noqa: E731
    print(markdown(run(args.quick, threads, dtypes)))
    if max(threads) > 1:
        print(markdown_table(scaling(args.quick, max(threads))))


if __name__ == "__main__":
    main()
