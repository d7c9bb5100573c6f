"""nncore.ops against float64 numpy references: shapes, layouts, out=, bad input, special values."""

from __future__ import annotations

import nncore
import numpy as np
import pytest
from conftest import (
    DTYPES,
    assert_close_to_reference,
    assert_gemm_close,
    random_array,
    ref_exp,
    ref_leaky_relu,
    ref_matmul,
    ref_relu,
    ref_sigmoid,
    ref_softmax,
    ref_tanh,
    run_python,
)
from nncore import ops


def _leaky(x, out=None):
    return ops.leaky_relu(x, 0.2, out=out)


def _leaky_ref(x):
    return ref_leaky_relu(x, 0.2)


# name, nncore op (x, out=None), float64 reference
ELEMENTWISE = [
    ("tanh", ops.tanh, ref_tanh),
    ("sigmoid", ops.sigmoid, ref_sigmoid),
    ("relu", ops.relu, ref_relu),
    ("leaky_relu", _leaky, _leaky_ref),
    ("exp", ops.exp, ref_exp),
]
ELEMENTWISE_IDS = [name for name, _, _ in ELEMENTWISE]
# Every unary op, softmax included, for the checks that do not depend on the function.
UNARY = ELEMENTWISE + [("softmax", ops.softmax, ref_softmax)]
UNARY_IDS = [name for name, _, _ in UNARY]

SHAPES = [
    (1,),
    (2,),
    (7,),
    (13,),
    (127,),
    (1000,),
    (1, 1),
    (3, 13),
    (31, 61),
    (2, 3, 5),
    (0,),
    (4, 0),
]


def _strided_views(base: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "reversed": base[::-1],
        "every_other_column": base[:, ::2],
        "transposed": base.T,
        "negative_both": base[::-2, ::-3],
        "offset_step": base[1::3, 2::2],
    }


# ----------------------------------------------------------------------------------------------
# Elementwise ops


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize(("name", "op", "ref"), ELEMENTWISE, ids=ELEMENTWISE_IDS)
def test_elementwise_matches_reference(name, op, ref, shape, dtype, rng):
    x = random_array(rng, shape, dtype, -6, 6)
    got = op(x)
    assert got.shape == x.shape
    assert_close_to_reference(got, ref(x), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("name", "op", "ref"), ELEMENTWISE, ids=ELEMENTWISE_IDS)
def test_elementwise_of_zero_dimensional_array(name, op, ref, dtype):
    x = np.array(0.75, dtype=dtype)
    got = op(x)
    assert got.shape == ()
    assert_close_to_reference(got, ref(x), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("name", "op", "ref"), UNARY, ids=UNARY_IDS)
def test_unary_reads_strided_views(name, op, ref, dtype, rng):
    base = random_array(rng, (17, 23), dtype)
    original = base.copy()
    for label, view in _strided_views(base).items():
        got = op(view)
        assert got.shape == view.shape, label
        assert_close_to_reference(got, ref(view), dtype)
    assert np.array_equal(base, original)  # inputs are never modified


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("name", "op", "ref"), UNARY, ids=UNARY_IDS)
def test_unary_out_is_written_and_returned(name, op, ref, dtype, rng):
    x = random_array(rng, (5, 37), dtype)
    out = np.full_like(x, np.nan)  # poisoned: an unwritten element fails
    result = op(x, out=out)
    assert result is out
    assert_close_to_reference(out, ref(x), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("name", "op", "ref"), UNARY, ids=UNARY_IDS)
def test_unary_in_place(name, op, ref, dtype, rng):
    x = random_array(rng, (6, 29), dtype)
    expected = ref(x)
    assert op(x, out=x) is x
    assert_close_to_reference(x, expected, dtype)


@pytest.mark.parametrize(("name", "op", "ref"), UNARY, ids=UNARY_IDS)
def test_unary_out_partially_overlapping_input_is_correct_or_refused(name, op, ref, rng):
    # out is the input shifted by one row: a kernel that streams through memory would overwrite
    # rows it has not read yet. numpy buffers such calls; nncore must either do the same or refuse.
    buffer = random_array(rng, (9, 16), np.float64)
    x, out = buffer[:-1], buffer[1:]
    expected = ref(x.copy())
    try:
        result = op(x, out=out)
    except ValueError as error:
        assert "share memory" in str(error) or "overlap" in str(error)
    else:
        assert result is out
        assert_close_to_reference(result, expected, np.float64)


@pytest.mark.parametrize(("name", "op", "ref"), UNARY, ids=UNARY_IDS)
def test_unary_out_errors(name, op, ref):
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    with pytest.raises(ValueError, match=r"out must have shape \(3, 4\), got \(4, 3\)"):
        op(x, out=np.empty((4, 3)))
    with pytest.raises(ValueError, match=r"out must have shape \(3, 4\), got \(12,\)"):
        op(x, out=np.empty(12))
    with pytest.raises(TypeError, match="out must have dtype float64, got float32"):
        op(x, out=np.empty((3, 4), dtype=np.float32))
    with pytest.raises(TypeError, match="out must have dtype float32, got float64"):
        op(x.astype(np.float32), out=np.empty((3, 4)))
    with pytest.raises(TypeError, match="out must have dtype float64, got int64"):
        op(x, out=np.empty((3, 4), dtype=np.int64))
    read_only = np.empty((3, 4))
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        op(x, out=read_only)
    with pytest.raises(ValueError, match="C-contiguous"):
        op(x, out=np.empty((4, 3)).T)
    with pytest.raises(ValueError, match="C-contiguous"):
        op(x, out=np.empty((3, 8))[:, ::2])
    with pytest.raises(TypeError, match="out must be a numpy array, got <class 'list'>"):
        op(x, out=[[0.0] * 4] * 3)


BAD_DTYPE_INPUTS = {
    "int64": np.arange(6).reshape(2, 3),
    "int32": np.arange(6, dtype=np.int32).reshape(2, 3),
    "bool": np.ones((2, 3), dtype=bool),
    "float16": np.ones((2, 3), dtype=np.float16),
    "complex": np.ones((2, 3), dtype=np.complex128),
    "object": np.array([[1.0, None, 2.0], [1.0, 2.0, 3.0]], dtype=object),
    "str": np.array([["a", "b", "c"], ["d", "e", "f"]]),
}


@pytest.mark.parametrize("kind", BAD_DTYPE_INPUTS, ids=str)
@pytest.mark.parametrize(("name", "op", "ref"), UNARY, ids=UNARY_IDS)
def test_unary_rejects_non_float_dtypes(name, op, ref, kind):
    x = BAD_DTYPE_INPUTS[kind]
    with pytest.raises(TypeError, match=rf"dtype float32 or float64, got {x.dtype}"):
        op(x)


def test_plain_python_sequences_are_accepted_as_float64():
    assert_close_to_reference(ops.tanh([[0.5, -1.0]]), ref_tanh([[0.5, -1.0]]), np.float64)
    assert_close_to_reference(
        ops.softmax([1.0, 2.0, 3.0]), ref_softmax([1.0, 2.0, 3.0]), np.float64
    )


# ----------------------------------------------------------------------------------------------
# Accuracy over the whole range (the documented ulp bounds)


def _ulp_errors(got: np.ndarray, expected64: np.ndarray, dtype) -> np.ndarray:
    """|got - expected| in units of the last place of the correctly rounded expected value
    (for subnormal results the unit is the smallest subnormal)."""
    rounded = expected64.astype(dtype)
    spacing = np.maximum(np.spacing(np.abs(rounded)), np.finfo(dtype).smallest_subnormal)
    return np.abs(got.astype(np.float64) - expected64) / spacing.astype(np.float64)


# The whole finite range of each op, down to results (and inputs) in the subnormal range; the
# max ulp are those in the docstrings of nncore.ops.
ULP_CASES = {
    ("tanh", np.float32): (ops.tanh, ref_tanh, -20.0, 20.0, 4),
    ("tanh", np.float64): (ops.tanh, ref_tanh, -40.0, 40.0, 4),
    ("sigmoid", np.float32): (ops.sigmoid, ref_sigmoid, -103.0, 30.0, 4),
    ("sigmoid", np.float64): (ops.sigmoid, ref_sigmoid, -744.0, 40.0, 4),
    ("exp", np.float32): (ops.exp, ref_exp, -103.0, 88.72, 2),
    ("exp", np.float64): (ops.exp, ref_exp, -744.0, 709.78, 2),
}


@pytest.mark.parametrize(("name", "dtype"), ULP_CASES, ids=lambda v: getattr(v, "__name__", v))
def test_max_ulp_error_over_the_range(name, dtype):
    op, ref, low, high, max_ulp = ULP_CASES[(name, dtype)]
    rng = np.random.default_rng(7)
    # 1e6 values: uniform over the range, plus magnitudes from subnormal to 1 on both sides of 0
    small = np.geomspace(np.finfo(dtype).smallest_subnormal, 1.0, 50_000).astype(dtype)
    x = np.concatenate(
        [rng.uniform(low, high, 900_000).astype(dtype), small, -small, [0.0, -0.0]]
    ).astype(dtype)
    got = op(x)
    errors = _ulp_errors(got, ref(x), dtype)
    worst = int(np.argmax(errors))
    assert errors[worst] <= max_ulp, (
        f"{name}({x[worst]!r}) = {got[worst]!r} is off by {errors[worst]:.2f} ulp"
    )


# ----------------------------------------------------------------------------------------------
# Special values


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values(dtype):
    big = np.finfo(dtype).max
    x = np.array([np.inf, -np.inf, np.nan, big, -big, 1e4, -1e4, 0.0, -0.0], dtype=dtype)
    nan = np.nan
    assert_close_to_reference(ops.tanh(x), [1, -1, nan, 1, -1, 1, -1, 0, 0], dtype)
    assert_close_to_reference(ops.sigmoid(x), [1, 0, nan, 1, 0, 1, 0, 0.5, 0.5], dtype)
    assert_close_to_reference(ops.exp(x), [np.inf, 0, nan, np.inf, 0, np.inf, 0, 1, 1], dtype)
    assert_close_to_reference(ops.relu(x), [np.inf, 0, nan, big, 0, 1e4, 0, 0, 0], dtype)
    slope = 0.5
    assert_close_to_reference(
        ops.leaky_relu(x, slope), [np.inf, -np.inf, nan, big, -big * slope, 1e4, -5e3, 0, 0], dtype
    )
    # tanh keeps the sign of zero
    assert np.signbit(ops.tanh(np.array([-0.0], dtype=dtype)))[0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_tanh_and_sigmoid_saturate_without_nan(dtype):
    x = np.linspace(-1e6, 1e6, 10_001).astype(dtype)
    t, s = ops.tanh(x), ops.sigmoid(x)
    assert np.isfinite(t).all() and np.isfinite(s).all()
    assert np.all(np.abs(t) <= 1) and np.all((s >= 0) & (s <= 1))
    assert np.all(np.diff(t) >= 0) and np.all(np.diff(s) >= 0)  # monotone


# tanh near the cut-over points of its reduction, on every ISA. vtanh writes -2|x| log2(e) = n + f
# with n = round(.), so n changes at |x| = (k + 1/2) ln(2) / 2; |x| is clamped at 9.1 (float) or
# 19.1 (double), and tanh rounds to +-1 from 9.0109 (float) / 19.0615 (double) on. Each ISA runs
# in its own interpreter (NNCORE_ISA is read once, at import).
TANH_CUTOVER_SCRIPT = """
import numpy as np
import nncore
from nncore import ops
assert nncore.cpu_info()["isa"] == {isa!r}, nncore.cpu_info()
for dtype, top, clamp, saturates in ((np.float32, 26, 9.1, 9.01091289520263671875),
                                     (np.float64, 55, 19.1, 19.061547465398498)):
    dtype = np.dtype(dtype)
    int_type = np.int32 if dtype.itemsize == 4 else np.int64
    centres = [(k + 0.5) * np.log(2.0) / 2 for k in range(top + 1)] + [clamp, saturates, 1.0, 0.5, 0.25]
    steps = np.arange(-40, 41, dtype=int_type)
    x = np.concatenate([(np.array([c], dtype).view(int_type) + steps).view(dtype) for c in centres])
    x = np.concatenate([x, -x])
    np.save({out!r} + "_" + dtype.name + ".npy", np.stack([x, ops.tanh(x)]))
"""


def _ulp_errors_long(got: np.ndarray, x: np.ndarray) -> np.ndarray:
    """|got - tanh(x)| in ulp of the correctly rounded result, tanh in long double."""
    exact = np.tanh(x.astype(np.longdouble))
    rounded = exact.astype(x.dtype)
    spacing = np.maximum(np.spacing(np.abs(rounded)), np.finfo(x.dtype).smallest_subnormal)
    return np.abs(got.astype(np.longdouble) - exact) / spacing.astype(np.longdouble)


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512"])
def test_tanh_at_its_cut_over_points_on_every_isa(isa, tmp_path):
    if isa not in nncore.cpu_info()["available_isas"]:
        pytest.skip(f"{isa} is not available on this CPU")
    process = run_python(TANH_CUTOVER_SCRIPT.format(isa=isa, out=str(tmp_path / "tanh")), {"NNCORE_ISA": isa})
    assert process.returncode == 0, process.stderr
    for dtype in (np.float32, np.float64):
        x, got = np.load(tmp_path / f"tanh_{np.dtype(dtype).name}.npy")
        errors = _ulp_errors_long(got, x)
        worst = int(np.argmax(errors))
        assert errors[worst] <= 4, f"{isa}: tanh({x[worst]!r}) = {got[worst]!r} is off by {errors[worst]:.2f} ulp"
        assert np.all(np.abs(got) <= 1) and np.array_equal(np.sign(got), np.sign(x))


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512"])
def test_tanh_special_values_on_every_isa(isa):
    if isa not in nncore.cpu_info()["available_isas"]:
        pytest.skip(f"{isa} is not available on this CPU")
    code = """
import numpy as np
from nncore import ops
for dtype in (np.float32, np.float64):
    info = np.finfo(dtype)
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, info.smallest_subnormal, -info.smallest_subnormal,
                  info.tiny, -info.tiny, info.max, -info.max], dtype)
    y = ops.tanh(x)
    assert np.signbit(y[0]) == False and y[0] == 0 and np.signbit(y[1]) and y[1] == 0, y
    assert y[2] == 1 and y[3] == -1 and np.isnan(y[4]), y
    assert np.array_equal(y[5:9], x[5:9]), y  # tanh(x) rounds to x for tiny x
    assert y[9] == 1 and y[10] == -1, y
print("ok")
"""
    process = run_python(code, {"NNCORE_ISA": isa})
    assert process.returncode == 0 and "ok" in process.stdout, process.stderr


# ----------------------------------------------------------------------------------------------
# Softmax


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape", [(1,), (2,), (7,), (1, 1), (5, 1), (3, 2), (4, 17), (13, 61), (2, 3, 31)], ids=str
)
def test_softmax_matches_reference_and_rows_sum_to_one(shape, dtype, rng):
    x = random_array(rng, shape, dtype, -10, 10)
    got = ops.softmax(x)
    assert_close_to_reference(got, ref_softmax(x), dtype, rtol_scale=4)
    np.testing.assert_allclose(got.sum(axis=-1), 1.0, rtol=10 * np.finfo(dtype).eps * shape[-1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_rows_of_one_element_are_one(dtype):
    x = np.array([[-1e4], [0.0], [3.5], [1e4]], dtype=dtype)
    assert np.array_equal(ops.softmax(x), np.ones_like(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_huge_logits_stay_finite(dtype):
    x = np.array(
        [[1e4, 0.0, -1e4], [1e4, 1e4, 1e4], [-1e4, -1e4 + 1, -1e4], [3e4, 2e4, 1e4]], dtype=dtype
    )
    got = ops.softmax(x)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got.sum(axis=-1), 1.0, rtol=1e-6)
    assert_close_to_reference(got, ref_softmax(x), dtype, rtol_scale=4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_of_empty_and_minus_infinity(dtype):
    assert ops.softmax(np.zeros((3, 0), dtype=dtype)).shape == (3, 0)
    assert ops.softmax(np.zeros((0, 4), dtype=dtype)).shape == (0, 4)
    got = ops.softmax(np.array([[0.0, -np.inf, 0.0]], dtype=dtype))
    assert_close_to_reference(got, [[0.5, 0.0, 0.5]], dtype)


def test_softmax_rejects_a_scalar():
    with pytest.raises(ValueError, match="at least 1 dimension"):
        ops.softmax(np.array(1.0))


# ----------------------------------------------------------------------------------------------
# matmul

# (m, k, n): 1s, 2s, primes, around the register tiles (12 x 32 float32, 12 x 16 float64),
# tall-skinny, short-fat, and sizes past the cache blocks.
MATMUL_SHAPES = [
    (1, 1, 1),
    (2, 2, 2),
    (1, 7, 1),
    (3, 5, 7),
    (11, 13, 15),
    (12, 16, 32),
    (13, 17, 33),
    (7, 31, 61),
    (61, 127, 13),
    (127, 3, 2),
    (2, 3, 127),
    (1, 300, 1),
    (300, 1, 300),
    (97, 601, 41),
    (257, 129, 65),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("transpose_b", [False, True], ids=["b", "bT"])
@pytest.mark.parametrize("transpose_a", [False, True], ids=["a", "aT"])
@pytest.mark.parametrize(("m", "k", "n"), MATMUL_SHAPES, ids=lambda v: str(v))
def test_matmul_matches_reference(m, k, n, transpose_a, transpose_b, dtype, rng):
    a = random_array(rng, (k, m) if transpose_a else (m, k), dtype)
    b = random_array(rng, (n, k) if transpose_b else (k, n), dtype)
    got = ops.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b)
    assert got.shape == (m, n)
    assert_gemm_close(got, ref_matmul(a, b, transpose_a, transpose_b), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("m", "k", "n"), [(0, 3, 4), (3, 4, 0), (0, 0, 0), (0, 5, 0)], ids=str)
def test_matmul_with_an_empty_result(m, k, n, dtype):
    got = ops.matmul(np.ones((m, k), dtype), np.ones((k, n), dtype))
    assert got.shape == (m, n) and got.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("m", "n"), [(1, 1), (3, 4), (40, 70)], ids=str)
def test_matmul_with_k_zero_gives_zeros(m, n, dtype):
    got = ops.matmul(np.ones((m, 0), dtype), np.ones((0, n), dtype))
    assert np.array_equal(got, np.zeros((m, n), dtype))
    out = np.full((m, n), np.nan, dtype)  # poisoned out must be overwritten with zeros
    assert ops.matmul(np.ones((m, 0), dtype), np.ones((0, n), dtype), out=out) is out
    assert np.array_equal(out, np.zeros((m, n), dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_reads_strided_views(dtype, rng):
    base_a = random_array(rng, (40, 50), dtype)
    base_b = random_array(rng, (50, 44), dtype)
    views_a = {
        "reversed": base_a[::-1][:, :25],
        "every_other_column": base_a[:, ::2],
        "transposed": base_a.T[:25],
        "negative_both": base_a[::-2, ::-2],
        "offset": base_a[3:33, 1::2],
    }
    for a in views_a.values():
        k = a.shape[1]
        for b in (base_b[:k], base_b[::-1][:k], base_b[:k, ::-3], base_b.T[:, :k].T[:, ::2]):
            got = ops.matmul(a, b)
            assert_gemm_close(got, ref_matmul(a, b), dtype)
            got_t = ops.matmul(b, a, transpose_a=True, transpose_b=True)
            assert_gemm_close(got_t, ref_matmul(b, a, True, True), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_of_broadcast_stride_zero_inputs(dtype):
    a = np.broadcast_to(np.arange(1, 6, dtype=dtype), (7, 5))  # stride 0 along rows, read-only
    b = np.broadcast_to(np.arange(3, dtype=dtype)[None, :], (5, 3))
    assert_gemm_close(ops.matmul(a, b), ref_matmul(a, b), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_out_is_written_and_returned(dtype, rng):
    a, b = random_array(rng, (19, 23), dtype), random_array(rng, (23, 37), dtype)
    out = np.full((19, 37), np.nan, dtype)
    assert ops.matmul(a, b, out=out) is out
    assert_gemm_close(out, ref_matmul(a, b), dtype)
    # out is overwritten, never accumulated into
    out[:] = 1e6
    ops.matmul(a, b, out=out)
    assert_gemm_close(out, ref_matmul(a, b), dtype)


def test_matmul_out_errors():
    a, b = np.ones((3, 4)), np.ones((4, 5))
    with pytest.raises(ValueError, match=r"out must have shape \(3, 5\), got \(5, 3\)"):
        ops.matmul(a, b, out=np.empty((5, 3)))
    with pytest.raises(TypeError, match="out must have dtype float64, got float32"):
        ops.matmul(a, b, out=np.empty((3, 5), np.float32))
    read_only = np.empty((3, 5))
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        ops.matmul(a, b, out=read_only)
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.matmul(a, b, out=np.empty((5, 3)).T)
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.matmul(a, b, out=np.empty((3, 10))[:, ::2])


def test_matmul_out_overlapping_an_input_is_refused(rng):
    a, b = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
    a_before, b_before = a.copy(), b.copy()
    with pytest.raises(ValueError, match="share memory"):
        ops.matmul(a, b, out=a)
    with pytest.raises(ValueError, match="share memory"):
        ops.matmul(a, b, out=b)
    buffer = rng.standard_normal(32)
    with pytest.raises(ValueError, match="share memory"):  # overlapping, not identical
        ops.matmul(buffer[:16].reshape(4, 4), b, out=buffer[8:24].reshape(4, 4))
    strided = buffer[:16].reshape(2, 8)[:, ::2]  # a strided view whose memory out overlaps
    with pytest.raises(ValueError, match="share memory"):
        ops.matmul(strided, np.eye(4), out=buffer[4:12].reshape(2, 4))
    assert np.array_equal(a, a_before) and np.array_equal(b, b_before)


def test_matmul_shape_errors():
    with pytest.raises(
        ValueError, match=r"inner dimensions differ: a has shape \(3, 4\) and b has shape \(5, 6\)"
    ):
        ops.matmul(np.ones((3, 4)), np.ones((5, 6)))
    with pytest.raises(ValueError, match=r"a.T has shape \(4, 3\)"):
        ops.matmul(np.ones((3, 4)), np.ones((4, 6)), transpose_a=True)
    with pytest.raises(ValueError, match=r"expected a with 2 dimensions, got shape \(4,\)"):
        ops.matmul(np.ones(4), np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"expected b with 2 dimensions, got shape \(2, 4, 2\)"):
        ops.matmul(np.ones((3, 4)), np.ones((2, 4, 2)))
    with pytest.raises(ValueError, match=r"expected a with 2 dimensions, got shape \(\)"):
        ops.matmul(np.float64(2.0), np.ones((1, 1)))


@pytest.mark.parametrize("kind", BAD_DTYPE_INPUTS, ids=str)
def test_matmul_rejects_non_float_dtypes(kind):
    bad = BAD_DTYPE_INPUTS[kind]
    good = np.ones((3, 2))
    with pytest.raises(
        TypeError, match=rf"expected a of dtype float32 or float64, got {bad.dtype}"
    ):
        ops.matmul(bad, good)
    with pytest.raises(
        TypeError, match=rf"expected b of dtype float32 or float64, got {bad.dtype}"
    ):
        ops.matmul(good.T, bad)


def test_matmul_rejects_mixed_float_dtypes():
    with pytest.raises(
        TypeError, match="a and b must have the same dtype, got float32 and float64"
    ):
        ops.matmul(np.ones((2, 2), np.float32), np.ones((2, 2), np.float64))
    with pytest.raises(
        TypeError, match="a and b must have the same dtype, got float64 and float32"
    ):
        ops.matmul(np.ones((2, 2), np.float64), np.ones((2, 2), np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_propagates_nan_and_inf(dtype):
    a = np.ones((3, 3), dtype)
    a[1, 1] = np.nan
    a[2, 0] = np.inf
    got = ops.matmul(a, np.ones((3, 2), dtype))
    assert np.isnan(got[1]).all() and np.isposinf(got[2]).all() and np.array_equal(got[0], [3, 3])


def test_large_results_are_independent_writable_arrays_whose_memory_is_recycled():
    # First fill the cache of freed blocks (64 MB) with another size: it must still make room.
    filler = np.ones((512, 512), np.float32)  # 1 MB results
    held = [ops.relu(filler) for _ in range(80)]
    del held
    x = np.random.default_rng(0).standard_normal((300, 400)).astype(np.float32)  # 480 KB results
    a = ops.relu(x)
    b = ops.relu(x)
    assert a.flags.writeable and a.flags.c_contiguous and not np.shares_memory(a, b)
    a[...] = -1.0
    np.testing.assert_array_equal(b, np.maximum(x, 0))
    address = b.ctypes.data
    del b
    c = ops.relu(-x)  # same size: the block just freed is handed out again
    assert c.ctypes.data == address
    np.testing.assert_array_equal(c, np.maximum(-x, 0))
    assert (a == -1.0).all()


# ----------------------------------------------------------------------------------------------
# all_finite (the finiteness check of fit and train, without numpy's boolean temporary)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0,), (1,), (17,), (3, 5), (2, 3, 129), (100003,)], ids=str)
def test_all_finite_matches_numpy(shape, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    if x.size:
        x.flat[0] = np.finfo(dtype).max
        x.flat[-1] = -np.finfo(dtype).tiny / 4  # subnormal
    assert ops.all_finite(x) is True
    for value in (np.nan, np.inf, -np.inf):
        for position in sorted({0, x.size // 2, x.size - 1}) if x.size else []:
            y = x.copy()
            y.flat[position] = value
            assert ops.all_finite(y) is False, (value, position)


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_finite_reads_strided_views_and_scalars(dtype):
    x = np.ones((6, 8), dtype)
    x[1, 1] = np.nan  # outside the view below
    view = x[::2, ::2]
    assert ops.all_finite(view) is True
    assert ops.all_finite(x.T) is False
    assert ops.all_finite(np.array(2.0, dtype)) is True
    assert ops.all_finite(np.array(np.inf, dtype)) is False
    assert ops.all_finite([1.0, 2.0]) is True


@pytest.mark.parametrize("kind", BAD_DTYPE_INPUTS, ids=str)
def test_all_finite_rejects_non_float_dtypes(kind):
    x = BAD_DTYPE_INPUTS[kind]
    with pytest.raises(TypeError, match=rf"dtype float32 or float64, got {x.dtype}"):
        ops.all_finite(x)


def test_arrays_with_an_equal_but_rebuilt_dtype_are_accepted():
    # An unpickled array (multiprocessing, joblib) carries a float32 dtype equal to numpy's own
    # but not the same object; it was refused ("expected float32 or float64, got float32").
    import pickle

    x = pickle.loads(pickle.dumps(np.linspace(-2, 2, 24, dtype=np.float32).reshape(4, 6)))
    w = pickle.loads(pickle.dumps(np.ones((6, 3), np.float64)))
    assert x.dtype == np.float32 and x.dtype is not np.dtype(np.float32)
    assert np.array_equal(nncore.ops.tanh(x), nncore.ops.tanh(np.array(x)))
    assert nncore.ops.all_finite(x)
    out = pickle.loads(pickle.dumps(np.empty((4, 3), np.float32)))
    nncore.ops.matmul(x, w.astype(np.float32), out=out)
    assert np.array_equal(out, nncore.ops.matmul(np.array(x), np.ones((6, 3), np.float32)))
    assert nncore.ops.matmul(w.T, pickle.loads(pickle.dumps(np.ones((6, 2))))).dtype == np.float64
    model = nncore.Sequential([nncore.Dense(6, 3)])
    model.fit(x, np.zeros((4, 3), np.float32), loss="mse", verbose=0)
    with pytest.raises(TypeError, match="float32 or float64"):
        nncore.ops.tanh(x.astype(">f4"))  # a byte order the kernels do not read stays refused


def test_native_outputs_overlapping_a_bias_or_each_other_are_refused():
    # Written while the bias (or the other gradient) is still to be read: silently wrong before.
    core = nncore._core
    rng = np.random.default_rng(0)
    x, w = rng.random((3, 4), dtype=np.float32), rng.random((5, 4), dtype=np.float32)
    buffer = np.zeros(20, np.float32)
    with pytest.raises(ValueError, match="linear: out must not share memory"):
        core.linear(x, w, buffer[7:12], out=buffer[5:20].reshape(3, 5))
    dz = rng.random((3, 5), dtype=np.float32)
    with pytest.raises(ValueError, match="linear_backward: out must not share memory"):
        core.linear_backward(x, w, dz, True, buffer.reshape(5, 4), buffer[:5])
    images, kernels = rng.random((1, 1, 4, 4), dtype=np.float32), rng.random((2, 1, 3, 3), dtype=np.float32)
    plane = np.zeros(10, np.float32)
    with pytest.raises(ValueError, match="out must not share memory"):
        core.conv2d(images, kernels, plane[3:5], out=plane[2:10].reshape(1, 2, 2, 2))
    grads = np.zeros(18, np.float32)
    with pytest.raises(ValueError, match="out must not share memory"):
        core.conv2d_backward(images, kernels, np.ones((1, 2, 2, 2), np.float32), weights_gradient=grads.reshape(2, 1, 3, 3),
                             bias_gradient=grads[4:6])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_an_update_whose_gradient_overlaps_its_state_reads_the_gradient_first(optimizer):
    core = nncore._core
    rng = np.random.default_rng(1)
    memory = rng.random(12)
    param = rng.random(8)
    results = []
    for shared in (True, False):
        state = memory.copy()
        grad = state[4:12] if shared else state[4:12].copy()
        p = param.copy()
        first = state[:8]
        if optimizer == "sgd":
            core.sgd_update(p, grad, first, lr=0.1, momentum=0.9)
        else:
            core.adam_update(p, grad, first, np.zeros(8), 1, 0.1, 0.9, 0.999, 1e-8, 0.0, False)
        results.append(p)
    assert np.array_equal(results[0], results[1])


def test_ops_refuse_flags_and_slopes_of_the_wrong_kind():
    a = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="transpose_b to be a bool, got str"):
        ops.matmul(a, a, transpose_b="no")  # a truthy string used to mean True
    with pytest.raises(TypeError, match="transpose_a to be a bool, got int"):
        ops.matmul(a, a.T, transpose_a=0)
    assert ops.matmul(a, a, transpose_b=np.True_).shape == (2, 2)
    assert ops.matmul(a, a.T, transpose_a=np.False_, transpose_b=False).shape == (2, 2)
    with pytest.raises(TypeError, match="transpose_a to be a bool, got NoneType"):
        ops.matmul(a, a.T, transpose_a=None)
    for slope, error in (("0.1", TypeError), (float("nan"), ValueError), (float("inf"), ValueError), (True, TypeError),
                         (10**400, ValueError)):
        with pytest.raises(error, match="negative_slope"):
            ops.leaky_relu(a, slope)
    assert np.array_equal(ops.leaky_relu(-a, -0.5), 0.5 * a)
