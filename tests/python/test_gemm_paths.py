"""The GEMM driver's small-problem paths (unpacked dot and direct kernels) through the bindings:
the MLP's Dense shapes at batch 1..8 in all three forms, few outputs, short reductions, layouts
with leading dimension > row, X W^T at a small batch computed as W X^T (packed, stored
transposed), bit-identical results for 1 and 2 threads, and for B at any address (the unpacked
kernels and the packed path's reads of B in place both depend on it)."""

from __future__ import annotations

import nncore
import numpy as np
import pytest
from conftest import DTYPES, assert_gemm_close, random_array, ref_matmul
from nncore import ops

LAYERS = [(784, 256), (256, 128), (128, 10), (5, 3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5, 8, 32, 33, 64])
@pytest.mark.parametrize(("fan_in", "fan_out"), LAYERS, ids=str)
def test_dense_forms_match_reference(batch, fan_in, fan_out, dtype, rng):
    x = random_array(rng, (batch, fan_in), dtype)
    w = random_array(rng, (fan_out, fan_in), dtype)
    dy = random_array(rng, (batch, fan_out), dtype)
    # forward X W^T (dot kernel; at batch 32 and 64 with 4x as many outputs the packed path computes
    # W X^T and stores it transposed), backward dY W and dY^T X (direct kernel at small batch)
    for a, b, ta, tb in ((x, w, False, True), (dy, w, False, False), (dy, x, True, False)):
        got = ops.matmul(a, b, transpose_a=ta, transpose_b=tb)
        assert_gemm_close(got, ref_matmul(a, b, ta, tb), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_small_paths_read_padded_and_reversed_views(dtype, rng):
    base = random_array(rng, (9, 70), dtype)
    wbase = random_array(rng, (20, 90), dtype)
    for a in (base[:3, :61], base[::-3, :61], base[1:2, 5:66]):
        for b in (wbase[:, :61], wbase[::-2, 3:64], wbase[:7, :61]):
            got = ops.matmul(a, b, transpose_b=True)  # dot: both along k, ld > row
            assert_gemm_close(got, ref_matmul(a, b, False, True), dtype)
    for a in (base[:4, :20], base[::-2, :20], base[:2, ::-3][:, :20]):
        b = wbase[:20, :37]
        got = ops.matmul(a, b)  # direct: B rows contiguous, ld > row
        assert_gemm_close(got, ref_matmul(a, b, False, False), dtype)


def _copies_at_every_offset(w: np.ndarray):
    """``w`` copied to a 64-byte boundary (first), then to every other offset within a line."""
    itemsize = w.dtype.itemsize
    store = np.empty(w.size + 64 // itemsize, w.dtype)
    for offset in range(64 // itemsize):
        first = ((-store.ctypes.data % 64) // itemsize + offset) % (64 // itemsize)
        view = store[first:first + w.size].reshape(w.shape)
        view[...] = w
        yield view


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("form", "batch", "fan_in", "fan_out"), [
    # unpacked kernels
    ("X W^T", 1, 784, 256), ("X W^T", 3, 256, 128), ("X W^T", 1, 300, 256), ("X W^T", 16, 784, 256),
    ("dY W", 1, 784, 256), ("dY W", 3, 784, 256), ("dY W", 1, 256, 128), ("dY W", 2, 300, 256),
    # packed path
    ("dY^T X", 32, 784, 256), ("dY^T X", 64, 256, 128), ("dY W", 64, 784, 256), ("dY W", 32, 784, 256),
    ("dY W", 96, 256, 128), ("X W^T", 128, 784, 256),
], ids=str)
def test_same_bits_at_any_address_of_b(form, batch, fan_in, fan_out, dtype, rng, restore_threads):
    # How B (W, or X for dY^T X) is read depends on its address. The unpacked kernels read a W
    # beyond L1 by its address (isa_impl.inc: streamed_offset): rows all off a vector boundary by
    # one amount (784, 256 values) with their loads moved onto the boundaries, rows at different
    # offsets (300) as they come. The packed driver reads B in place, or not, by B's address
    # (gemm.cpp: b_in_place_pays and column_lead; rows of 784 float64 values are more than a page
    # apart), and X W^T at a long k takes the transposed form (transposed_pays). Every address, on
    # 1 and 2 threads, gives the bits of B on a 64-byte boundary on 1 thread, and a view with B's
    # rows reversed (a negative stride) the right values.
    if form == "dY^T X":
        a, b = random_array(rng, (batch, fan_out), dtype), random_array(rng, (batch, fan_in), dtype)
    else:
        a = random_array(rng, (batch, fan_in if form == "X W^T" else fan_out), dtype)
        b = random_array(rng, (fan_out, fan_in), dtype)
    ta, tb = form == "dY^T X", form == "X W^T"
    want = None
    for placed in _copies_at_every_offset(b):
        for threads in (1, 2):
            nncore.set_num_threads(threads)
            got = ops.matmul(a, placed, transpose_a=ta, transpose_b=tb)
            if want is None:
                assert placed.ctypes.data % 64 == 0
                assert_gemm_close(got, ref_matmul(a, b, ta, tb), dtype)
                want = got
            assert got.tobytes() == want.tobytes(), \
                f"B at {placed.ctypes.data % 64} bytes past a line, {threads} thread(s)"
    reversed_rows = np.ascontiguousarray(b[::-1])[::-1]
    assert reversed_rows.strides[0] < 0
    assert_gemm_close(ops.matmul(a, reversed_rows, transpose_a=ta, transpose_b=tb), ref_matmul(a, b, ta, tb), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("m", "n", "k", "ta", "tb"), [
    (700, 10, 200, False, True),    # dot, few outputs, split over rows
    (2, 3000, 300, False, True),    # dot, GEMV, split over columns
    (3000, 100, 3, False, False),   # direct, short k, split over rows
    (3, 5000, 100, False, False),   # direct, GEMV, split over columns
    (256, 784, 1, True, False),     # dY^T X at batch 1
    (32, 256, 784, False, True),    # packed, computed as W X^T and stored transposed
    (64, 1024, 300, False, True),   # the same, split over W's rows
], ids=str)
def test_small_paths_identical_for_1_and_2_threads(m, n, k, ta, tb, dtype, rng, restore_threads):
    a = random_array(rng, (k, m) if ta else (m, k), dtype)
    b = random_array(rng, (n, k) if tb else (k, n), dtype)
    results = []
    for threads in (1, 2):
        nncore.set_num_threads(threads)
        results.append(ops.matmul(a, b, transpose_a=ta, transpose_b=tb))
    assert np.array_equal(results[0], results[1])
    assert_gemm_close(results[0], ref_matmul(a, b, ta, tb), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["identity", "relu", "tanh", "sigmoid"])
def test_linear_at_batch_1_fuses_bias_and_activation(activation, dtype, rng):
    x = random_array(rng, (1, 300), dtype)
    w = random_array(rng, (13, 300), dtype)
    bias = random_array(rng, (13,), dtype)
    got = nncore._core.linear(x, w, bias, activation)
    z = x.astype(np.float64) @ w.astype(np.float64).T + bias
    ref = {"identity": z, "relu": np.maximum(z, 0), "tanh": np.tanh(z), "sigmoid": 1 / (1 + np.exp(-z))}[activation]
    np.testing.assert_allclose(got, ref, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("m", [1, 3, 4])
@pytest.mark.parametrize("tb", [False, True], ids=["B by rows", "B^T by rows"])
def test_long_reductions_of_few_rows_stay_accurate(m, tb, rng):
    # Few rows take the unpacked kernels (direct when B's rows are contiguous, dot for B^T's), which
    # must not sum a long k in one sequence: float32 over 2^18 positive terms in one sequence was off
    # by ~3e-5 relative; numpy's error here is ~1e-6.
    k, n = 1 << 18, 5
    a = rng.random((m, k), dtype=np.float32)
    b = rng.random((n, k), dtype=np.float32) if tb else rng.random((k, n), dtype=np.float32)
    got = ops.matmul(a, b, transpose_b=tb)
    ref = ref_matmul(a, b, False, tb)
    assert np.max(np.abs(got - ref) / np.abs(ref)) < 5e-6
