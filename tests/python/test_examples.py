"""The main job (nncore.demo) and the batched MNIST example, end to end, and without data."""

from __future__ import annotations

import re
import subprocess
import sys

import nncore
import numpy as np
import pytest
from conftest import REPO_ROOT, mnist_dir

EXAMPLE = REPO_ROOT / "examples" / "mnist_mlp.py"
CNN_EXAMPLE = REPO_ROOT / "examples" / "mnist_cnn.py"


def _run(*args, timeout=600, script=EXAMPLE):
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_mnist_mlp_without_data_says_what_to_do(tmp_path):
    result = _run(tmp_path, "--out", tmp_path)
    assert result.returncode == 2
    assert "MNIST data not available" in result.stderr and "NNCORE_DATA" in result.stderr


@pytest.mark.slow
def test_mnist_mlp_reaches_98_percent_and_saves_model_and_curves(tmp_path):
    if not (mnist_dir() / "t10k-labels-idx1-ubyte.gz").exists():
        pytest.skip(f"MNIST not found in {mnist_dir()}")
    result = _run(mnist_dir(), "--out", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    epochs = re.findall(r"^Epoch (\d+)/15 - ([\d.]+)s - loss", result.stdout, flags=re.M)
    assert len(epochs) == 15
    accuracy = float(re.search(r"test accuracy: ([\d.]+)%", result.stdout).group(1))
    assert accuracy >= 98.0, result.stdout
    assert "identical predictions" in result.stdout
    model = nncore.load(tmp_path / "mnist_mlp.safetensors")
    assert [type(layer).__name__ for layer in model] == ["Dense", "ReLU", "Dense", "ReLU", "Dense"]
    assert model[0].weights.shape == (256, 784) and model[4].weights.shape == (10, 128)
    png = tmp_path / "mnist_mlp.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not png.exists() and "no plot" in result.stdout
    else:
        assert png.read_bytes()[:4] == b"\x89PNG"
    assert np.isfinite(model[0].weights).all()


def test_mnist_cnn_without_data_says_what_to_do(tmp_path):
    result = _run(tmp_path, "--out", tmp_path, script=CNN_EXAMPLE)
    assert result.returncode == 2
    assert "MNIST data not available" in result.stderr and "NNCORE_DATA" in result.stderr


def test_mnist_cnn_rejects_bad_arguments(tmp_path):
    result = _run(tmp_path, "--epochs", "0", script=CNN_EXAMPLE)
    assert result.returncode == 2 and "--epochs" in result.stderr
    result = subprocess.run([sys.executable, "-m", "nncore.demo", "--learning-rate", "inf"], capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 2 and "finite --learning-rate" in result.stderr


@pytest.mark.slow
def test_mnist_cnn_reaches_98_5_percent_in_two_epochs(tmp_path):
    if not (mnist_dir() / "t10k-labels-idx1-ubyte.gz").exists():
        pytest.skip(f"MNIST not found in {mnist_dir()}")
    result = _run(mnist_dir(), "--out", tmp_path, timeout=1200, script=CNN_EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(re.findall(r"^Epoch \d/2 - ", result.stdout, flags=re.M)) == 2
    accuracy = float(re.search(r"test accuracy: ([\d.]+)%", result.stdout).group(1))
    assert accuracy >= 98.5, result.stdout
    assert "identical predictions" in result.stdout
    model = nncore.load(tmp_path / "mnist_cnn.safetensors")
    assert [type(layer).__name__ for layer in model][:3] == ["Conv2D", "ReLU", "MaxPool2D"]
    assert model[3].weights.shape == (32, 16, 5, 5)


def test_demo_trains_on_the_shipped_digits():
    result = subprocess.run([sys.executable, "-m", "nncore.demo", "--epochs", "3"], capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    accuracy = float(re.search(r"test accuracy: ([\d.]+)%", result.stdout).group(1))
    assert accuracy > 85.0, result.stdout
    assert re.search(r"training time: [\d.]+ s", result.stdout)


def test_demo_rejects_bad_arguments():
    result = subprocess.run([sys.executable, "-m", "nncore.demo", "--epochs", "-1"], capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 2 and "--epochs" in result.stderr
