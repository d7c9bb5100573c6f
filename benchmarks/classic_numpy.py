"""The classic from-scratch numpy network, as the reference for the per-sample benchmark.

A small, faithful reimplementation of the classic design nncore's classic API comes from: layers
with ``forward(input)`` and ``backward(output_gradient, learning_rate)`` that update their own
parameters, samples as ``(features, 1)`` columns, ``Dense`` computing
``np.dot(self.weights, input) + self.bias``, ``Tanh`` as an ``Activation`` of ``np.tanh`` and its
derivative, mean squared error, and a per-sample training loop. Weights are passed in (so both
implementations start from the same Glorot initialisation) instead of drawn with ``np.random.randn``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


class Layer:
    def __init__(self) -> None:
        self.input = None
        self.output = None

    def forward(self, input: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, output_gradient: np.ndarray, learning_rate: float) -> np.ndarray:
        raise NotImplementedError


class Dense(Layer):
    def __init__(self, weights: np.ndarray, bias: np.ndarray) -> None:
        super().__init__()
        self.weights = np.array(weights, dtype=np.float64)  # (output_size, input_size)
        self.bias = np.array(bias, dtype=np.float64).reshape(-1, 1)  # (output_size, 1)

    def forward(self, input: np.ndarray) -> np.ndarray:
        self.input = input
        return np.dot(self.weights, self.input) + self.bias

    def backward(self, output_gradient: np.ndarray, learning_rate: float) -> np.ndarray:
        weights_gradient = np.dot(output_gradient, self.input.T)
        input_gradient = np.dot(self.weights.T, output_gradient)
        self.weights -= learning_rate * weights_gradient
        self.bias -= learning_rate * output_gradient
        return input_gradient


class Activation(Layer):
    def __init__(self, activation: Callable[[np.ndarray], np.ndarray],
                 activation_prime: Callable[[np.ndarray], np.ndarray]) -> None:
        super().__init__()
        self.activation = activation
        self.activation_prime = activation_prime

    def forward(self, input: np.ndarray) -> np.ndarray:
        self.input = input
        return self.activation(self.input)

    def backward(self, output_gradient: np.ndarray, learning_rate: float) -> np.ndarray:
        return np.multiply(output_gradient, self.activation_prime(self.input))


class Tanh(Activation):
    def __init__(self) -> None:
        super().__init__(np.tanh, lambda x: 1 - np.tanh(x) ** 2)


def mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.power(y_true - y_pred, 2)))


def mse_prime(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    return 2 * (y_pred - y_true) / np.size(y_true)


def predict(network: Sequence[Layer], input: np.ndarray) -> np.ndarray:
    output = input
    for layer in network:
        output = layer.forward(output)
    return output


def train(network: Sequence[Layer], loss: Callable, loss_prime: Callable, x_train: np.ndarray,
          y_train: np.ndarray, epochs: int = 1000, learning_rate: float = 0.01) -> list[float]:
    """Per-sample SGD; returns the mean loss of each epoch."""
    history = []
    for _ in range(epochs):
        error = 0.0
        for x, y in zip(x_train, y_train):
            output = predict(network, x)
            error += loss(y, output)
            grad = loss_prime(y, output)
            for layer in reversed(network):
                grad = layer.backward(grad, learning_rate)
        history.append(error / len(x_train))
    return history
