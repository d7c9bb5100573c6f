"""Property tests for the training API: random shapes, dtypes and values thrown at the loss objects,
the native loss bindings and the optimizers. The only acceptable outcomes are a finite, correctly
shaped result (for valid finite input) or ValueError/TypeError; anything else fails."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from nncore import _core, losses, optim

dtypes = st.one_of(
    st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)]),
    hnp.scalar_dtypes(),
)
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LOSS_NAMES = ["mse", "mae", "bce", "binary_cross_entropy_logits", "cross_entropy"]


@SETTINGS
@given(name=st.sampled_from(LOSS_NAMES), data=st.data())
def test_losses_never_crash(name, data):
    true_dtype, pred_dtype = data.draw(dtypes), data.draw(dtypes)
    y_true = data.draw(hnp.arrays(true_dtype, data.draw(shapes)))
    y_pred = data.draw(hnp.arrays(pred_dtype, data.draw(shapes)))
    loss = losses.get(name)
    try:
        value, gradient = loss.value_and_gradient(y_true, y_pred)
    except (ValueError, TypeError):
        return
    assert isinstance(value, float)
    assert gradient.shape == np.shape(y_pred)


@SETTINGS
@given(
    rows=st.integers(1, 6),
    cols=st.integers(1, 9),
    dtype=st.sampled_from([np.float32, np.float64]),
    labels=st.booleans(),
    data=st.data(),
)
def test_softmax_cross_entropy_finite_for_finite_logits(rows, cols, dtype, labels, data):
    logits = data.draw(hnp.arrays(dtype, (rows, cols), elements=st.floats(-1e4, 1e4, width=32)))
    if labels:
        target = data.draw(hnp.arrays(np.int64, rows, elements=st.integers(-2, cols + 1)))
        if np.any((target < 0) | (target >= cols)):
            with pytest.raises(ValueError, match="out of range"):
                _core.softmax_cross_entropy(logits, target, 1.0)
            return
    else:
        target = data.draw(hnp.arrays(dtype, (rows, cols), elements=st.floats(0, 1, width=32)))
    value, gradient = _core.softmax_cross_entropy(logits, target, 1.0)
    assert np.isfinite(value) and value >= -1e-3 * (1 + abs(value))
    assert np.all(np.isfinite(gradient))


@SETTINGS
@given(
    name=st.sampled_from(["sgd", "adam", "adamw", "rmsprop"]),
    shape=shapes,
    dtype=st.sampled_from([np.float32, np.float64]),
    grad_dtype=dtypes,
    data=st.data(),
)
def test_optimizers_never_crash(name, shape, dtype, grad_dtype, data):
    param = data.draw(hnp.arrays(dtype, shape, elements=st.floats(-10, 10, width=32)))
    grad = data.draw(hnp.arrays(grad_dtype, data.draw(st.sampled_from([shape, (3,), ()]))))
    opt = optim.get(name)
    try:
        opt.step([(param, grad)])
    except (ValueError, TypeError):
        return
    assert param.shape == shape
