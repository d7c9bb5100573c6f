"""Runtime dispatch and threads: every ISA path computes the same results, NNCORE_ISA is honoured
(or warned about), and the thread count never changes a result."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import nncore
import numpy as np
import pytest
from conftest import run_python
from nncore import ops

PREFERENCE = ["avx512", "avx2", "scalar"]
AVAILABLE = [isa for isa in PREFERENCE if isa in nncore.cpu_info()["available_isas"]]
BEST = AVAILABLE[0]

# Computes a fixed set of results on seeded data and saves each as <out>/<name>.npy, plus
# cpu_info() as <out>/info.json. The output directory is argv-free: it is formatted in.
ISA_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    import nncore
    from nncore import ops

    out = Path({out!r})
    out.mkdir(parents=True, exist_ok=True)
    results = {{}}
    for dtype in (np.float32, np.float64):
        tag = np.dtype(dtype).name
        rng = np.random.default_rng(2024)
        a = rng.standard_normal((61, 133)).astype(dtype)
        b = rng.standard_normal((133, 47)).astype(dtype)
        x = rng.uniform(-12, 12, (7, 301)).astype(dtype)
        results["matmul_" + tag] = ops.matmul(a, b)
        results["matmul_tt_" + tag] = ops.matmul(b, a, transpose_a=True, transpose_b=True)
        results["tanh_" + tag] = ops.tanh(x)
        results["sigmoid_" + tag] = ops.sigmoid(x)
        results["exp_" + tag] = ops.exp(x)
        results["relu_" + tag] = ops.relu(x)
        results["leaky_relu_" + tag] = ops.leaky_relu(x, 0.1)
        results["softmax_" + tag] = ops.softmax(x)

        dense = nncore.Dense(37, 19, dtype=dtype)
        dense.weights[:] = rng.standard_normal((19, 37))
        dense.bias[:] = rng.standard_normal(19)
        xd = rng.standard_normal((23, 37)).astype(dtype)
        g = rng.standard_normal((23, 19)).astype(dtype)
        results["dense_forward_" + tag] = dense.forward(xd)
        results["dense_dx_" + tag] = dense.backward(g, 0.01)
        results["dense_dw_" + tag] = dense.weights_gradient
        results["dense_db_" + tag] = dense.bias_gradient
        results["dense_w_after_sgd_" + tag] = dense.weights
        for layer in (nncore.Tanh(), nncore.Sigmoid(), nncore.Softmax()):
            name = type(layer).__name__.lower()
            y = layer.forward(x)
            upstream = rng.standard_normal(y.shape).astype(dtype)
            results[name + "_backward_" + tag] = layer.backward(upstream, None)
        p = ops.sigmoid(x)
        t = (rng.uniform(size=x.shape) > 0.5).astype(dtype)
        results["mse_" + tag] = np.array(nncore.mse(t, p))
        results["mse_prime_" + tag] = nncore.mse_prime(t, p)
        results["bce_" + tag] = np.array(nncore.binary_cross_entropy(t, p))
        results["bce_prime_" + tag] = nncore.binary_cross_entropy_prime(t, p)
    for name, value in results.items():
        np.save(out / (name + ".npy"), value)
    info = nncore.cpu_info()
    info["threads"] = nncore.get_num_threads()
    (out / "info.json").write_text(json.dumps(info))
    """
)


def _run_isa(isa: str, out: Path) -> dict:
    process = run_python(ISA_SCRIPT.format(out=str(out)), {"NNCORE_ISA": isa})
    assert process.returncode == 0, process.stderr
    assert "Warning" not in process.stderr, process.stderr
    return json.loads((out / "info.json").read_text())


@pytest.fixture(scope="module")
def isa_results(tmp_path_factory) -> dict[str, dict[str, np.ndarray]]:
    results = {}
    for isa in AVAILABLE:
        out = tmp_path_factory.mktemp(isa)
        info = _run_isa(isa, out)
        assert info["isa"] == isa, info
        assert info["requested_isa"] == isa and info["isa_note"] == ""
        results[isa] = {path.stem: np.load(path) for path in out.glob("*.npy")}
    return results


@pytest.mark.slow
@pytest.mark.parametrize("isa", [isa for isa in PREFERENCE if isa != "scalar"])
def test_isa_paths_agree_with_scalar(isa, isa_results):
    if isa not in isa_results:
        pytest.skip(f"{isa} is not available on this CPU ({nncore.cpu_info()['available_isas']})")
    reference, results = isa_results["scalar"], isa_results[isa]
    assert sorted(results) == sorted(reference)
    assert len(results) == 2 * 20  # every result of ISA_SCRIPT, per dtype
    for name, expected in reference.items():
        got = results[name]
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        # (the losses return a Python float, so go by the dtype the result was computed in)
        rtol = 1e-5 if name.endswith("float32") else 1e-12
        if name.startswith(("matmul", "dense")) or "_backward_" in name:
            # sums of products, and derivatives such as 1 - tanh(x)^2 that cancel where the
            # function saturates: compare relative to the size of the whole result
            error = np.linalg.norm((got - expected).astype(np.float64))
            assert error <= rtol * np.linalg.norm(expected.astype(np.float64)), name
        else:
            atol = 10 * np.finfo(got.dtype).tiny
            np.testing.assert_allclose(
                got, expected, rtol=rtol, atol=atol, err_msg=f"{name} on {isa}"
            )


def test_bogus_isa_request_warns_and_uses_the_best_isa(tmp_path):
    code = "import json, nncore; print('INFO=' + json.dumps(nncore.cpu_info()))"
    process = run_python(code, {"NNCORE_ISA": "bogus"})
    assert process.returncode == 0, process.stderr
    assert "RuntimeWarning" in process.stderr and "bogus" in process.stderr, process.stderr
    info = json.loads(
        next(line for line in process.stdout.splitlines() if line.startswith("INFO="))[5:]
    )
    assert info["isa"] == BEST
    assert info["requested_isa"] == "bogus"
    assert "bogus" in info["isa_note"]


def test_cpu_info_describes_the_running_kernels():
    info = nncore.cpu_info()
    assert info["isa"] in info["available_isas"] and info["isa"] in info["compiled_isas"]
    assert "scalar" in info["available_isas"]
    assert info["num_threads"] == nncore.get_num_threads()
    assert set(info["gemm_tile"]) == {"float32", "float64"}
    assert set(info["gemm_stream_max_rows"]) == {"float32", "float64"}
    for dtype, rows in info["gemm_short_tile_rows"].items():
        assert rows is None or 1 <= rows < info["gemm_tile"][dtype][0]
    for rows in info["gemm_stream_max_rows"].values():
        assert rows is None or (isinstance(rows, int) and rows >= 1)
    assert isinstance(info["cpu_vendor"], str)
    info["isa"] = "changed"
    assert nncore.cpu_info()["isa"] != "changed"  # a copy, not the live state


def test_num_threads_environment_variable():
    code = "import nncore; print('THREADS=%d' % nncore.get_num_threads())"
    process = run_python(code, {"NNCORE_NUM_THREADS": "1"})
    assert process.returncode == 0, process.stderr
    assert "THREADS=1" in process.stdout.splitlines()


@pytest.mark.parametrize("value", ["abc", "0", "-2", " 2", "2.5", "5000"])
def test_invalid_num_threads_environment_variable_warns_and_is_ignored(value):
    code = "import os, nncore; print('THREADS=%d' % nncore.get_num_threads())"
    process = run_python(code, {"NNCORE_NUM_THREADS": value})
    assert process.returncode == 0, process.stderr
    assert "RuntimeWarning" in process.stderr and "NNCORE_NUM_THREADS" in process.stderr, process.stderr
    threads = int(next(line for line in process.stdout.splitlines() if line.startswith("THREADS="))[8:])
    assert threads == _usable_cpus()


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_default_threads_follow_the_affinity_mask():
    # A process limited to one CPU (taskset, a container's cpuset) starts one thread, not the
    # machine's count, which would only take turns on that CPU; NNCORE_NUM_THREADS still decides.
    code = "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); import nncore; print('THREADS=%d' % nncore.get_num_threads())"
    process = run_python(code, {"NNCORE_NUM_THREADS": ""})
    assert process.returncode == 0, process.stderr
    assert "THREADS=1" in process.stdout.splitlines()
    process = run_python(code, {"NNCORE_NUM_THREADS": "2"})
    assert process.returncode == 0, process.stderr
    assert "THREADS=2" in process.stdout.splitlines()
    default = run_python("import nncore; print('THREADS=%d' % nncore.get_num_threads())", {"NNCORE_NUM_THREADS": ""})
    assert f"THREADS={_usable_cpus()}" in default.stdout.splitlines()


# ----------------------------------------------------------------------------------------------
# Threads


def test_set_num_threads_round_trip(restore_threads):
    for n in (1, 2, 3, 1):
        nncore.set_num_threads(n)
        assert nncore.get_num_threads() == n
        assert nncore.cpu_info()["num_threads"] == n


def test_set_num_threads_rejects_bad_values(restore_threads):
    before = nncore.get_num_threads()
    with pytest.raises(ValueError, match="expected 1 <= n <= 1024, got 0"):
        nncore.set_num_threads(0)
    with pytest.raises(ValueError, match="got 1025"):
        nncore.set_num_threads(1025)
    with pytest.raises(ValueError, match="got -3"):
        nncore.set_num_threads(-3)
    with pytest.raises(TypeError, match="expected an int, got float"):
        nncore.set_num_threads(2.0)
    with pytest.raises(TypeError, match="expected an int, got bool"):
        nncore.set_num_threads(True)
    with pytest.raises(TypeError, match="expected an int, got str"):
        nncore.set_num_threads("2")
    assert nncore.get_num_threads() == before


def test_set_num_threads_accepts_numpy_integers(restore_threads):
    nncore.set_num_threads(np.int64(1))
    assert nncore.get_num_threads() == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_matmul_is_bit_identical_for_any_thread_count(dtype, restore_threads):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((300, 500)).astype(dtype)
    b = rng.standard_normal((500, 400)).astype(dtype)
    results = {}
    for threads in (1, 2, 3):
        nncore.set_num_threads(threads)
        results[threads] = ops.matmul(a, b)
        results[(threads, "tt")] = ops.matmul(b, a, transpose_a=True, transpose_b=True)
    assert np.array_equal(results[1], results[2]) and np.array_equal(results[1], results[3])
    assert np.array_equal(results[(1, "tt")], results[(2, "tt")])
    error = np.linalg.norm(results[1] - a.astype(np.float64) @ b) / np.linalg.norm(
        a.astype(np.float64) @ b
    )
    assert error < (1e-5 if dtype == np.float32 else 1e-12)


def test_dense_training_step_is_bit_identical_for_any_thread_count(restore_threads):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((256, 300)).astype(np.float32)
    g = rng.standard_normal((256, 200)).astype(np.float32)
    weights = rng.standard_normal((200, 300)).astype(np.float32)
    outcomes = []
    for threads in (1, 2):
        nncore.set_num_threads(threads)
        layer = nncore.Dense(300, 200)
        layer.weights[:] = weights
        y = layer.forward(x)
        dx = layer.backward(g, 0.01)
        outcomes.append((y, dx, layer.weights_gradient, layer.bias_gradient, layer.weights))
    for single, double in zip(*outcomes):
        assert np.array_equal(single, double)
