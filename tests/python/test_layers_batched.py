"""Dropout and Flatten: behaviour in training and inference, gradients and bad input."""

from __future__ import annotations

import nncore
import numpy as np
import pytest
from nncore import Dropout, Flatten


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_zeroes_about_p_and_keeps_the_mean(dtype):
    nncore.seed(0)
    layer = Dropout(0.3)
    x = np.ones((400, 500), dtype=dtype)
    y = layer.forward(x)
    assert y.dtype == dtype
    zeroed = np.mean(y == 0)
    assert abs(zeroed - 0.3) < 0.01  # 200000 draws: the standard deviation is about 0.001
    np.testing.assert_allclose(y[y != 0], 1 / 0.7, rtol=1e-6)
    assert abs(y.mean() - 1.0) < 0.01


def test_dropout_backward_uses_the_forward_mask():
    nncore.seed(1)
    layer = Dropout(0.5)
    x = np.random.default_rng(0).normal(size=(6, 7))
    y = layer.forward(x)
    g = np.random.default_rng(1).normal(size=(6, 7))
    dx = layer.backward(g)
    # y is linear in x with the mask fixed, so dL/dx for L = sum(g * y) is exactly y/x * g.
    np.testing.assert_allclose(dx, g * (y / x), rtol=1e-12)
    assert np.array_equal(dx == 0, y == 0)


def test_dropout_is_the_identity_outside_training_and_for_p_zero():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    layer = Dropout(0.9)
    layer.training = False
    np.testing.assert_array_equal(layer.forward(x), x)
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), np.ones_like(x))
    np.testing.assert_array_equal(Dropout(0.0).forward(x), x)


def test_dropout_masks_follow_the_seed():
    x = np.ones((5, 50), dtype=np.float32)
    nncore.seed(7)
    first = Dropout(0.5).forward(x)
    nncore.seed(7)
    second = Dropout(0.5).forward(x)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, Dropout(0.5).forward(x))


@pytest.mark.parametrize("p, error", [(1.0, ValueError), (-0.1, ValueError), (float("nan"), ValueError), ("0.5", TypeError), (True, TypeError)])
def test_dropout_rejects_bad_p(p, error):
    with pytest.raises(error, match="p"):
        Dropout(p)


def test_dropout_rejects_bad_input():
    layer = Dropout(0.5)
    with pytest.raises(ValueError, match="empty"):
        layer.forward(np.zeros((0, 3)))
    with pytest.raises(TypeError, match="complex"):
        layer.forward(np.zeros((2, 3), dtype=complex))
    layer.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        layer.backward(np.ones((3, 2)))


def test_flatten_keeps_the_batch_axis_and_restores_the_shape():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    layer = Flatten()
    y = layer.forward(x)
    assert y.shape == (2, 60)
    np.testing.assert_array_equal(y[1], x[1].ravel())
    g = np.random.default_rng(0).normal(size=(2, 60))
    np.testing.assert_array_equal(layer.backward(g), g.reshape(x.shape))


def test_flatten_rejects_bad_input():
    layer = Flatten()
    with pytest.raises(ValueError, match=r"at least 2 dimensions, got \(5,\)"):
        layer.forward(np.zeros(5))
    layer.forward(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"\(2, 12\)"):
        layer.backward(np.zeros((2, 3, 4)))


def test_flatten_feeds_dense_in_a_trained_network():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 2, 3)).astype(np.float32)
    y = (x.sum(axis=(1, 2)) > 0).astype(np.int64)
    nncore.seed(0)
    model = nncore.Sequential([Flatten(), nncore.Dense(6, 2)])
    history = model.fit(x, y, epochs=20, batch_size=16, loss="cross_entropy", optimizer=nncore.optim.Adam(0.05), verbose=0)
    assert history.history["accuracy"][-1] > 0.9


@pytest.mark.parametrize("make, shape", [
    (lambda: nncore.Dense(7, 5, dtype=np.float64), (4, 7)),
    (lambda: nncore.Conv2D(2, 3, 3, padding=1, dtype=np.float64), (3, 2, 6, 5)),
])
def test_backward_without_input_gradient_fills_the_same_parameter_gradients(make, shape):
    nncore.seed(3)
    layer = make()
    x = np.random.default_rng(0).standard_normal(shape)
    y = layer.forward(x)
    g = np.random.default_rng(1).standard_normal(y.shape)
    full = layer.backward(g)
    expected = [grad.copy() for _, grad in layer.parameters()]
    for _, grad in layer.parameters():
        grad[...] = np.nan
    assert layer.backward(g, need_input_gradient=False) is None
    for (_, grad), want in zip(layer.parameters(), expected):
        np.testing.assert_array_equal(grad, want)
    assert full.shape == x.shape


class _Scale(nncore.Layer):
    """A user's layer without the private skip protocol."""

    def forward(self, input):
        return 2.0 * input

    def backward(self, output_gradient, learning_rate=None):
        return 2.0 * output_gradient


def test_sequential_backward_skips_the_first_input_gradient_only_where_supported():
    x = np.random.default_rng(0).standard_normal((3, 4))
    model = nncore.Sequential([nncore.Dense(4, 2, dtype=np.float64), nncore.Tanh()])
    model.forward(x)
    g = np.ones((3, 2))
    assert model.backward(g).shape == (3, 4)
    assert model.backward(g, input_gradient=False) is None
    user_first = nncore.Sequential([_Scale(), nncore.Dense(4, 2, dtype=np.float64)])
    user_first.forward(x)
    np.testing.assert_array_equal(user_first.backward(g, input_gradient=False), user_first.backward(g))
