"""Kernel benchmarks: nncore.ops against numpy (and PyTorch when installed), side by side.

Usage: python benchmarks/bench_ops.py [--threads N] [--quick] [--functions tanh,exp] [--sizes 16384,1048576]
                                      [--no-matmul]

Prints markdown tables of medians (interleaved rounds after warm-up) and the ratio to each peer:
matmul in GFLOP/s, and the elementwise functions (tanh, sigmoid, relu, exp, softmax, float32) in
Gelem/s with the maximum error of every implementation against a float64 reference. Peers that are
not installed are reported as such. ``run_elementwise`` is also used by ``run_all.py``.
"""

from __future__ import annotations

import argparse
import platform
from typing import Callable, Optional, Sequence

import numpy as np

import nncore
from common import NOT_INSTALLED, compare, markdown_table, max_ulp, ratio, settle_time, threads, threadpool_limits, torch

ELEMENTWISE = ("tanh", "sigmoid", "relu", "exp", "softmax")
SOFTMAX_COLUMNS = 64  # softmax runs over rows of this many logits


def _reference(name: str, x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    if name == "tanh":
        return np.tanh(x64)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x64))
    if name == "relu":
        return np.maximum(x64, 0.0)
    if name == "exp":
        return np.exp(x64)
    e = np.exp(x64 - x64.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _implementations(name: str, x: np.ndarray, out: np.ndarray) -> dict[str, Optional[Callable[[], np.ndarray]]]:
    """nncore, numpy and torch versions of ``name`` on ``x``, each returning its result."""
    if name == "softmax":
        def numpy_softmax() -> np.ndarray:
            e = np.exp(x - x.max(axis=1, keepdims=True))
            e /= e.sum(axis=1, keepdims=True)
            return e
        impls = {"nncore": lambda: nncore.ops.softmax(x, out=out), "numpy": numpy_softmax}
    else:
        ours = getattr(nncore.ops, name)
        numpy_fns = {
            "tanh": lambda: np.tanh(x, out=out),
            "sigmoid": lambda: np.divide(1.0, np.add(1.0, np.exp(np.negative(x, out=out), out=out), out=out), out=out),
            "relu": lambda: np.maximum(x, 0, out=out),
            "exp": lambda: np.exp(x, out=out),
        }
        impls = {"nncore": lambda: ours(x, out=out), "numpy": numpy_fns[name]}
    if torch is None:
        impls["torch"] = None
    else:
        tx, tout = torch.from_numpy(x), torch.from_numpy(out)
        torch_fns = {
            "tanh": lambda: torch.tanh(tx, out=tout),
            "sigmoid": lambda: torch.sigmoid(tx, out=tout),
            "relu": lambda: torch.clamp(tx, min=0, out=tout),
            "exp": lambda: torch.exp(tx, out=tout),
            "softmax": lambda: torch.softmax(tx, dim=1),
        }
        impls["torch"] = lambda: torch_fns[name]().numpy()
    return impls


def run_elementwise(sizes: Sequence[int], n_threads: int = 1, names: Sequence[str] = ELEMENTWISE,
                    min_time: float = 0.2, seed: int = 0) -> list[dict]:
    """One row per (function, size): Gelem/s of nncore, numpy and torch at ``n_threads`` threads,
    nncore's speed-up over each, and each implementation's max error in float32 ulp against a
    float64 reference (inputs uniform in [-10, 10])."""
    rng = np.random.default_rng(seed)
    rows = []
    with threads(n_threads):
        for size in sizes:
            x_flat = rng.uniform(-10, 10, size).astype(np.float32)
            for name in names:
                x = x_flat.reshape(-1, SOFTMAX_COLUMNS) if name == "softmax" and size % SOFTMAX_COLUMNS == 0 else x_flat
                if name == "softmax" and x.ndim == 1:
                    x = x.reshape(1, -1)
                out = np.empty_like(x)
                impls = _implementations(name, x, out)
                reference = _reference(name, x)
                errors = {peer: (None if fn is None else max_ulp(np.array(fn(), copy=True), reference))
                          for peer, fn in impls.items()}
                seconds = compare(impls, min_time=min_time, settle=settle_time(n_threads))
                shape = "x".join(map(str, x.shape)) if name == "softmax" else str(size)
                row = {"function": name, "elements": shape, "threads": n_threads}
                for peer, t in seconds.items():
                    row[f"{peer} Gelem/s"] = NOT_INSTALLED if t is None else size / t / 1e9
                row["vs numpy"] = ratio(seconds["numpy"], seconds["nncore"])
                row["vs torch"] = ratio(seconds["torch"], seconds["nncore"]) if impls["torch"] else NOT_INSTALLED
                for peer, e in errors.items():
                    row[f"{peer} max err (ulp)"] = NOT_INSTALLED if e is None else e
                rows.append(row)
    return rows


def run_matmul(shapes: Sequence[tuple[int, int, int]], n_threads: int = 1, min_time: float = 0.2) -> list[dict]:
    """GFLOP/s of nncore.ops.matmul against numpy and torch for each (m, k, n), float32 and float64."""
    rng = np.random.default_rng(0)
    rows = []
    with threads(n_threads):
        for dtype in (np.float32, np.float64):
            for m, k, n in shapes:
                a = rng.standard_normal((m, k)).astype(dtype)
                b = rng.standard_normal((k, n)).astype(dtype)
                out = np.empty((m, n), dtype)
                impls: dict[str, Optional[Callable[[], object]]] = {
                    "nncore": lambda: nncore.ops.matmul(a, b, out=out),
                    "numpy": lambda: np.matmul(a, b, out=out),
                    "torch": None,
                }
                if torch is not None:
                    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
                    impls["torch"] = lambda: torch.matmul(ta, tb)
                seconds = compare(impls, min_time=min_time, settle=settle_time(n_threads))
                row = {"matmul": f"{m}x{k}x{n}", "dtype": np.dtype(dtype).name, "threads": n_threads}
                for peer, t in seconds.items():
                    row[f"{peer} GFLOP/s"] = NOT_INSTALLED if t is None else 2.0 * m * n * k / t / 1e9
                row["vs numpy"] = ratio(seconds["numpy"], seconds["nncore"])
                row["vs torch"] = ratio(seconds["torch"], seconds["nncore"])
                rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="fewer sizes")
    parser.add_argument("--functions", default=",".join(ELEMENTWISE),
                        help="comma-separated elementwise functions (default: all)")
    parser.add_argument("--sizes", default="", help="comma-separated element counts (default: by --quick)")
    parser.add_argument("--no-matmul", action="store_true", help="elementwise functions only")
    args = parser.parse_args()
    names = tuple(name for name in args.functions.split(",") if name)
    unknown = sorted(set(names) - set(ELEMENTWISE))
    if unknown:
        parser.error(f"unknown function(s) {', '.join(unknown)}; expected some of {', '.join(ELEMENTWISE)}")
    info = nncore.cpu_info()
    print(f"nncore {nncore.__version__}, isa={info['isa']}, threads={args.threads}, numpy {np.__version__}, "
          f"torch {torch.__version__ if torch else NOT_INSTALLED}, "
          f"threadpoolctl {'on' if threadpool_limits else 'not installed (numpy threads not capped)'}, "
          f"{platform.processor() or platform.machine()}\n")
    shapes = [(1, 784, 256), (64, 784, 256), (256, 784, 256), (64, 256, 128), (64, 128, 10), (1024, 1024, 1024)]
    if args.quick:
        shapes = shapes[1:2] + shapes[-1:]
    if not args.no_matmul:
        print(markdown_table(run_matmul(shapes, args.threads)))
    sizes = [1 << 14, 1 << 20] if args.quick else [1 << 10, 1 << 14, 1 << 18, 1 << 20]
    if args.sizes:
        sizes = [int(size) for size in args.sizes.split(",")]
    print(markdown_table(run_elementwise(sizes, args.threads, names=names)))


if __name__ == "__main__":
    main()
