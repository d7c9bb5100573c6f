"""Smoke test of the benchmark suite (benchmarks/): every case runs on tiny sizes and returns
well-formed rows. No timing is asserted (the machines are noisy); only shapes and correctness."""

from __future__ import annotations

import math
import sys
import time

import numpy as np
import pytest

import nncore

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import bench_classic  # noqa: E402
import bench_cnn  # noqa: E402
import bench_gemm  # noqa: E402
import bench_mnist  # noqa: E402
import bench_ops  # noqa: E402
import classic_numpy  # noqa: E402
import common  # noqa: E402
import run_all  # noqa: E402


@pytest.fixture(scope="module")
def tiny_data():
    data, note = bench_mnist.load_data(None, n_train=256, n_test=64)
    assert "random data" in note
    assert data[0].shape == (256, 784) and data[0].dtype == np.float32
    assert data[2].shape == (64, 784) and data[3].shape == (64,)
    return data


def _well_formed(rows, keys):
    assert rows and all(isinstance(row, dict) for row in rows)
    for row in rows:
        assert set(keys) <= set(row), f"missing {set(keys) - set(row)} in {row}"
    table = common.markdown_table(rows)
    lines = table.strip().splitlines()
    assert len(lines) == len(rows) + 2 and all(line.startswith("|") for line in lines)


def _speed(value):
    return value == common.NOT_INSTALLED or (isinstance(value, float) and value > 0 and math.isfinite(value))


def test_elementwise_rows_and_errors():
    rows = bench_ops.run_elementwise([64 * 3, 1000], 1, min_time=0.001)
    _well_formed(rows, ["function", "elements", "nncore Gelem/s", "numpy Gelem/s", "torch Gelem/s", "vs numpy",
                        "nncore max err (ulp)"])
    assert {row["function"] for row in rows} == set(bench_ops.ELEMENTWISE)
    for row in rows:
        assert _speed(row["nncore Gelem/s"]) and _speed(row["numpy Gelem/s"]) and _speed(row["torch Gelem/s"])
        # nncore's stated bounds: 4 ulp for tanh/sigmoid, 2 for exp, exact relu; softmax inherits the
        # float32 rounding of x - max, for every implementation alike.
        limit = {"tanh": 4, "sigmoid": 4, "exp": 2, "relu": 0, "softmax": 64}[row["function"]]
        assert row["nncore max err (ulp)"] <= limit


def test_matmul_rows():
    _well_formed(bench_ops.run_matmul([(3, 5, 4)], 1, min_time=0.001), ["matmul", "nncore GFLOP/s", "vs numpy"])


def test_gemm_rows(monkeypatch):
    cases = [("square 8", 8, 8, 8, False, False), ("fwd XW^T b2 5->3", 2, 3, 5, False, True),
             ("bwd dY^T X b2 5->3", 3, 5, 2, True, False)]
    monkeypatch.setattr(bench_gemm, "_cases", lambda quick: cases)
    rows = bench_gemm.run(threads=(1,), dtypes=("float32", "float64"), min_time=0.001)
    assert [(r["case"], r["dtype"]) for r in rows] == [(c[0], d) for d in ("float32", "float64") for c in cases]
    for row in rows:
        assert all(_speed(row[key]) for key in ("nncore_gflops", "numpy_gflops", "vs_best"))
        assert row["torch_gflops"] is None or _speed(row["torch_gflops"])
    # With 2 threads float64 keeps the square cases only.
    monkeypatch.setattr(common, "SETTLE_SECONDS", 0.0)
    rows = bench_gemm.run(threads=(2,), dtypes=("float64",), min_time=0.001)
    assert [r["case"] for r in rows] == ["square 8"] and rows[0]["threads"] == 2


def test_gemm_scaling_rows(monkeypatch):
    monkeypatch.setattr(common, "SETTLE_SECONDS", 0.0)
    before = nncore.get_num_threads()
    rows = bench_gemm.scaling(quick=True, cases=[(16, "float32"), (9, "float64")])
    assert [(r["m = n = k"], r["dtype"]) for r in rows] == [(16, "float32"), (9, "float64")]
    for row in rows:
        one, two = row["nncore GF/s, 1 thread"], row["nncore GF/s, 2 threads"]
        assert _speed(one) and _speed(two)
        assert row["speed-up"] == pytest.approx(two / one)
    assert nncore.get_num_threads() == before
    assert "speed-up" in common.markdown_table(rows)
    with pytest.raises(ValueError, match="threads >= 2"):
        bench_gemm.scaling(threads=1, cases=[(4, "float32")])


def test_compare_keeps_missing_peers_missing():
    seconds = common.compare({"a": lambda: None, "b": None}, min_time=0.001)
    assert seconds["b"] is None and seconds["a"] >= 0
    assert common.ratio(None, 1.0) == "n/a" and common.ratio(2.0, 1.0) == "2.00x"


def test_compare_does_not_size_rounds_from_a_slow_first_call():
    # A first call that builds a plan is far slower than the rest; sized from it, a round would
    # hold a single call, timed right after the pause.
    calls = []

    def slow_first() -> None:
        calls.append(None)
        if len(calls) == 1:
            time.sleep(0.02)

    common.compare({"f": slow_first}, min_time=0.05, rounds=5)
    assert len(calls) > 100


def test_training_and_inference_rows(tiny_data):
    rows = bench_mnist.run_training(tiny_data, batch_sizes=(64,), epochs=1, optimizers=("sgd", "adam"))
    _well_formed(rows, ["optimizer", "batch", "nncore s/epoch", "nncore acc", "nncore dense s/epoch", "torch s/epoch",
                        "sklearn s/epoch", "vs torch", "vs sklearn", "dense vs torch", "torch flush s/epoch",
                        "vs torch flush"])
    assert len(rows) == 2 and all(_speed(row["nncore s/epoch"]) and _speed(row["nncore dense s/epoch"]) for row in rows)
    rows = bench_mnist.run_inference(tiny_data, batch=100, min_time=0.001)
    _well_formed(rows, ["implementation", "1-sample latency (us)", "batch 100 (samples/s)"])


def test_same_network_in_every_framework(tiny_data):
    weights = bench_mnist.initial_weights(0)
    x = tiny_data[2][:8]
    ours = bench_mnist.nncore_model(weights).predict(x)
    if common.torch is not None:
        with common.torch.no_grad():
            theirs = bench_mnist.torch_model(weights)(common.torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    if common.sklearn is not None:
        clf = bench_mnist._fitted_sklearn(weights, tiny_data)
        e = np.exp(ours - ours.max(axis=1, keepdims=True))
        np.testing.assert_allclose(clf.predict_proba(x), e / e.sum(axis=1, keepdims=True), rtol=1e-4, atol=1e-6)


def test_classic_rows_and_reference_agree(tiny_data):
    rows = bench_classic.run_classic(tiny_data, epochs=1, n_train=20)
    _well_formed(rows, ["implementation", "training s", "test acc", "speed-up vs numpy"])
    # The numpy reference follows the classic equations: one step on one sample matches nncore's.
    w = bench_classic._glorot_weights(1, (6, 4, 3))
    x = np.linspace(-1, 1, 6).reshape(6, 1)
    y = np.array([[1.0], [0.0], [0.0]])
    net = []
    for wi in w:
        net += [classic_numpy.Dense(wi, np.zeros(wi.shape[0])), classic_numpy.Tanh()]
    classic_numpy.train(net, classic_numpy.mse, classic_numpy.mse_prime, x[None], y[None], epochs=1, learning_rate=0.1)
    import nncore

    ours = []
    for wi in w:
        dense = nncore.Dense(wi.shape[1], wi.shape[0], dtype=np.float64)
        dense.weights[...] = wi
        ours += [dense, nncore.Tanh()]
    nncore.train(ours, nncore.mse, nncore.mse_prime, x[None], y[None], epochs=1, learning_rate=0.1, verbose=False)
    np.testing.assert_allclose(ours[0].weights, net[0].weights, rtol=1e-12, atol=1e-14)


def test_memory_and_determinism_rows(tiny_data):
    rows = bench_mnist.run_memory(n_train=256, path=None, frameworks=("nncore",))
    _well_formed(rows, ["framework", "peak RSS (MB)", "training data (MB)"])
    assert isinstance(rows[0]["peak RSS (MB)"], float) and rows[0]["peak RSS (MB)"] > 0
    rows = bench_mnist.run_determinism(tiny_data, n_samples=128, batch_size=32)
    assert rows[0]["bit-identical"] == "yes"


def test_run_all_reports_missing_gemm_bench_and_peak(monkeypatch):
    import importlib

    import nncore

    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(importlib, "import_module", missing)
    assert "gemm bench not present" in run_all.gemm_section(quick=True)
    monkeypatch.delattr(nncore._core, "fma_peak", raising=False)
    assert run_all.fma_peak_lines() == ["- FMA peak: unavailable (this build's `nncore._core` has no `fma_peak`)"]
    monkeypatch.setattr(nncore._core, "fma_peak", lambda dtype, seconds, threads: 100.0 * threads, raising=False)
    monkeypatch.delattr(nncore._core, "tile_peak", raising=False)
    lines = run_all.fma_peak_lines()
    assert len(lines) == 5 and "float32, 2 thread(s): 200.0 GFLOP/s" in lines[1]
    assert lines[4] == "- GEMM register tile alone: unavailable (this build's `nncore._core` has no `tile_peak`)"
    monkeypatch.setattr(nncore._core, "tile_peak", lambda dtype, seconds: 80.0 if dtype == "float32" else 45.0,
                        raising=False)
    lines = run_all.fma_peak_lines()
    tiles = nncore.cpu_info()["gemm_tile"]
    assert len(lines) == 6
    assert lines[4].startswith(f"- GEMM register tile {tiles['float32'][0]} x {tiles['float32'][1]} alone")
    assert lines[4].endswith("float32, 1 thread: 80.0 GFLOP/s, 80.0% of the FMA peak beside it")
    assert lines[5].endswith("float64, 1 thread: 45.0 GFLOP/s, 45.0% of the FMA peak beside it")


def test_cnn_training_rows(tiny_data):
    rows = bench_cnn.run_cnn_training(tiny_data, batch_size=64, epochs=1, n_threads=1)
    _well_formed(rows, ["network", "batch", "nncore s/epoch", "nncore acc", "torch s/epoch", "torch acc", "vs torch"])
    assert _speed(rows[0]["nncore s/epoch"]) and _speed(rows[0]["torch s/epoch"])
    assert (rows[0]["torch s/epoch"] == common.NOT_INSTALLED) == (common.torch is None)
    assert rows[0]["vs torch"].endswith("x") == (common.torch is not None)


def test_cnn_benchmark_trains_the_same_network_in_both_frameworks():
    torch = pytest.importorskip("torch")
    weights = bench_cnn.initial_weights(0)
    assert [w.shape for w, _ in weights] == [(16, 1, 5, 5), (32, 16, 5, 5), (128, 800), (10, 128)]
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    with torch.no_grad():
        expected = bench_cnn.torch_model(weights)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(bench_cnn.nncore_model(weights).predict(x), expected, rtol=1e-4, atol=1e-5)
