"""The classic per-sample path: the classic MNIST script through ``nncore.train`` against the
original from-scratch numpy design (``classic_numpy.py``).

784-40-10 tanh network, mse / mse_prime, the first ``n_train`` training images as (784, 1)
columns with one-hot (10, 1) targets, per-sample SGD at learning rate 0.1. Both start from the
same Glorot-uniform weights (zero biases); the numpy version computes in float64 as the original
code did (float32 images times float64 weights), nncore in float32.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

import nncore
import classic_numpy
from bench_mnist import Data
from common import ratio, threads

SIZES = (784, 40, 10)


def _glorot_weights(seed: int, sizes: Sequence[int] = SIZES) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-np.sqrt(6.0 / (a + b)), np.sqrt(6.0 / (a + b)), (b, a)) for a, b in zip(sizes[:-1], sizes[1:])]


def _columns(data: Data, n_train: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y, xt, yt = data
    x_train = x[:n_train].reshape(-1, SIZES[0], 1)
    y_train = np.eye(SIZES[-1], dtype=np.float32)[y[:n_train]].reshape(-1, SIZES[-1], 1)
    return x_train, y_train, xt, yt


def run_classic(data: Data, epochs: int = 100, n_train: int = 1000, n_threads: int = 2, seed: int = 0,
                repeats: int = 5) -> list[dict]:
    """Training seconds (nncore: median of ``repeats`` runs) and test accuracy of the classic script
    in nncore and in plain numpy (one run of several seconds)."""
    x_train, y_train, x_test, y_test = _columns(data, n_train)
    weights = _glorot_weights(seed)
    rows = []
    with threads(n_threads):
        # nncore: the classic API, per sample. Its run is short (a few tenths of a second), so one
        # timing is at the mercy of the shared machine: the median of `repeats` runs, each from the
        # same initial weights, is reported.
        times = []
        for _ in range(repeats):
            network: list[Any] = []
            for w in weights:
                dense = nncore.Dense(w.shape[1], w.shape[0])
                dense.weights[...] = w
                network += [dense, nncore.Tanh()]
            t0 = time.perf_counter()
            nncore.train(network, nncore.mse, nncore.mse_prime, x_train, y_train, epochs=epochs, learning_rate=0.1,
                         verbose=False)
            times.append(time.perf_counter() - t0)
        ours = float(np.median(times))
        predicted = np.argmax(nncore.predict(network, x_test), axis=-1).ravel()
        ours_acc = float(np.mean(predicted == y_test))

        # The original numpy design.
        reference = []
        for w in weights:
            reference += [classic_numpy.Dense(w, np.zeros(w.shape[0])), classic_numpy.Tanh()]
        t0 = time.perf_counter()
        classic_numpy.train(reference, classic_numpy.mse, classic_numpy.mse_prime, x_train, y_train, epochs=epochs,
                            learning_rate=0.1)
        theirs = time.perf_counter() - t0
        output = classic_numpy.predict(reference, x_test.T)  # all test images as columns of one matrix
        theirs_acc = float(np.mean(np.argmax(output, axis=0) == y_test))

    settings = f"784-40-10 tanh, mse, {n_train} samples, {epochs} epochs, per-sample SGD lr 0.1"
    rows.append({"implementation": "nncore.train (float32)", "settings": settings, "threads": n_threads,
                 "training s": ours, "test acc": f"{ours_acc:.2%}", "speed-up vs numpy": ratio(theirs, ours)})
    rows.append({"implementation": "classic numpy code (float64)", "settings": settings, "threads": n_threads,
                 "training s": theirs, "test acc": f"{theirs_acc:.2%}", "speed-up vs numpy": "1.00x"})
    return rows
