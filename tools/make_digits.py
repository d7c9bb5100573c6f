"""Regenerate python/nncore/data/digits.npz, the digits set of nncore.datasets.load_digits.

It is a fixed subset of real MNIST: 600 images of each digit from the MNIST training set (6000)
and 100 of each digit from the MNIST test set (1000), chosen with a seeded generator and kept in
MNIST's own order. Images are uint8 (N, 28, 28), labels uint8 (N,). The archive also records
which MNIST images were taken (train_index, test_index).

    python tools/make_digits.py [--mnist DIR] [--seed 2024] [--out python/nncore/data/digits.npz]

DIR holds the four MNIST IDX files (default: $NNCORE_DATA, else ../shared/data/mnist next to the
repository). The same files and seed give the same arrays (the zip's timestamps differ).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from nncore.datasets import load_mnist

REPO = Path(__file__).resolve().parents[1]
TRAIN_PER_CLASS = 600
TEST_PER_CLASS = 100


def balanced_subset(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``per_class`` samples of every label 0..9, in ascending order."""
    chosen = [
        rng.choice(np.flatnonzero(labels == digit), per_class, replace=False) for digit in range(10)
    ]
    return np.sort(np.concatenate(chosen))


def main(argv: list[str] | None = None) -> int:
    default_mnist = os.environ.get("NNCORE_DATA") or str(REPO.parent / "shared" / "data" / "mnist")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", default=default_mnist, help="directory with the MNIST IDX files")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", default=str(REPO / "python" / "nncore" / "data" / "digits.npz"))
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = load_mnist(args.mnist)
    rng = np.random.default_rng(args.seed)
    train_index = balanced_subset(y_train, TRAIN_PER_CLASS, rng)
    test_index = balanced_subset(y_test, TEST_PER_CLASS, rng)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        x_train=x_train[train_index],
        y_train=y_train[train_index],
        x_test=x_test[test_index],
        y_test=y_test[test_index],
        train_index=train_index.astype(np.uint16),
        test_index=test_index.astype(np.uint16),
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): {len(train_index)} training and "
          f"{len(test_index)} test images, seed {args.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
