"""Kernel benchmarks: nncore.ops against numpy (and PyTorch when installed), side by side.

Usage: python benchmarks/bench_ops.py [--threads N] [--quick]

Prints a markdown table of medians (after warm-up) and the ratio to the faster peer. Peers that are
not installed are reported as such. numpy's BLAS threads are capped with threadpoolctl when it is
installed (otherwise that is printed, since numpy may then use every core).
"""

from __future__ import annotations

import argparse
import platform
import time
from typing import Callable, Optional

import numpy as np

import nncore

try:
    import torch
except ImportError:
    torch = None
try:
    from threadpoolctl import threadpool_limits
except ImportError:
    threadpool_limits = None


def median_seconds(fn: Callable[[], object], min_time: float = 0.2, min_runs: int = 5) -> float:
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def row(name: str, unit: str, work: float, ours: float, numpy_t: Optional[float], torch_t: Optional[float]) -> str:
    def fmt(t: Optional[float]) -> str:
        return "not installed" if t is None else f"{work / t / 1e9:.2f}"

    peers = [t for t in (numpy_t, torch_t) if t is not None]
    ratio = min(peers) / ours if peers else float("nan")
    return f"| {name} | {unit} | {fmt(ours)} | {fmt(numpy_t)} | {fmt(torch_t)} | {ratio:.2f}x |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="fewer sizes")
    args = parser.parse_args()

    nncore.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    limits = threadpool_limits(args.threads) if threadpool_limits else None
    info = nncore.cpu_info()
    print(f"nncore {nncore.__version__}, isa={info['isa']}, threads={args.threads}, numpy {np.__version__}, "
          f"torch {torch.__version__ if torch else 'not installed'}, "
          f"threadpoolctl {'on' if limits else 'not installed (numpy threads not capped)'}, {platform.processor() or platform.machine()}")
    print()
    print("| case | unit | nncore | numpy | torch | nncore vs best peer |")
    print("| --- | --- | --- | --- | --- | --- |")
    rng = np.random.default_rng(0)

    shapes = [(1, 784, 256), (64, 784, 256), (256, 784, 256), (64, 256, 128), (64, 128, 10), (1024, 1024, 1024)]
    if args.quick:
        shapes = shapes[1:2] + shapes[-1:]
    for dtype in (np.float32, np.float64):
        for m, k, n in shapes:
            a = rng.standard_normal((m, k)).astype(dtype)
            b = rng.standard_normal((k, n)).astype(dtype)
            out = np.empty((m, n), dtype)
            ours = median_seconds(lambda: nncore.ops.matmul(a, b, out=out))
            ref = median_seconds(lambda: np.matmul(a, b, out=out))
            tt = None
            if torch is not None:
                ta, tb = torch.from_numpy(a), torch.from_numpy(b)
                tt = median_seconds(lambda: torch.matmul(ta, tb))
            print(row(f"matmul {m}x{k}x{n} {np.dtype(dtype).name}", "GFLOP/s", 2.0 * m * n * k, ours, ref, tt))

    sizes = [1 << 14, 1 << 20] if args.quick else [1 << 10, 1 << 14, 1 << 17, 1 << 20]
    for size in sizes:
        x = rng.uniform(-5, 5, size).astype(np.float32)
        out = np.empty_like(x)
        tx = torch.from_numpy(x) if torch is not None else None
        cases = {
            "tanh": (lambda: nncore.ops.tanh(x, out=out), lambda: np.tanh(x, out=out), lambda: torch.tanh(tx)),
            "sigmoid": (lambda: nncore.ops.sigmoid(x, out=out),
                        lambda: np.divide(1.0, np.add(1.0, np.exp(-x)), out=out), lambda: torch.sigmoid(tx)),
            "exp": (lambda: nncore.ops.exp(x, out=out), lambda: np.exp(x, out=out), lambda: torch.exp(tx)),
        }
        for name, (ours_fn, numpy_fn, torch_fn) in cases.items():
            print(row(f"{name} {size} float32", "Gelem/s", size, median_seconds(ours_fn), median_seconds(numpy_fn),
                      median_seconds(torch_fn) if torch is not None else None))
        logits = x.reshape(-1, 64)
        sm_out = np.empty_like(logits)

        def numpy_softmax() -> None:
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            e /= e.sum(axis=1, keepdims=True)

        print(row(f"softmax {logits.shape[0]}x64 float32", "Gelem/s", size,
                  median_seconds(lambda: nncore.ops.softmax(logits, out=sm_out)), median_seconds(numpy_softmax),
                  median_seconds(lambda: torch.softmax(torch.from_numpy(logits), 1)) if torch is not None else None))


if __name__ == "__main__":
    main()
