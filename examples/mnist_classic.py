"""MNIST with the classic from-scratch network, running on nncore.

The classic script: 1000 training images as (784, 1) columns in [0, 1] with one-hot (10, 1)
targets, [Dense(784, 40), Tanh(), Dense(40, 10), Tanh()], mse, 100 epochs of per-sample SGD at
learning rate 0.1; then the accuracy on all 10000 MNIST test images.

    python examples/mnist_classic.py [DATA_DIR] [--epochs 100]

DATA_DIR holds the four MNIST IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte,
t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, gzipped or not), directly or in a ``mnist``
subdirectory. Default: $NNCORE_DATA, else ../shared/data/mnist next to the repository.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

import nncore
from nncore import Dense, Tanh, mse, mse_prime, predict, train
from nncore.datasets import MNIST_FILES, load_mnist

REPO = Path(__file__).resolve().parents[1]


def default_data_dir():
    if os.environ.get("NNCORE_DATA"):
        return os.environ["NNCORE_DATA"]
    shared = REPO.parent / "shared" / "data" / "mnist"
    return str(shared) if shared.is_dir() else None


def preprocess_data(x, y, limit=None):
    x = x.reshape(x.shape[0], 28 * 28, 1)
    x = x.astype("float32") / 255
    y = np.eye(10, dtype="float32")[y]  # one-hot, as keras' to_categorical
    y = y.reshape(y.shape[0], 10, 1)
    return x[:limit], y[:limit]


parser = argparse.ArgumentParser(description="Train the classic MNIST network with nncore.")
parser.add_argument(
    "data_dir", nargs="?", default=default_data_dir(), help="directory with the MNIST IDX files"
)
parser.add_argument("--epochs", type=int, default=100, help="training epochs (default 100)")
parser.add_argument("--seed", type=int, default=0, help="seed for the initial weights (default 0)")
args = parser.parse_args()

try:
    if args.data_dir is None:
        raise FileNotFoundError("no data directory given and NNCORE_DATA is not set")
    (x_train, y_train), (x_test, y_test) = load_mnist(args.data_dir)
except FileNotFoundError as error:
    names = "".join(f"    {name}.gz\n" for name in MNIST_FILES.values())
    print(
        f"MNIST data not found: {error}\n\n"
        f"This example needs the four MNIST files in IDX format (gzipped or not):\n{names}"
        "They are distributed on the MNIST database page (Yann LeCun, Corinna Cortes and\n"
        "Chris Burges; mirrored e.g. at https://ossci-datasets.s3.amazonaws.com/mnist/).\n"
        "Put them in one directory and run\n"
        "    python examples/mnist_classic.py DIR\n"
        "or set NNCORE_DATA=DIR.\n"
        "(python -m nncore.demo trains on a digits subset shipped with nncore, no files needed.)",
        file=sys.stderr,
    )
    sys.exit(2)

nncore.seed(args.seed)
x_train, y_train = preprocess_data(x_train, y_train, 1000)
x_test_columns, _ = preprocess_data(x_test, y_test)

# neural network
network = [
    Dense(28 * 28, 40),
    Tanh(),
    Dense(40, 10),
    Tanh(),
]

# train
start = time.perf_counter()
train(network, mse, mse_prime, x_train, y_train, epochs=args.epochs, learning_rate=0.1)
seconds = time.perf_counter() - start

# test: all 10000 test images in one batch of (784, 1) columns
output = predict(network, x_test_columns)  # (10000, 10, 1)
predicted = np.argmax(output, axis=1).ravel()
for pred, true in list(zip(predicted, y_test))[:20]:
    print("pred:", pred, "\ttrue:", true)
accuracy = np.mean(predicted == y_test)
print(f"training time: {seconds:.2f} s ({args.epochs} epochs of 1000 samples, one sample per step)")
correct = int(np.sum(predicted == y_test))
print(f"test accuracy: {accuracy:.2%} ({correct}/{len(y_test)} MNIST test images)")
