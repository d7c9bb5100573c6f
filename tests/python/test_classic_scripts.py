"""The two classic from-scratch scripts, unchanged apart from the import: XOR and MNIST."""

from __future__ import annotations

import time

import nncore
import numpy as np
import pytest
from conftest import mnist_dir, read_idx
from nncore import Dense, Tanh, mse, mse_prime, predict, train


@pytest.mark.slow
def test_xor_script_learns_for_nearly_every_seed():
    X = np.reshape([[0, 0], [0, 1], [1, 0], [1, 1]], (4, 2, 1))
    Y = np.reshape([[0], [1], [1], [0]], (4, 1, 1))
    seeds = range(10)
    worst_errors = {}
    for seed in seeds:
        nncore.seed(seed)
        network = [Dense(2, 3), Tanh(), Dense(3, 1), Tanh()]
        train(network, mse, mse_prime, X, Y, epochs=10000, learning_rate=0.1, verbose=False)
        outputs = np.array([predict(network, x) for x in X])
        assert outputs.shape == (4, 1, 1)
        worst_errors[seed] = float(np.abs(outputs - Y).max())
    passed = [seed for seed, error in worst_errors.items() if error < 0.1]
    assert len(passed) >= 9, f"worst |output - target| per seed: {worst_errors}"


def _load_mnist(directory, kind, limit=None):
    images = read_idx(directory / f"{kind}-images-idx3-ubyte.gz")[:limit]
    labels = read_idx(directory / f"{kind}-labels-idx1-ubyte.gz")[:limit]
    x = images.reshape(len(images), 28 * 28, 1).astype(np.float32) / 255
    y = np.zeros((len(labels), 10, 1), dtype=np.float32)
    y[np.arange(len(labels)), labels, 0] = 1
    return x, y, labels


@pytest.mark.slow
def test_mnist_script_reaches_80_percent():
    directory = mnist_dir()
    names = [
        f"{kind}-{part}-idx{n}-ubyte.gz"
        for kind in ("train", "t10k")
        for part, n in (("images", 3), ("labels", 1))
    ]
    missing = [name for name in names if not (directory / name).is_file()]
    if missing:
        pytest.skip(
            f"MNIST not found in {directory} (missing {', '.join(missing)}); set NNCORE_DATA"
        )

    x_train, y_train, _ = _load_mnist(directory, "train", limit=1000)
    x_test, _, test_labels = _load_mnist(directory, "t10k")
    assert x_train.shape == (1000, 784, 1) and x_test.shape == (10000, 784, 1)
    assert 0 <= x_train.min() and x_train.max() <= 1

    nncore.seed(0)
    network = [Dense(28 * 28, 40), Tanh(), Dense(40, 10), Tanh()]
    start = time.perf_counter()
    errors = train(
        network, mse, mse_prime, x_train, y_train, epochs=100, learning_rate=0.1, verbose=False
    )
    seconds = time.perf_counter() - start
    predicted = np.array([np.argmax(predict(network, x)) for x in x_test])
    accuracy = float(np.mean(predicted == test_labels))
    print(f"MNIST: 100 epochs on 1000 images in {seconds:.1f} s, test accuracy {accuracy:.4f}")
    assert errors[-1] < errors[0]
    assert accuracy >= 0.80, f"test accuracy {accuracy:.4f}"


@pytest.mark.slow
def test_binary_cnn_script_classifies_zeros_and_ones():
    """The classic CNN: Convolutional + Sigmoid + Reshape + Dense, binary cross-entropy, 100 images
    each of 0 and 1 as (1, 28, 28), 20 epochs of per-sample SGD at lr 0.1; >= 95% on the 0/1 test
    images."""
    directory = mnist_dir()
    if not (directory / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip(f"MNIST not found in {directory}; set NNCORE_DATA")

    def zeros_and_ones(kind, limit):
        images = read_idx(directory / f"{kind}-images-idx3-ubyte.gz")
        labels = read_idx(directory / f"{kind}-labels-idx1-ubyte.gz")
        index = np.hstack((np.where(labels == 0)[0][:limit], np.where(labels == 1)[0][:limit]))
        index = np.random.default_rng(0).permutation(index)
        x = images[index].reshape(len(index), 1, 28, 28).astype(np.float32) / 255
        y = np.eye(2, dtype=np.float32)[labels[index]].reshape(len(index), 2, 1)
        return x, y

    x_train, y_train = zeros_and_ones("train", 100)
    x_test, y_test = zeros_and_ones("t10k", 10**6)
    nncore.seed(0)
    network = [
        nncore.Convolutional((1, 28, 28), 3, 5),
        nncore.Sigmoid(),
        nncore.Reshape((5, 26, 26), (5 * 26 * 26, 1)),
        Dense(5 * 26 * 26, 100),
        nncore.Sigmoid(),
        Dense(100, 2),
        nncore.Sigmoid(),
    ]
    train(network, nncore.binary_cross_entropy, nncore.binary_cross_entropy_prime, x_train, y_train,
          epochs=20, learning_rate=0.1, verbose=False)
    correct = sum(int(np.argmax(predict(network, x)) == np.argmax(y)) for x, y in zip(x_test, y_test))
    assert correct / len(x_test) >= 0.95, f"{correct}/{len(x_test)}"
