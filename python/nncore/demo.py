"""Train a small digit classifier on the digits shipped with nncore: ``python -m nncore.demo``.

Uses the classic API (a list of layers, ``mse``, ``train``, ``predict``) on 6000 real MNIST
training images and measures accuracy on 1000 MNIST test images. Needs no files or network and
takes a few seconds.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

import nncore
from nncore.datasets import load_digits

HIDDEN = 128


def _rows(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, 28, 28) -> float32 rows (N, 784) in [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nncore.demo",
        description="Train a 784-128-10 network on the MNIST digits shipped with nncore "
        "and report its test accuracy.",
    )
    parser.add_argument(
        "--epochs", type=int, default=20, help="passes over the 6000 training images (default 20)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    parser.add_argument(
        "--learning-rate", type=float, default=4.0, help="SGD learning rate (default 4.0)"
    )
    args = parser.parse_args(argv)
    if args.epochs < 0 or args.seed < 0 or args.batch_size < 1 or not 0 <= args.learning_rate < math.inf:
        parser.error(
            "expected --epochs >= 0, --seed >= 0, --batch-size >= 1 and a finite --learning-rate >= 0"
        )

    info = nncore.cpu_info()
    print(f"nncore {nncore.__version__}: {info['isa']} kernels, {info['num_threads']} threads")

    (x_train, y_train), (x_test, y_test) = load_digits()
    x_train, x_test = _rows(x_train), _rows(x_test)
    targets = np.eye(10, dtype=np.float32)[y_train]  # one-hot rows (N, 10)
    print(f"data: {len(x_train)} training and {len(x_test)} test 28x28 digits (a subset of MNIST)")

    nncore.seed(args.seed)
    network = [
        nncore.Dense(28 * 28, HIDDEN),
        nncore.ReLU(),
        nncore.Dense(HIDDEN, 10),
        nncore.Sigmoid(),
    ]
    print(
        f"network: Dense(784, {HIDDEN}), ReLU, Dense({HIDDEN}, 10), Sigmoid; mse loss, "
        f"batch size {args.batch_size}, learning rate {args.learning_rate}, {args.epochs} epochs"
    )

    start = time.perf_counter()
    nncore.train(
        network,
        nncore.mse,
        nncore.mse_prime,
        x_train,
        targets,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        shuffle=True,
    )
    seconds = time.perf_counter() - start

    predicted = np.argmax(nncore.predict(network, x_test), axis=1)
    accuracy = float(np.mean(predicted == y_test))
    print(f"test accuracy: {accuracy:.1%} ({int(np.sum(predicted == y_test))}/{len(y_test)})")
    print(f"training time: {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
