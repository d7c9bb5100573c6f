"""Shared helpers for the nncore Python test suite: references, tolerances, finite differences,
data locations and subprocess runners."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nncore
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

DTYPES = [np.float32, np.float64]

# Relative tolerances against float64 references. The vectorised transcendentals promise a few ulp;
# these leave room for the rounding of the float64 -> float32 reference itself.
RTOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-13}
ATOL = {np.dtype(np.float32): 1e-37, np.dtype(np.float64): 1e-300}
# GEMM accumulates k products, so it is compared relative to the norm of the result.
GEMM_RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


# ----------------------------------------------------------------------------------------------
# float64 references (plain numpy, computed on float64 copies of the inputs)


def _f64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def ref_tanh(x):
    return np.tanh(_f64(x))


def ref_sigmoid(x):
    x = _f64(x)
    with np.errstate(over="ignore", under="ignore"):
        # exp(-|x|) never overflows; pick the branch that keeps full precision.
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def ref_relu(x):
    x = _f64(x)
    return np.where(x <= 0, 0.0, x)  # NaN stays NaN


def ref_leaky_relu(x, slope=0.01):
    x = _f64(x)
    return np.where(x >= 0, x, slope * x)


def ref_exp(x):
    with np.errstate(over="ignore", under="ignore"):
        return np.exp(_f64(x))


def ref_softmax(x):
    x = _f64(x)
    if x.size == 0:
        return x.copy()
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):  # inf - inf rows are NaN
        shifted = x - x.max(axis=-1, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=-1, keepdims=True)


def ref_matmul(a, b, transpose_a=False, transpose_b=False):
    a, b = _f64(a), _f64(b)
    return (a.T if transpose_a else a) @ (b.T if transpose_b else b)


def assert_close_to_reference(
    got: np.ndarray, expected: np.ndarray, dtype, rtol_scale: float = 1.0
):
    """Elementwise comparison with the float64 reference, rounded to the tested dtype first (so
    overflow/underflow in float32 is expected, not an error)."""
    dtype = np.dtype(dtype)
    assert got.dtype == dtype, f"expected dtype {dtype}, got {got.dtype}"
    with np.errstate(over="ignore", under="ignore"):
        expected = np.asarray(expected).astype(dtype)
    # (assert_allclose's strict=True needs numpy 2; nncore supports numpy >= 1.23.)
    assert got.shape == expected.shape, f"expected shape {expected.shape}, got {got.shape}"
    np.testing.assert_allclose(got, expected, rtol=RTOL[dtype] * rtol_scale, atol=ATOL[dtype], equal_nan=True)


def assert_gemm_close(got: np.ndarray, expected: np.ndarray, dtype):
    dtype = np.dtype(dtype)
    assert got.dtype == dtype
    assert got.shape == expected.shape
    if expected.size == 0:
        return
    scale = max(np.linalg.norm(expected), 1.0)
    error = np.linalg.norm(got.astype(np.float64) - expected)
    assert error <= GEMM_RTOL[dtype] * scale, f"relative error {error / scale:.3g}"


def random_array(rng: np.random.Generator, shape, dtype, low=-3.0, high=3.0) -> np.ndarray:
    """Uniform random data (never all zeros), of the given dtype."""
    return rng.uniform(low, high, shape).astype(dtype)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


# ----------------------------------------------------------------------------------------------
# Finite differences


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d f() / d x by central differences, perturbing ``x`` in place (float64)."""
    assert x.dtype == np.float64
    grad = np.zeros_like(x)
    flat_x = x.reshape(-1)  # a view: x must be contiguous
    assert np.shares_memory(flat_x, x)
    flat_g = grad.reshape(-1)
    for i in range(flat_x.size):
        saved = flat_x[i]
        flat_x[i] = saved + eps
        plus = f()
        flat_x[i] = saved - eps
        minus = f()
        flat_x[i] = saved
        flat_g[i] = (plus - minus) / (2 * eps)
    return grad


def assert_gradients_close(analytic, numeric, rtol=1e-5, atol=1e-7):
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------------------------
# MNIST (read straight from the IDX files; no dependency on a datasets module)


def mnist_dir() -> Path:
    env = os.environ.get("NNCORE_DATA")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "data" / "mnist"


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST format): magic, dims, then big-endian uint8 data."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    assert magic >> 8 == 0x08, f"{path}: not an unsigned-byte IDX file (magic {magic:#x})"
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


# ----------------------------------------------------------------------------------------------
# Subprocesses (for NNCORE_ISA, which is read once at import)


def run_python(code: str, env_overrides: dict[str, str] | None = None, timeout: float = 300):
    """Run ``code`` in a fresh interpreter; returns the CompletedProcess (text output)."""
    env = dict(os.environ)
    env.pop("NNCORE_ISA", None)
    env.update(env_overrides or {})
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def restore_threads():
    """Put the kernel thread count back after a test changes it."""
    before = nncore.get_num_threads()
    yield
    nncore.set_num_threads(before)
