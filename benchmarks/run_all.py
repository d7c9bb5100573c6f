"""The whole benchmark suite in one command, written as a markdown report.

Usage: python benchmarks/run_all.py [--quick] [--out BENCHMARKS.md] [--data DIR]

Cases (every one measured against its peers in the same run, at the same thread count, after
warm-up, as medians, with ratios; a peer that is not installed is reported as such):
 1. GEMM: ``bench_gemm.run(quick)`` when benchmarks/bench_gemm.py exists, and the measured FMA
    peak from ``nncore._core.fma_peak`` when the extension has it, with the GEMM's register tile
    alone (``nncore._core.tile_peak``, its operands in L1) as a share of it.
 2. Elementwise float32 tanh, sigmoid, relu, exp, softmax at 1K..10M elements: nncore vs numpy vs
    PyTorch in Gelem/s, with each one's max error against a float64 reference.
 3. MNIST 784-256-128-10 ReLU MLP training: seconds per epoch and test accuracy, SGD with momentum
    and Adam at batch 32/64/256, nncore ``Sequential.fit`` vs PyTorch vs scikit-learn.
 4. Inference of that network: single-sample latency and batch-10000 throughput.
 5. The classic per-sample script (784-40-10 tanh, mse) through ``nncore.train`` vs the original
    numpy design (classic_numpy.py).
 6. Memory: peak RSS of a training run vs the dataset size; 1 vs 2 threads bit-identical weights.

``--quick`` runs fewer epochs and shorter timings (a couple of minutes); the settings are written
into the report.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

import nncore
import bench_classic
import bench_cnn
import bench_mnist
import bench_ops
from common import NOT_INSTALLED, SETTLE_SECONDS, markdown_table, sklearn, threadpool_limits, torch, warm_up

ROOT = Path(__file__).resolve().parents[1]


def settings(quick: bool) -> dict[str, Any]:
    return {
        "warm_up_s": 0.5 if quick else 2.0,
        "elementwise_sizes": [1 << 10, 1 << 14, 1 << 18, 1 << 20, 10 * (1 << 20)],
        "elementwise_threaded_sizes": [1 << 18, 1 << 20, 10 * (1 << 20)],
        "elementwise_min_time": 0.05 if quick else 0.25,
        "train_threads": 2,
        "train_batch_sizes": [32, 64, 256],
        "train_epochs": 1 if quick else 3,
        "inference_min_time": 0.1 if quick else 0.5,
        "classic_epochs": 10 if quick else 100,
        "classic_samples": 1000,
        "memory_samples": 60000,
        "cnn_samples": 6400 if quick else 60000,
        "cnn_epochs": 1 if quick else 2,
    }


def machine() -> str:
    """The CPU's model name, family and model numbers (which tell AMD generations apart when the
    name is just "AMD EPYC") and logical CPU count, from /proc/cpuinfo."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            fields = [line.split(":", 1) for line in cpuinfo if ":" in line]
        values = lambda key: [v.strip() for k, v in fields if k.strip() == key]  # noqa: E731
        names = values("model name")
        if names:
            family, number = (values("cpu family") or ["?"])[0], (values("model") or ["?"])[0]
            model = f"{names[0]}, family {family} model {number} ({len(names)} logical CPUs)"
    except OSError:
        pass
    return model


def load() -> str:
    try:
        return ", ".join(f"{v:.1f}" for v in os.getloadavg()) + f" on {os.cpu_count()} CPUs"
    except OSError:
        return "unknown"


def fma_peak_lines() -> list[str]:
    peak = getattr(nncore._core, "fma_peak", None)
    if peak is None:
        return ["- FMA peak: unavailable (this build's `nncore._core` has no `fma_peak`)"]
    lines = []
    for dtype in ("float32", "float64"):
        for n in (1, 2):
            try:
                lines.append(f"- FMA peak {dtype}, {n} thread(s): {peak(dtype=dtype, seconds=0.5, threads=n):.1f} GFLOP/s")
            except Exception as error:  # noqa: BLE001 - report, do not hide
                lines.append(f"- FMA peak {dtype}, {n} thread(s): failed ({error})")
    return lines + tile_peak_lines(peak)


def tile_peak_lines(fma_peak: Callable[..., float]) -> list[str]:
    """The GEMM's register tile alone with its operands in L1 (``nncore._core.tile_peak``), as GFLOP/s
    and as a share of the FMA peak measured next to it: the ceiling of the packed GEMM's speed."""
    tile_peak = getattr(nncore._core, "tile_peak", None)
    if tile_peak is None:
        return ["- GEMM register tile alone: unavailable (this build's `nncore._core` has no `tile_peak`)"]
    tiles = nncore.cpu_info().get("gemm_tile", {})
    lines = []
    for dtype in ("float32", "float64"):
        shape = " x ".join(map(str, tiles[dtype])) + " " if dtype in tiles else ""
        try:
            tile = fma = 0.0
            for _ in range(2):  # in turns with the FMA loop, each the best of its runs
                tile = max(tile, tile_peak(dtype=dtype, seconds=0.25))
                fma = max(fma, fma_peak(dtype=dtype, seconds=0.25, threads=1))
            lines.append(f"- GEMM register tile {shape}alone (its A and B panels in L1), {dtype}, 1 thread: "
                         f"{tile:.1f} GFLOP/s, {100.0 * tile / fma:.1f}% of the FMA peak beside it")
        except Exception as error:  # noqa: BLE001 - report, do not hide
            lines.append(f"- GEMM register tile alone, {dtype}: failed ({error})")
    return lines


def gemm_section(quick: bool) -> str:
    try:
        bench_gemm = importlib.import_module("bench_gemm")
    except ModuleNotFoundError as error:
        if error.name != "bench_gemm":
            raise
        return "gemm bench not present (benchmarks/bench_gemm.py is not in this checkout).\n"
    return (markdown_table(bench_gemm.run(quick)) + "\nnncore's own thread scaling: 1 and 2 threads take turns in "
            "rounds on the same product, with no other library timed in between (`bench_gemm.scaling`); the tables "
            "above time the two counts minutes apart, each 2-thread turn after numpy's and PyTorch's.\n\n" +
            markdown_table(bench_gemm.scaling(quick)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer epochs and shorter timings")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"), help="markdown report (default BENCHMARKS.md)")
    parser.add_argument("--data", default=str(bench_mnist.MNIST_DIR), help="directory with the MNIST IDX files")
    args = parser.parse_args(argv)
    s = settings(args.quick)
    started = time.perf_counter()
    command = "python benchmarks/run_all.py" + (" --quick" if args.quick else "")
    info = nncore.cpu_info()

    out: list[str] = []

    def emit(text: str = "") -> None:
        out.append(text)
        print(text, flush=True)

    def section(title: str, body: Callable[[], str]) -> None:
        emit(f"## {title}\n")
        t0 = time.perf_counter()
        try:
            emit(body())
        except Exception:  # noqa: BLE001 - one failing case must not lose the others
            emit("FAILED:\n```\n" + traceback.format_exc() + "```\n")
        emit(f"_({time.perf_counter() - t0:.0f} s; load average now {load()}: above ~1 per CPU, other "
             "processes compete for the cores and multi-threaded peers that spin-wait (OpenMP, OpenBLAS) "
             "can lose several times their speed)_\n")

    emit("# nncore benchmarks\n")
    emit(f"- command: `{command}`")
    emit(f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    stream = info.get("gemm_stream_max_rows", {}).get("float32")
    tile, short = info.get("gemm_tile", {}).get("float32"), info.get("gemm_short_tile_rows", {}).get("float32")
    tiles = "" if tile is None else f"; float32 GEMM tile {tile[0]}x{tile[1]}" + ("" if short is None else f" and {short}x{tile[1]}")
    emit(f"- machine: {machine()}; nncore ISA `{info['isa']}` (available: {', '.join(info['available_isas'])}); "
         f"GEMM streams L2-sized B unpacked for {'any number of' if stream is None else f'at most {stream}'} rows{tiles}")
    emit(f"- versions: nncore {nncore.__version__}, numpy {np.__version__}, "
         f"torch {torch.__version__ if torch else NOT_INSTALLED}, "
         f"scikit-learn {sklearn.__version__ if sklearn else NOT_INSTALLED}, Python {platform.python_version()}; "
         f"threadpoolctl {'caps numpy BLAS threads' if threadpool_limits else 'not installed: numpy threads NOT capped'}")
    emit(f"- threads: elementwise at 1 and at 2; training, inference, the classic script and memory at "
         f"{s['train_threads']}; nncore's pool defaults to {info['num_threads']} on this machine")
    emit("- timing: every case times its peers in the same run, interleaved in rounds (training: epoch by "
         f"epoch), after a warm-up; with several threads each turn starts after a {SETTLE_SECONDS} s "
         "pause, so that other libraries' spinning workers are asleep; figures are medians. The "
         "machine is shared (other builds and benchmarks run on it), so expect noise of 10-20%. "
         f"Load average at the start: {load()}.")
    emit("- settings: " + ", ".join(f"{k}={v}" for k, v in s.items()))
    for line in fma_peak_lines():
        emit(line)
    emit()
    warm_up(s["warm_up_s"])
    data, data_note = bench_mnist.load_data(Path(args.data))

    section("1. GEMM", lambda: gemm_section(args.quick))
    section("2. Elementwise float32 (Gelem/s; max error in float32 ulp vs a float64 reference)", lambda: (
        "Inputs uniform in [-10, 10]; softmax over rows of 64. numpy sigmoid is 1 / (1 + exp(-x)) with "
        "out= buffers. The softmax error of every implementation (~17-18 ulp on the smallest "
        "probabilities) comes from rounding x - max in float32.\n\n1 thread:\n\n"
        + markdown_table(bench_ops.run_elementwise(s["elementwise_sizes"], 1, min_time=s["elementwise_min_time"]))
        + "\n2 threads (nncore splits arrays of >= 64K elements over its pool, the calling thread taking "
        "chunks too). On a loaded 2-CPU machine (see the load average above) a second thread often "
        "cannot run at once: nncore then gains nothing, and a runtime that splits work statically "
        "(PyTorch's OpenMP) waits for the descheduled thread, which is what its collapse below 10M "
        "elements shows when it happens:\n\n"
        + markdown_table(bench_ops.run_elementwise(s["elementwise_threaded_sizes"], 2,
                                                   min_time=s["elementwise_min_time"]))))
    section("3. MNIST MLP training (784-256-128-10 ReLU, softmax cross-entropy)", lambda: (
        f"Data: {data_note}; {len(data[0])} training and {len(data[2])} test images. Median seconds per "
        f"epoch over {s['train_epochs']} epoch(s); accuracy on the test set after them. Same Glorot-uniform "
        "init (scikit-learn also draws its biases from that range), same optimizer settings. nncore: "
        "`Sequential.fit(verbose=0)` one epoch per call, which trains MNIST's first layer from the "
        "inputs' nonzeros (19% of the pixels; `nncore.engine.sparse_input`); \"nncore dense\": the same "
        "fit with that path turned off (`nncore.engine.set_sparse_input(False)`), as for inputs with more "
        "than 25% nonzeros; PyTorch: a loop over `randperm` index batches of tensors; \"torch flush\": the "
        "same with `torch.set_flush_denormal(True)` during its epochs (nncore's engine flushes subnormals "
        "while it trains, `nncore.engine.set_flush_denormals`); scikit-learn: "
        "`MLPClassifier.partial_fit` (one epoch per call, alpha=0).\n\n"
        + markdown_table(bench_mnist.run_training(data, s["train_batch_sizes"], s["train_epochs"],
                                                  s["train_threads"]))))
    section("4. Inference (same network, Glorot init; nncore's predict of 256 rows or more skips the zero pixels in "
            "the first layer's product, nncore.engine; the \"not skipped\" row turns that off)", lambda: markdown_table(
        bench_mnist.run_inference(data, s["train_threads"], min_time=s["inference_min_time"])))
    section("5. Classic per-sample script", lambda: (
        "nncore's training time is the median of 5 runs from the same initial weights (one run takes a few "
        "tenths of a second); the numpy code runs once (several seconds).\n\n"
        + markdown_table(bench_classic.run_classic(data, s["classic_epochs"], s["classic_samples"],
                                                   s["train_threads"]))))
    section("6. Memory and determinism", lambda: (
        markdown_table(bench_mnist.run_memory(s["memory_samples"], Path(args.data), s["train_threads"]))
        + "\n" + markdown_table(bench_mnist.run_determinism(data))))

    section("7. MNIST CNN training (LeNet: Conv2D 1->16 5x5 pad 2, max-pool, Conv2D 16->32 5x5, max-pool, "
            "Dense 800-128-10)", lambda: (
        f"Data: {data_note}; the first {min(s['cnn_samples'], len(data[0]))} training images as (N, 1, 28, 28), "
        f"the {len(data[2])} test images. Same initial weights (PyTorch's default init copied into nncore), Adam "
        "lr 1e-3, mean softmax cross-entropy, batch 64; median seconds per epoch over the epochs, interleaved; "
        "accuracy on the test set after them. nncore: `Sequential.fit(verbose=0)` one epoch per call; PyTorch: "
        "a loop over `randperm` index batches of tensors.\n\n"
        + markdown_table(bench_cnn.run_cnn_training(
            (data[0][:s["cnn_samples"]], data[1][:s["cnn_samples"]], data[2], data[3]),
            64, s["cnn_epochs"], s["train_threads"]))))

    total = time.perf_counter() - started
    emit(f"Whole suite: {total:.0f} s. Load average at the end: {load()}.")
    Path(args.out).write_text("\n".join(out) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
