"""Property tests: random shapes, dtypes, layouts and values thrown at nncore.ops and Dense.

The only acceptable outcomes are a correct result or ValueError/TypeError; anything else (another
exception type, a crash of the interpreter, a wrong answer) fails.
"""

from __future__ import annotations

import nncore
import numpy as np
from conftest import (
    assert_close_to_reference,
    assert_gemm_close,
    ref_exp,
    ref_leaky_relu,
    ref_relu,
    ref_sigmoid,
    ref_softmax,
    ref_tanh,
)
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from nncore import ops

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

dtypes = st.one_of(
    st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)]),  # the valid ones, often
    hnp.scalar_dtypes(),  # bool, ints, floats (incl. float16), complex, datetime, timedelta
    hnp.unicode_string_dtypes(max_len=2),
    hnp.byte_string_dtypes(max_len=2),
)
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6)

# Views that change the memory layout (the values stay the same).
LAYOUTS = {
    "as_is": lambda a: a,
    "reversed": lambda a: a[::-1] if a.ndim else a,
    "transposed": lambda a: a.T,
    "every_other": lambda a: a[..., ::2] if a.ndim else a,
    "fortran": np.asfortranarray,
}

SETTINGS = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def any_array(draw, shape=shapes, dtype=dtypes):
    array = draw(hnp.arrays(dtype=dtype, shape=shape))
    return LAYOUTS[draw(st.sampled_from(sorted(LAYOUTS)))](array)


def _is_float(x) -> bool:
    return isinstance(x, np.ndarray) and x.dtype in FLOATS


UNARY = {
    "tanh": (ops.tanh, ref_tanh),
    "sigmoid": (ops.sigmoid, ref_sigmoid),
    "relu": (ops.relu, ref_relu),
    "leaky_relu": (lambda x: ops.leaky_relu(x, 0.1), lambda x: ref_leaky_relu(x, 0.1)),
    "exp": (ops.exp, ref_exp),
    "softmax": (ops.softmax, ref_softmax),
}


@SETTINGS
@given(name=st.sampled_from(sorted(UNARY)), x=any_array())
def test_unary_ops_return_a_correct_result_or_raise_cleanly(name, x):
    op, ref = UNARY[name]
    try:
        got = op(x)
    except (ValueError, TypeError):
        event("refused")
        if _is_float(x):
            assert name == "softmax" and x.ndim == 0, (
                f"{name} refused a valid {x.dtype} array of shape {x.shape}"
            )
        return
    event("computed")
    assert _is_float(x), f"{name} accepted dtype {x.dtype}"
    assert got.shape == x.shape
    with np.errstate(all="ignore"):
        expected = ref(x)
    assert_close_to_reference(got, expected, x.dtype, rtol_scale=4 if name == "softmax" else 1)


@st.composite
def matmul_operands(draw):
    """Either two unrelated arrays, or (more often) float operands whose shapes fit."""
    if draw(st.booleans()):
        matrices = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=9)
        return (
            draw(any_array(matrices)),
            draw(any_array(matrices)),
            draw(st.booleans()),
            draw(st.booleans()),
        )
    dtype = draw(st.sampled_from(FLOATS))
    m, k, n = (draw(st.integers(0, 20)) for _ in range(3))
    transpose_a, transpose_b = draw(st.booleans()), draw(st.booleans())
    a = draw(hnp.arrays(dtype, (k, m) if transpose_a else (m, k)))
    b = draw(hnp.arrays(dtype, (n, k) if transpose_b else (k, n)))
    layout = st.sampled_from(["as_is", "fortran", "transposed_copy"])
    views = {
        "as_is": lambda x: x,
        "fortran": np.asfortranarray,
        "transposed_copy": lambda x: np.ascontiguousarray(x.T).T,
    }
    return views[draw(layout)](a), views[draw(layout)](b), transpose_a, transpose_b


@SETTINGS
@given(operands=matmul_operands())
def test_matmul_returns_a_correct_result_or_raises_cleanly(operands):
    a, b, transpose_a, transpose_b = operands
    try:
        got = ops.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b)
    except (ValueError, TypeError):
        event("refused")
        return
    event("computed")
    assert _is_float(a) and a.dtype == b.dtype and a.ndim == b.ndim == 2
    op_a, op_b = (a.T if transpose_a else a), (b.T if transpose_b else b)
    assert op_a.shape[1] == op_b.shape[0]
    assert got.shape == (op_a.shape[0], op_b.shape[1]) and got.dtype == a.dtype
    # compare values where the reference is well defined (finite inputs of moderate size)
    limit = 1e4 if a.dtype == np.float32 else 1e30
    if (
        np.isfinite(a).all()
        and np.isfinite(b).all()
        and max(np.abs(a).max(initial=0), np.abs(b).max(initial=0)) < limit
    ):
        assert_gemm_close(got, op_a.astype(np.float64) @ op_b.astype(np.float64), a.dtype)


@SETTINGS
@given(
    x=any_array(
        st.one_of(
            hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=5),
            hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
        ),
        st.one_of(
            st.sampled_from(
                [np.dtype(t) for t in (np.float32, np.float64, np.int64, np.uint8, bool)]
            ),
            dtypes,
        ),
    ),
    data=st.data(),
    output_size=st.integers(1, 4),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_dense_forward_returns_a_correct_result_or_raises_cleanly(x, data, output_size, dtype):
    # often a size the input could fit (its last or second-to-last axis), sometimes any size
    fitting = [d for d in x.shape[-2:] if d > 0]
    input_size = data.draw(
        st.sampled_from(fitting) if fitting else st.integers(1, 5), label="input_size"
    )
    if dtype == np.float32 and x.dtype.kind == "f" and x.size:
        # float64 values beyond the float32 range: see test_bad_input.py (numpy's cast warning leaks)
        assume(not (np.abs(x.astype(np.float64)) > np.finfo(np.float32).max).any())
    layer = nncore.Dense(input_size, output_size, dtype=dtype)
    layer.bias[:] = np.arange(output_size) / 4
    try:
        got = layer.forward(x)
    except (ValueError, TypeError):
        event("refused")
        return
    event("computed")
    assert x.dtype.kind in "fiub", f"accepted dtype {x.dtype}"
    assert x.size > 0
    assert got.dtype == dtype
    rows = np.asarray(x, dtype=np.float64).reshape(-1, input_size)
    with np.errstate(all="ignore"):
        expected = rows @ layer.weights.astype(np.float64).T + layer.bias
        expected_in_dtype = expected.astype(dtype)
    assert got.size == expected.size
    finite = (
        np.isfinite(np.asarray(x, dtype=np.float64)).all() and np.isfinite(expected_in_dtype).all()
    )
    if finite and np.abs(rows).max() < (1e4 if dtype == np.float32 else 1e100):
        np.testing.assert_allclose(
            got.reshape(expected.shape),
            expected,
            rtol=1e-5 if dtype == np.float32 else 1e-12,
            atol=(1e-5 if dtype == np.float32 else 1e-12) * max(1.0, np.abs(rows).max()),
        )
