"""MNIST with the batched API: a 784-256-128-10 ReLU network trained by ``Sequential.fit``.

Adam with a cosine learning-rate schedule, cross-entropy on logits, mini-batches of 64, 10% of
the training images held out for validation (the best epoch's weights are kept), then the
accuracy on the 10000 test images. Prints the time of every epoch, saves the model as a
.safetensors file and the training curves as a PNG (when matplotlib is installed).

    python examples/mnist_mlp.py [DATA_DIR] [--epochs 15] [--out DIR]

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
from nncore import Dense, ReLU, Sequential
from nncore.callbacks import EarlyStopping
from nncore.optim import Adam, CosineAnnealingLR


def rows(images):
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def main():
    parser = argparse.ArgumentParser(description="Train a 784-256-128-10 MLP on MNIST with nncore.")
    parser.add_argument("data_dir", nargs="?", default=default_data_dir(), help="directory with the MNIST IDX files")
    parser.add_argument("--epochs", type=int, default=15, help="training epochs (default 15)")
    parser.add_argument("--batch-size", type=int, default=64, help="mini-batch size (default 64)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's initial learning rate (default 1e-3)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights, shuffling and dropout (default 0)")
    parser.add_argument("--out", default=".", help="directory for mnist_mlp.safetensors and mnist_mlp.png (default .)")
    args = parser.parse_args()
    if args.epochs < 1 or args.batch_size < 1 or not args.lr > 0 or args.seed < 0:
        parser.error("expected --epochs >= 1, --batch-size >= 1, --lr > 0 and --seed >= 0")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    data = load_or_explain(args.data_dir, "mnist_mlp.py")
    if data is None:
        return 2
    (x_train, y_train), (x_test, y_test) = data
    x_train, x_test = rows(x_train), rows(x_test)

    describe(len(x_train), len(x_test))

    nncore.seed(args.seed)
    model = Sequential([
        Dense(784, 256, init="he_uniform"), ReLU(),
        Dense(256, 128, init="he_uniform"), ReLU(),
        Dense(128, 10),
    ])
    model.summary()
    optimizer = Adam(args.lr)
    start = time.perf_counter()
    history = model.fit(
        x_train, y_train,
        epochs=args.epochs, batch_size=args.batch_size,
        loss="cross_entropy", optimizer=optimizer,
        validation_split=0.1, seed=args.seed,
        callbacks=[CosineAnnealingLR(optimizer, T_max=args.epochs),
                   EarlyStopping(monitor="val_accuracy", patience=args.epochs, restore_best_weights=True)],
        verbose=2,
    )
    seconds = time.perf_counter() - start
    epochs_run = len(history.epoch)
    print(f"training: {seconds:.1f} s for {epochs_run} epochs ({seconds / epochs_run:.2f} s per epoch, "
          "validation included)")

    test = model.evaluate(x_test, y_test)
    print(f"test accuracy: {test['accuracy']:.2%}, test loss: {test['loss']:.4f}")

    model_path = out / "mnist_mlp.safetensors"
    model.save(model_path)
    reloaded = nncore.load(model_path)
    same = np.array_equal(reloaded.predict(x_test), model.predict(x_test))
    print(f"saved {model_path} ({model_path.stat().st_size / 1e6:.2f} MB); reloaded model gives "
          f"{'identical' if same else 'DIFFERENT'} predictions")
    try:
        history.plot(out / "mnist_mlp.png")
        print(f"saved {out / 'mnist_mlp.png'}")
    except ImportError as error:
        print(f"no plot: {error}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
