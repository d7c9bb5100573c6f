"""What the MNIST examples share: where the data is looked for, and what is said when it is not there."""

import os
import sys
from pathlib import Path

import nncore
from nncore.datasets import load_mnist

REPO = Path(__file__).resolve().parents[1]


def default_data_dir():
    """../shared/data/mnist next to the repository when it exists and $NNCORE_DATA is not set;
    else None, which lets ``load_mnist`` look in $NNCORE_DATA, then its cache (downloading there)."""
    shared = REPO.parent / "shared" / "data" / "mnist"
    return str(shared) if not os.environ.get("NNCORE_DATA") and shared.is_dir() else None


def load_or_explain(data_dir, script):
    """``load_mnist(data_dir)``, or None after telling on stderr how to provide the data."""
    try:
        return load_mnist(data_dir)
    except (FileNotFoundError, OSError) as error:
        print(f"MNIST data not available: {error}\n\nPass a directory holding the four MNIST IDX files "
              f"(python examples/{script} DIR) or set NNCORE_DATA=DIR.", file=sys.stderr)
        return None


def describe(n_train, n_test):
    info = nncore.cpu_info()
    print(f"nncore {nncore.__version__}: {info['isa']} kernels, {info['num_threads']} threads; "
          f"{n_train} training and {n_test} test images")
