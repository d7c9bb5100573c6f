"""Analytic gradients of every layer and loss against central finite differences (float64)."""

from __future__ import annotations

import nncore
import numpy as np
import pytest
from conftest import assert_gradients_close, numerical_gradient
from nncore import (
    Activation,
    Dense,
    LeakyReLU,
    ReLU,
    Reshape,
    Sigmoid,
    Softmax,
    Tanh,
    binary_cross_entropy,
    binary_cross_entropy_prime,
    mse,
    mse_prime,
)

# Dense accepts rows, classic columns, batches of columns and 1-D vectors; each input shape
# maps to the output shape of a Dense(4 -> 3).
DENSE_LAYOUTS = {
    "rows": ((5, 4), (5, 3)),
    "one_row": ((1, 4), (1, 3)),
    "column": ((4, 1), (3, 1)),
    "columns": ((6, 4, 1), (6, 3, 1)),
    "vector": ((4,), (3,)),
}


def _check_layer(layer, x, rng, params=()):
    """Compare layer.backward with finite differences of sum(g * layer.forward(x)) with respect
    to the input and to each named parameter."""
    y = layer.forward(x)
    g = rng.standard_normal(y.shape)
    analytic_dx = np.array(layer.backward(g, None), dtype=np.float64)
    analytic_params = {name: getattr(layer, name + "_gradient").copy() for name in params}

    def objective() -> float:
        return float(np.sum(g * layer.forward(x)))

    assert analytic_dx.shape == x.shape
    assert_gradients_close(analytic_dx, numerical_gradient(objective, x))
    for name in params:
        assert_gradients_close(
            analytic_params[name], numerical_gradient(objective, getattr(layer, name))
        )


@pytest.mark.parametrize("layout", DENSE_LAYOUTS)
def test_dense_gradients(layout, rng):
    x_shape, y_shape = DENSE_LAYOUTS[layout]
    nncore.seed(0)
    layer = Dense(4, 3, dtype=np.float64)
    layer.bias[:] = rng.standard_normal(3)
    x = rng.standard_normal(x_shape)
    assert layer.forward(x).shape == y_shape
    _check_layer(layer, x, rng, params=("weights", "bias"))


@pytest.mark.parametrize("layout", DENSE_LAYOUTS)
def test_dense_forward_is_x_times_weights_transposed_plus_bias(layout, rng):
    x_shape, y_shape = DENSE_LAYOUTS[layout]
    layer = Dense(4, 3, dtype=np.float64)
    layer.bias[:] = rng.standard_normal(3)
    x = rng.standard_normal(x_shape)
    rows = x.reshape(-1, 4)
    expected = (rows @ layer.weights.T + layer.bias).reshape(y_shape)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-13, atol=1e-15)


def test_dense_gradients_of_a_wide_layer(rng):
    # past the GEMM register tiles in every dimension
    layer = Dense(37, 19, dtype=np.float64)
    layer.bias[:] = rng.standard_normal(19)
    _check_layer(layer, rng.standard_normal((13, 37)), rng, params=("weights", "bias"))


def _away_from_zero(rng, shape, margin=0.1):
    x = rng.uniform(margin, 3.0, shape)
    return x * rng.choice([-1.0, 1.0], shape)


ACTIVATIONS = {
    "tanh": Tanh,
    "sigmoid": Sigmoid,
    "relu": ReLU,
    "leaky_relu": lambda: LeakyReLU(0.1),
    "leaky_relu_default": LeakyReLU,
    "user_activation": lambda: Activation(np.tanh, lambda x: 1 - np.tanh(x) ** 2),
}


@pytest.mark.parametrize("shape", [(7,), (5, 1), (4, 6), (3, 5, 1)], ids=str)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_gradients(name, shape, rng):
    # values are kept away from 0 so that finite differences never straddle the relu kink
    _check_layer(ACTIVATIONS[name](), _away_from_zero(rng, shape), rng)


@pytest.mark.parametrize("shape", [(6,), (5, 1), (1, 1), (4, 7), (3, 5, 1), (2, 3, 4)], ids=str)
def test_softmax_gradients(shape, rng):
    _check_layer(Softmax(), rng.standard_normal(shape) * 2, rng)


def test_softmax_normalises_classic_columns_along_the_column(rng):
    x = rng.standard_normal((3, 5, 1))
    y = Softmax().forward(x)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-14)
    y_column = Softmax().forward(x[0])
    np.testing.assert_allclose(y_column, y[0], rtol=1e-15)


@pytest.mark.parametrize(
    ("input_shape", "output_shape", "x_shape"),
    [((2, 3), (6, 1), (2, 3)), ((2, 3), (6, 1), (4, 2, 3)), ((6,), (3, 2), (5, 6))],
    ids=["one_sample", "batch", "vector_batch"],
)
def test_reshape_gradients(input_shape, output_shape, x_shape, rng):
    layer = Reshape(input_shape, output_shape)
    _check_layer(layer, rng.standard_normal(x_shape), rng)


@pytest.mark.parametrize("shape", [(1, 1), (4, 1), (5, 3), (2, 3, 1)], ids=str)
def test_mse_prime_is_the_gradient_of_mse(shape, rng):
    y_true = rng.standard_normal(shape)
    y_pred = rng.standard_normal(shape)
    np.testing.assert_allclose(mse(y_true, y_pred), np.mean((y_pred - y_true) ** 2), rtol=1e-13)
    numeric = numerical_gradient(lambda: mse(y_true, y_pred), y_pred)
    assert_gradients_close(mse_prime(y_true, y_pred), numeric)


@pytest.mark.parametrize("labels", ["hard", "soft"])
@pytest.mark.parametrize("shape", [(1, 1), (4, 1), (5, 3), (2, 3, 1)], ids=str)
def test_binary_cross_entropy_prime_is_the_gradient(shape, labels, rng):
    y_true = (
        rng.integers(0, 2, shape).astype(np.float64)
        if labels == "hard"
        else rng.uniform(0, 1, shape)
    )
    y_pred = rng.uniform(0.05, 0.95, shape)
    expected = np.mean(-y_true * np.log(y_pred) - (1 - y_true) * np.log(1 - y_pred))
    np.testing.assert_allclose(binary_cross_entropy(y_true, y_pred), expected, rtol=1e-12)
    numeric = numerical_gradient(lambda: binary_cross_entropy(y_true, y_pred), y_pred)
    assert_gradients_close(binary_cross_entropy_prime(y_true, y_pred), numeric)


def test_binary_cross_entropy_is_finite_at_saturated_predictions():
    y_true = np.array([[1.0], [0.0], [1.0], [0.0]])
    y_pred = np.array([[0.0], [1.0], [1.0], [0.0]])
    loss = binary_cross_entropy(y_true, y_pred)
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, 50.0)  # two terms clamped at log = -100, two exact zeros
    assert np.isfinite(binary_cross_entropy_prime(y_true, y_pred)).all()


def _network_gradient_check(network, loss, loss_prime, x, y_true):
    """Backpropagate through the whole network and compare every parameter and the input
    gradient with finite differences of the loss."""
    output = x
    for layer in network:
        output = layer.forward(output)
    gradient = loss_prime(y_true, output)
    for layer in reversed(network):
        gradient = layer.backward(gradient, None)
    analytic = [g.copy() for layer in network for _, g in layer.parameters()]
    params = [p for layer in network for p, _ in layer.parameters()]

    def objective() -> float:
        return loss(y_true, nncore.predict(network, x))

    assert_gradients_close(gradient, numerical_gradient(objective, x))
    for param, grad in zip(params, analytic):
        assert_gradients_close(grad, numerical_gradient(objective, param))


@pytest.mark.parametrize("layout", ["rows", "column"])
def test_whole_network_gradients(layout, rng):
    nncore.seed(3)
    network = [
        Dense(3, 6, dtype=np.float64),
        Tanh(),
        Dense(6, 5, dtype=np.float64),
        LeakyReLU(0.2),
        Dense(5, 4, dtype=np.float64),
        Sigmoid(),
        Dense(4, 3, dtype=np.float64),
        Softmax(),
    ]
    for layer in network:
        if isinstance(layer, Dense):
            layer.bias[:] = rng.standard_normal(layer.bias.shape) * 0.1
    if layout == "rows":
        x, y_true = rng.standard_normal((4, 3)), rng.uniform(0, 1, (4, 3))
    else:
        x, y_true = rng.standard_normal((3, 1)), rng.uniform(0, 1, (3, 1))
    _network_gradient_check(network, mse, mse_prime, x, y_true)


def test_whole_network_gradients_with_binary_cross_entropy_and_reshape(rng):
    nncore.seed(4)
    network = [
        Reshape((2, 2), (4, 1)),
        Dense(4, 5, dtype=np.float64),
        Tanh(),
        Dense(5, 1, dtype=np.float64),
        Sigmoid(),
    ]
    x = rng.standard_normal((2, 2))
    y_true = np.array([[1.0]])
    _network_gradient_check(network, binary_cross_entropy, binary_cross_entropy_prime, x, y_true)


def test_float32_gradients_agree_with_float64(rng):
    layer64 = Dense(9, 7, dtype=np.float64)
    layer32 = Dense(9, 7, dtype=np.float32)
    layer64.weights[:] = layer32.weights  # the same (float32-representable) weights
    x = rng.standard_normal((6, 9)).astype(np.float32)
    g = rng.standard_normal((6, 7)).astype(np.float32)
    layer64.forward(x.astype(np.float64))
    layer32.forward(x)
    dx64 = layer64.backward(g.astype(np.float64), None)
    dx32 = layer32.backward(g, None)
    assert dx32.dtype == np.float32 and layer32.weights_gradient.dtype == np.float32
    for got, expected in [
        (dx32, dx64),
        (layer32.weights_gradient, layer64.weights_gradient),
        (layer32.bias_gradient, layer64.bias_gradient),
    ]:
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
