"""MNIST with a LeNet-style convolutional network, trained by ``Sequential.fit``.

    Conv2D(1, 16, 5, padding=2) ReLU MaxPool2D(2)     28x28 -> 16 x 14x14
    Conv2D(16, 32, 5)           ReLU MaxPool2D(2)     -> 32 x 5x5
    Flatten Dense(800, 128) ReLU Dense(128, 10)

Adam (lr 1e-3), cross-entropy on logits, mini-batches of 64, 2 epochs over the 60000 training
images, then the accuracy on the 10000 test images (about 98.6%). Prints the time of every
epoch and saves the model as a .safetensors file.

    python examples/mnist_cnn.py [DATA_DIR] [--epochs 2] [--out DIR]

DATA_DIR holds the four MNIST IDX files (gzipped or not). Without it, ``load_mnist`` looks in
$NNCORE_DATA, then in ../shared/data/mnist next to the repository, then in its cache directory,
and downloads the files there (sha256-checked) when the network allows.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import nncore
from _mnist import default_data_dir, describe, load_or_explain
from nncore import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Sequential
from nncore.optim import Adam


def lenet() -> Sequential:
    return Sequential([
        Conv2D(1, 16, 5, padding=2), ReLU(), MaxPool2D(2),
        Conv2D(16, 32, 5), ReLU(), MaxPool2D(2),
        Flatten(), Dense(800, 128, init="he_uniform"), ReLU(),
        Dense(128, 10),
    ])


def images(x: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1], the NCHW layout Conv2D takes."""
    return (x.astype(np.float32) / 255.0)[:, np.newaxis]


def main() -> int:
    parser = argparse.ArgumentParser(description="Train a LeNet-style CNN on MNIST with nncore.")
    parser.add_argument("data_dir", nargs="?", default=default_data_dir(), help="directory with the MNIST IDX files")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (default 2)")
    parser.add_argument("--batch-size", type=int, default=64, help="mini-batch size (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and shuffling (default 0)")
    parser.add_argument("--out", default=".", help="directory for mnist_cnn.safetensors (default .)")
    args = parser.parse_args()
    if args.epochs < 1 or args.batch_size < 1 or args.seed < 0:
        parser.error("expected --epochs >= 1, --batch-size >= 1 and --seed >= 0")

    data = load_or_explain(args.data_dir, "mnist_cnn.py")
    if data is None:
        return 2
    (x_train, y_train), (x_test, y_test) = data
    x_train, x_test = images(x_train), images(x_test)
    describe(len(x_train), len(x_test))

    nncore.seed(args.seed)
    model = lenet()
    model.summary()
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        loss="cross_entropy", optimizer=Adam(1e-3), seed=args.seed, verbose=2)
    seconds = time.perf_counter() - start
    print(f"training: {seconds:.1f} s for {len(history.epoch)} epochs ({seconds / len(history.epoch):.1f} s per epoch)")

    test = model.evaluate(x_test, y_test)
    print(f"test accuracy: {test['accuracy']:.2%}, test loss: {test['loss']:.4f}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "mnist_cnn.safetensors")
    reloaded = nncore.load(out / "mnist_cnn.safetensors")
    same = np.array_equal(reloaded.predict(x_test[:1000]), model.predict(x_test[:1000]))
    print(f"saved {out / 'mnist_cnn.safetensors'}; reloaded model gives {'identical' if same else 'DIFFERENT'} predictions")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
