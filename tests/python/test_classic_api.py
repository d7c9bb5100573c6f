"""The classic from-scratch API: Dense/Activation/Layer, a network as a list, train/predict, seeding."""

from __future__ import annotations

import nncore
import numpy as np
import pytest
from nncore import (
    Activation,
    Dense,
    Layer,
    LeakyReLU,
    Sigmoid,
    Tanh,
    mse,
    mse_prime,
    predict,
    train,
)


class Scale(Layer):
    """A user layer in plain numpy: multiplies by a learnable scalar."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, input):
        self.input = input
        self.output = self.factor * input
        return self.output

    def backward(self, output_gradient, learning_rate=None):
        factor_gradient = float(np.sum(output_gradient * self.input))
        input_gradient = self.factor * output_gradient
        if learning_rate is not None:
            self.factor -= learning_rate * factor_gradient
        return input_gradient


class NumpyDense(Layer):
    """The classic numpy dense layer on one column (features, 1), float64 weights."""

    def __init__(self, input_size: int, output_size: int, rng: np.random.Generator) -> None:
        super().__init__()
        self.weights = rng.standard_normal((output_size, input_size)) * 0.5
        self.bias = rng.standard_normal((output_size, 1)) * 0.1

    def forward(self, input):
        self.input = input
        return self.weights @ self.input + self.bias

    def backward(self, output_gradient, learning_rate=None):
        weights_gradient = output_gradient @ self.input.T
        input_gradient = self.weights.T @ output_gradient
        if learning_rate is not None:
            self.weights -= learning_rate * weights_gradient
            self.bias -= learning_rate * output_gradient
        return input_gradient


XOR_X = np.reshape([[0, 0], [0, 1], [1, 0], [1, 1]], (4, 2, 1))
XOR_Y = np.reshape([[0], [1], [1], [0]], (4, 1, 1))


# ----------------------------------------------------------------------------------------------
# Dense


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_parameter_shapes_and_dtypes(dtype):
    layer = Dense(5, 3, dtype=dtype)
    assert layer.weights.shape == (3, 5) and layer.bias.shape == (3,)
    assert layer.weights_gradient.shape == (3, 5) and layer.bias_gradient.shape == (3,)
    for array in (layer.weights, layer.bias, layer.weights_gradient, layer.bias_gradient):
        assert array.dtype == dtype and array.flags.c_contiguous
    assert np.all(layer.bias == 0)
    assert (
        layer.parameters()[0][0] is layer.weights
        and layer.parameters()[0][1] is layer.weights_gradient
    )
    assert (
        layer.parameters()[1][0] is layer.bias and layer.parameters()[1][1] is layer.bias_gradient
    )


def test_dense_defaults_to_float32():
    layer = Dense(2, 2)
    assert layer.weights.dtype == np.float32
    assert layer.forward(np.array([[1, 2]])).dtype == np.float32


@pytest.mark.parametrize("init", sorted(nncore.initializers.INITIALIZERS))
def test_dense_initialisers(init):
    layer = Dense(30, 20, init=init, dtype=np.float64)
    assert layer.weights.shape == (20, 30) and layer.weights.dtype == np.float64
    assert np.isfinite(layer.weights).all()
    if init == "zeros":
        assert not layer.weights.any()
    else:
        assert np.unique(layer.weights).size == layer.weights.size  # random, not constant
    if init == "glorot_uniform":
        assert np.abs(layer.weights).max() <= np.sqrt(6 / 50)


def test_dense_with_a_callable_initialiser():
    layer = Dense(3, 2, init=lambda fan_in, fan_out, dtype: np.full((fan_out, fan_in), 0.5, dtype))
    assert np.array_equal(layer.weights, np.full((2, 3), 0.5, np.float32))
    with pytest.raises(ValueError, match=r"initialiser returned shape \(3, 2\), expected \(2, 3\)"):
        Dense(3, 2, init=lambda fan_in, fan_out, dtype: np.zeros((fan_in, fan_out)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_backward_with_a_learning_rate_applies_sgd(dtype):
    rng = np.random.default_rng(1)
    layer = Dense(6, 4, dtype=dtype)
    layer.bias[:] = rng.standard_normal(4)
    x = rng.standard_normal((3, 6)).astype(dtype)
    g = rng.standard_normal((3, 4)).astype(dtype)
    w_before, b_before = layer.weights.copy(), layer.bias.copy()

    layer.forward(x)
    layer.backward(g, None)
    dw, db = layer.weights_gradient.copy(), layer.bias_gradient.copy()
    np.testing.assert_allclose(
        dw, g.T.astype(np.float64) @ x, rtol=1e-5 if dtype == np.float32 else 1e-13
    )
    np.testing.assert_allclose(db, g.sum(axis=0), rtol=1e-5 if dtype == np.float32 else 1e-13)
    assert np.array_equal(layer.weights, w_before) and np.array_equal(layer.bias, b_before)

    lr = 0.125
    layer.forward(x)
    input_gradient = layer.backward(g, lr)
    # input gradient uses the weights before the update
    np.testing.assert_allclose(
        input_gradient, g @ w_before, rtol=1e-5 if dtype == np.float32 else 1e-13
    )
    assert np.array_equal(layer.weights_gradient, dw) and np.array_equal(layer.bias_gradient, db)
    tol = 4 * np.finfo(dtype).eps
    np.testing.assert_allclose(layer.weights, w_before - dtype(lr) * dw, rtol=tol, atol=tol)
    np.testing.assert_allclose(layer.bias, b_before - dtype(lr) * db, rtol=tol, atol=tol)


def test_dense_backward_keeps_the_callers_layout():
    layer = Dense(3, 2, dtype=np.float64)
    for x, g in [
        (np.ones((3, 1)), np.ones((2, 1))),
        (np.ones(3), np.ones(2)),
        (np.ones((5, 3, 1)), np.ones((5, 2, 1))),
        (np.ones((5, 3)), np.ones((5, 2))),
    ]:
        assert layer.forward(x).shape == g.shape
        assert layer.backward(g, None).shape == x.shape


# ----------------------------------------------------------------------------------------------
# Activations and user layers


def test_activation_with_user_functions():
    def square(x):
        return x * x

    def square_prime(x):
        return 2 * x

    layer = Activation(square, square_prime)
    x = np.array([[1.0], [-2.0], [3.0]])
    assert np.array_equal(layer.forward(x), [[1.0], [4.0], [9.0]])
    assert np.array_equal(
        layer.backward(np.array([[1.0], [1.0], [0.5]]), 0.1), [[2.0], [-4.0], [3.0]]
    )


def test_native_activation_functions_are_usable_like_the_classic_ones():
    tanh = Tanh()
    x = np.array([[0.5], [-1.0]])
    np.testing.assert_allclose(tanh.activation(x), np.tanh(x), rtol=1e-14)
    np.testing.assert_allclose(tanh.activation_prime(x), 1 - np.tanh(x) ** 2, rtol=1e-13)
    assert LeakyReLU(0.3).negative_slope == 0.3


def test_layer_base_class_requires_forward_and_backward():
    with pytest.raises(NotImplementedError):
        Layer().forward(np.ones(2))
    with pytest.raises(NotImplementedError):
        Layer().backward(np.ones(2), 0.1)
    assert Layer().parameters() == []


def test_user_layers_train_inside_a_native_network():
    nncore.seed(11)
    rng = np.random.default_rng(11)
    network = [NumpyDense(2, 4, rng), Tanh(), Scale(1.5), Dense(4, 1, dtype=np.float64), Tanh()]
    errors = train(
        network, mse, mse_prime, XOR_X, XOR_Y, epochs=2000, learning_rate=0.1, verbose=False
    )
    assert errors[-1] < errors[0] / 10
    assert network[2].factor != 1.5  # the user layer was updated through backward
    outputs = np.array([predict(network, x) for x in XOR_X])
    assert outputs.shape == (4, 1, 1)
    np.testing.assert_allclose(outputs, XOR_Y, atol=0.2)


def test_float32_native_layer_after_a_float64_user_layer():
    nncore.seed(2)
    network = [NumpyDense(2, 3, np.random.default_rng(2)), Dense(3, 1), Sigmoid()]
    output = predict(network, [[0.5], [1.0]])
    assert output.shape == (1, 1) and output.dtype == np.float32
    errors = train(
        network, mse, mse_prime, XOR_X, XOR_Y, epochs=3, learning_rate=0.1, verbose=False
    )
    assert len(errors) == 3 and all(np.isfinite(errors))


# ----------------------------------------------------------------------------------------------
# train / predict


def test_predict_accepts_nested_lists():
    nncore.seed(0)
    network = [Dense(2, 3), Tanh(), Dense(3, 1), Tanh()]
    column = predict(network, [[0], [1]])
    assert column.shape == (1, 1) and column.dtype == np.float32
    assert np.array_equal(column, predict(network, np.array([[0.0], [1.0]], dtype=np.float32)))
    rows = predict(network, [[0, 1], [1, 0], [1, 1]])
    assert rows.shape == (3, 1)
    assert rows[0, 0] == column[0, 0]


def test_predict_on_a_batch_matches_predicting_each_sample():
    nncore.seed(1)
    network = [Dense(2, 8), Tanh(), Dense(8, 3), Sigmoid()]
    batch = predict(network, XOR_X)  # (4, 2, 1) columns
    assert batch.shape == (4, 3, 1)
    for i, x in enumerate(XOR_X):
        np.testing.assert_allclose(predict(network, x), batch[i], rtol=1e-6)


def test_train_returns_per_epoch_errors_and_prints_them(capsys):
    nncore.seed(0)
    network = [Dense(2, 3), Tanh(), Dense(3, 1), Tanh()]
    errors = train(network, mse, mse_prime, XOR_X, XOR_Y, epochs=5, learning_rate=0.1)
    assert len(errors) == 5 and all(isinstance(e, float) for e in errors)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("1/5, error=") and lines[-1] == f"5/5, error={errors[-1]}"
    assert train(network, mse, mse_prime, XOR_X, XOR_Y, epochs=0, verbose=False) == []


def test_train_error_is_the_mean_loss_over_samples():
    nncore.seed(0)
    network = [Dense(2, 1, dtype=np.float64)]
    expected = np.mean([mse(y, predict(network, x)) for x, y in zip(XOR_X, XOR_Y)])
    (error,) = train(
        network, mse, mse_prime, XOR_X, XOR_Y, epochs=1, learning_rate=0.0, verbose=False
    )
    np.testing.assert_allclose(error, expected, rtol=1e-14)


def test_mini_batch_training_equals_the_manual_loop():
    x = np.random.default_rng(0).standard_normal((6, 3))
    y = np.random.default_rng(1).standard_normal((6, 2))

    def make():
        nncore.seed(9)
        return [Dense(3, 4, dtype=np.float64), Tanh(), Dense(4, 2, dtype=np.float64)]

    trained = make()
    train(trained, mse, mse_prime, x, y, epochs=2, learning_rate=0.05, verbose=False, batch_size=4)
    manual = make()
    for _ in range(2):
        for start in (0, 4):
            xb, yb = x[start : start + 4], y[start : start + 4]
            out = xb
            for layer in manual:
                out = layer.forward(out)
            grad = mse_prime(yb, out)
            for layer in reversed(manual):
                grad = layer.backward(grad, 0.05)
    for a, b in zip(trained, manual):
        if isinstance(a, Dense):
            assert np.array_equal(a.weights, b.weights) and np.array_equal(a.bias, b.bias)


def test_float64_network_stays_float64_end_to_end():
    nncore.seed(0)
    network = [Dense(2, 3, dtype=np.float64), Tanh(), Dense(3, 1, dtype=np.float64), Sigmoid()]
    train(network, mse, mse_prime, XOR_X, XOR_Y, epochs=3, learning_rate=0.1, verbose=False)
    output = XOR_X
    for layer in network:
        output = layer.forward(output)
        assert output.dtype == np.float64, type(layer).__name__
    for layer in (network[0], network[2]):
        for param, grad in layer.parameters():
            assert param.dtype == np.float64 and grad.dtype == np.float64
    assert predict(network, [[1], [0]]).dtype == np.float64


# ----------------------------------------------------------------------------------------------
# Seeding


def _initial_weights(seed):
    nncore.seed(seed)
    network = [Dense(4, 6), Dense(6, 2, init="he_normal", dtype=np.float64)]
    return [layer.weights.copy() for layer in network]


def _trained_weights(seed, shuffle=True):
    nncore.seed(seed)
    network = [Dense(2, 3), Tanh(), Dense(3, 1), Tanh()]
    errors = train(
        network,
        mse,
        mse_prime,
        XOR_X,
        XOR_Y,
        epochs=50,
        learning_rate=0.1,
        verbose=False,
        shuffle=shuffle,
    )
    return [network[0].weights, network[0].bias, network[2].weights, network[2].bias], errors


def test_seed_makes_initialisation_reproducible():
    first, second, other = _initial_weights(42), _initial_weights(42), _initial_weights(43)
    for a, b in zip(first, second):
        assert np.array_equal(a, b)
    assert not any(np.array_equal(a, c) for a, c in zip(first, other))


def test_seed_makes_shuffled_training_reproducible_bit_for_bit():
    (w1, e1), (w2, e2) = _trained_weights(7), _trained_weights(7)
    assert e1 == e2
    for a, b in zip(w1, w2):
        assert np.array_equal(a, b)
    _, e3 = _trained_weights(8)
    assert e3 != e1


def test_shuffle_changes_the_order_of_updates():
    shuffled, _ = _trained_weights(7, shuffle=True)
    ordered, _ = _trained_weights(7, shuffle=False)
    assert not np.array_equal(shuffled[0], ordered[0])


def test_seed_rejects_bad_values():
    with pytest.raises(TypeError, match="expected an int, got float"):
        nncore.seed(1.5)
    with pytest.raises(ValueError, match="non-negative"):
        nncore.seed(-1)
