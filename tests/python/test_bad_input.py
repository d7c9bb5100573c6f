"""Bad input to layers, losses, train and predict: a clear ValueError/TypeError (or the documented
RuntimeError/FloatingPointError), never a crash or a silent wrong answer."""

from __future__ import annotations

import nncore
import numpy as np
import pytest
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
    predict,
    train,
)

NON_REAL = {
    "complex": np.ones((2, 3), dtype=np.complex128),
    "object": np.array([[1.0, None, 2.0], [0.0, 1.0, 2.0]], dtype=object),
    "str": np.array([["1", "2", "3"], ["4", "5", "6"]]),
    "bytes": np.array([[b"1", b"2", b"3"], [b"4", b"5", b"6"]]),
}
LAYER_FACTORIES = {
    "dense": lambda: Dense(3, 2),
    "tanh": Tanh,
    "sigmoid": Sigmoid,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "softmax": Softmax,
}


def _small_network():
    nncore.seed(0)
    return [Dense(3, 4), Tanh(), Dense(4, 2), Sigmoid()]


# ----------------------------------------------------------------------------------------------
# Layers


@pytest.mark.parametrize(
    ("shape", "shown"),
    [
        ((4, 5), r"\(4, 5\)"),
        ((5,), r"\(5,\)"),
        ((2, 1), r"\(2, 1\)"),
        ((4, 2, 1), r"\(4, 2, 1\)"),
        ((3, 3, 2), r"\(3, 3, 2\)"),
    ],
)
def test_dense_wrong_feature_count_names_expected_and_received(shape, shown):
    with pytest.raises(
        ValueError,
        match=rf"Dense\(3 -> 2\).forward: expected input of shape \(batch, 3\).*got {shown}",
    ):
        Dense(3, 2).forward(np.ones(shape))


@pytest.mark.parametrize("shape", [(), (1, 1, 3, 1), (2, 3, 1, 1)], ids=str)
def test_dense_wrong_ndim(shape):
    with pytest.raises(ValueError, match="expected input of shape"):
        Dense(3, 2).forward(np.ones(shape))


@pytest.mark.parametrize("kind", NON_REAL)
@pytest.mark.parametrize("layer", LAYER_FACTORIES)
def test_layers_reject_non_real_dtypes(layer, kind):
    with pytest.raises(TypeError, match=rf"real numeric dtype.*got {NON_REAL[kind].dtype}"):
        LAYER_FACTORIES[layer]().forward(NON_REAL[kind])


@pytest.mark.parametrize("layer", LAYER_FACTORIES)
def test_layers_reject_empty_batches(layer):
    with pytest.raises(ValueError, match=r"empty input of shape \(0, 3\)"):
        LAYER_FACTORIES[layer]().forward(np.ones((0, 3)))


def test_integer_and_bool_inputs_are_converted_once():
    layer = Dense(3, 2)
    assert layer.forward(np.array([[1, 0, 1]], dtype=np.int64)).dtype == np.float32
    assert layer.forward(np.array([True, False, True])).dtype == np.float32
    assert Tanh().forward(np.array([1, 2])).dtype == np.float32
    assert Tanh().forward(np.array([1.0, 2.0])).dtype == np.float64


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((0, 2), ValueError, "expected input_size > 0, got 0"),
        ((2, 0), ValueError, "expected output_size > 0, got 0"),
        ((-1, 2), ValueError, "expected input_size > 0, got -1"),
        ((2, -5), ValueError, "expected output_size > 0, got -5"),
        ((2.0, 2), TypeError, "expected input_size to be an int, got float"),
        ((2, 2.5), TypeError, "expected output_size to be an int, got float"),
        (("2", 2), TypeError, "expected input_size to be an int, got str"),
        ((True, 2), TypeError, "expected input_size to be an int, got bool"),
        ((None, 2), TypeError, "expected input_size to be an int, got NoneType"),
    ],
)
def test_dense_rejects_bad_sizes(args, error, match):
    with pytest.raises(error, match=match):
        Dense(*args)


def test_dense_accepts_numpy_integer_sizes():
    layer = Dense(np.int64(3), np.int32(2))
    assert layer.weights.shape == (2, 3) and type(layer.input_size) is int


def test_dense_with_an_impossible_size_raises_value_error():
    with pytest.raises(ValueError, match=r"Dense: cannot create 8589934592 x 8589934592 weights"):
        Dense(2**33, 2**33)


def test_running_out_of_memory_in_an_initialiser_is_a_memory_error_naming_the_layer():
    class PickyMemoryError(MemoryError):  # like numpy's _ArrayMemoryError: more arguments needed
        def __init__(self, shape, dtype):
            super().__init__(f"cannot allocate {shape} of {dtype}")

    def exhausted(fan_in, fan_out, dtype):
        raise PickyMemoryError((fan_out, fan_in), dtype)

    with pytest.raises(MemoryError, match=r"Dense: cannot create 3 x 2 weights: cannot allocate \(3, 2\)"):
        Dense(2, 3, init=exhausted)


def test_dense_rejects_an_initialiser_that_is_neither_a_name_nor_a_callable():
    with pytest.raises(TypeError, match="expected init to be an initialiser name or a callable, got int"):
        Dense(2, 2, init=3)


def test_dense_backward_names_the_gradient_when_its_dtype_is_wrong():
    layer = Dense(2, 3)
    layer.forward(np.ones((4, 2), np.float32))
    with pytest.raises(TypeError, match="expected output_gradient with a real numeric dtype"):
        layer.backward(np.ones((4, 3), np.complex64))


def test_dense_rejects_unknown_initialiser():
    with pytest.raises(
        ValueError, match=r"unknown initialiser 'glorot'; expected one of \[.*'glorot_uniform'"
    ):
        Dense(2, 2, init="glorot")


@pytest.mark.parametrize(
    "dtype", [np.int32, np.int64, np.float16, np.complex64, bool, "nonsense", object]
)
def test_dense_rejects_non_float_dtypes(dtype):
    with pytest.raises(TypeError, match="expected dtype float32 or float64"):
        Dense(2, 2, dtype=dtype)


@pytest.mark.parametrize(
    "layer",
    [
        Dense(2, 2),
        Tanh(),
        Sigmoid(),
        ReLU(),
        LeakyReLU(),
        Softmax(),
        Reshape((2,), (2, 1)),
        Activation(np.tanh, np.cos),
    ],
    ids=repr,
)
def test_backward_before_forward(layer):
    with pytest.raises(
        RuntimeError, match=rf"{type(layer).__name__}.backward called before forward"
    ):
        layer.backward(np.ones((1, 2)), 0.1)


@pytest.mark.parametrize(
    "layer",
    [Dense(3, 2), Tanh(), Sigmoid(), ReLU(), LeakyReLU(), Softmax(), Reshape((3,), (3, 1))],
    ids=repr,
)
def test_backward_with_wrong_gradient_shape(layer):
    output = layer.forward(np.ones((4, 3)))
    wrong = np.ones((output.shape[0] + 1,) + output.shape[1:])
    with pytest.raises(
        ValueError,
        match=rf"expected output_gradient of shape \({output.shape[0]}, .*got \({wrong.shape[0]}, ",
    ):
        layer.backward(wrong, None)


def test_dense_backward_rejects_bad_gradient_dtype():
    layer = Dense(3, 2)
    layer.forward(np.ones((1, 3)))
    with pytest.raises(TypeError, match="complex128"):
        layer.backward(np.ones((1, 2), dtype=np.complex128), 0.1)


@pytest.mark.parametrize("lr", [-0.1, -1e-12, float("nan"), float("inf")])
def test_dense_backward_rejects_bad_learning_rates(lr):
    layer = Dense(3, 2)
    weights = layer.weights.copy()
    layer.forward(np.ones((1, 3)))
    with pytest.raises(ValueError, match="expected learning_rate to be finite and >= 0"):
        layer.backward(np.ones((1, 2)), lr)
    assert np.array_equal(layer.weights, weights)  # nothing was applied
    with pytest.raises(TypeError, match="expected learning_rate to be a number, got str"):
        layer.backward(np.ones((1, 2)), "0.1")


@pytest.mark.parametrize(
    ("slope", "error"),
    [(-0.1, ValueError), (float("nan"), ValueError), ("0.1", TypeError), (None, TypeError)],
)
def test_leaky_relu_rejects_bad_slopes(slope, error):
    with pytest.raises(error, match="negative_slope"):
        LeakyReLU(slope)


def test_reshape_rejects_bad_shapes():
    with pytest.raises(
        ValueError, match=r"input_shape \(2, 3\) has 6 values but output_shape \(5,\) has 5"
    ):
        Reshape((2, 3), (5,))
    with pytest.raises(ValueError, match="> 0, got 0"):
        Reshape((0, 3), (0,))
    with pytest.raises(TypeError, match="an int, got float"):
        Reshape((2.0,), (2,))
    with pytest.raises(ValueError, match="at least one dimension"):
        Reshape((), ())
    with pytest.raises(
        ValueError, match=r"expected input of shape \(2, 3\) or \(batch,\) \+ \(2, 3\), got \(6,\)"
    ):
        Reshape((2, 3), (6,)).forward(np.ones(6))


def test_reshape_detects_a_size_mismatch_even_when_products_overflow():
    # 2**32 * 2**32 and 2**33 * 2**32 both wrap to 0 in int64 arithmetic
    with pytest.raises(ValueError, match="values"):
        Reshape((2**32, 2**32), (2**33, 2**32))


def test_activation_requires_callables():
    with pytest.raises(TypeError, match="two callables"):
        Activation(np.tanh, None)


# ----------------------------------------------------------------------------------------------
# Losses

LOSSES = [mse, mse_prime, binary_cross_entropy, binary_cross_entropy_prime]
LOSS_IDS = [f.__name__ for f in LOSSES]


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_losses_reject_shape_mismatch(loss):
    with pytest.raises(
        ValueError,
        match=rf"{loss.__name__}: y_true has shape \(3, 1\) but y_pred has shape \(1, 3\)",
    ):
        loss(np.zeros((3, 1)), np.full((1, 3), 0.5))


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_losses_reject_empty_and_non_real(loss):
    with pytest.raises(ValueError, match=r"empty arrays of shape \(0, 1\)"):
        loss(np.zeros((0, 1)), np.zeros((0, 1)))
    for bad in NON_REAL.values():
        with pytest.raises(TypeError, match="real numeric dtype"):
            loss(bad, np.full((2, 3), 0.5))
        with pytest.raises(TypeError, match="real numeric dtype"):
            loss(np.full((2, 3), 0.5), bad)


def test_losses_follow_the_prediction_dtype():
    y_true = np.array([[1], [0]])  # ints are converted to the prediction's dtype
    for dtype in (np.float32, np.float64):
        y_pred = np.array([[0.25], [0.5]], dtype=dtype)
        assert mse_prime(y_true, y_pred).dtype == dtype
        assert binary_cross_entropy_prime(y_true, y_pred).dtype == dtype
    np.testing.assert_allclose(mse([[1.0], [0.0]], [[0.25], [0.5]]), (0.5625 + 0.25) / 2)


# ----------------------------------------------------------------------------------------------
# train / predict

X = np.ones((5, 3))
Y = np.zeros((5, 2))


@pytest.mark.parametrize("network", ["dense", Dense(3, 2), None, {"a": Dense(3, 2)}], ids=repr)
def test_network_must_be_a_list(network):
    with pytest.raises(TypeError, match="expected the network as a list of layers"):
        train(network, mse, mse_prime, X, Y, epochs=1, verbose=False)
    with pytest.raises(TypeError, match="expected the network as a list of layers"):
        predict(network, X)


def test_network_must_not_be_empty_or_hold_non_layers():
    for call in (
        lambda n: predict(n, X),
        lambda n: train(n, mse, mse_prime, X, Y, epochs=1, verbose=False),
    ):
        with pytest.raises(ValueError, match="the network has no layers"):
            call([])
        with pytest.raises(TypeError, match=r"network\[1\] \(int\) has no forward/backward"):
            call([Dense(3, 2), 7])


def test_train_rejects_mismatched_batches():
    with pytest.raises(
        ValueError,
        match=r"x_train has 5 samples \(shape \(5, 3\)\) but y_train has 4 \(shape \(4, 2\)\)",
    ):
        train(_small_network(), mse, mse_prime, X, Y[:4], epochs=1, verbose=False)


def test_train_rejects_targets_of_the_wrong_width():
    with pytest.raises(ValueError, match=r"y_true has shape \(3,\) but y_pred has shape \(2,\)"):
        train(_small_network(), mse, mse_prime, X, np.zeros((5, 3)), epochs=1, verbose=False)


@pytest.mark.parametrize("kind", NON_REAL)
def test_train_and_predict_reject_non_real_data(kind):
    bad = NON_REAL[kind]
    with pytest.raises(TypeError, match=rf"x_train with a real numeric dtype.*got {bad.dtype}"):
        train(_small_network(), mse, mse_prime, bad, np.zeros((2, 2)), epochs=1, verbose=False)
    with pytest.raises(TypeError, match=rf"y_train with a real numeric dtype.*got {bad.dtype}"):
        train([Dense(3, 3)], mse, mse_prime, np.ones((2, 3)), bad, epochs=1, verbose=False)
    with pytest.raises(
        TypeError, match=rf"predict: expected input with a real numeric dtype.*got {bad.dtype}"
    ):
        predict(_small_network(), bad)


def test_train_and_predict_reject_empty_and_scalar_data():
    with pytest.raises(ValueError, match=r"x_train is empty \(shape \(0, 3\)\)"):
        train(
            _small_network(),
            mse,
            mse_prime,
            np.ones((0, 3)),
            np.ones((0, 2)),
            epochs=1,
            verbose=False,
        )
    with pytest.raises(ValueError, match="must have a sample axis"):
        train(_small_network(), mse, mse_prime, 1.0, 1.0, epochs=1, verbose=False)
    with pytest.raises(ValueError, match=r"empty input of shape \(0, 3\)"):
        predict(_small_network(), np.ones((0, 3)))
    with pytest.raises(ValueError, match="not a rectangular array"):
        predict(_small_network(), [[1, 2, 3], [1, 2]])


@pytest.mark.parametrize("where", ["x", "y"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_train_rejects_nan_and_inf_in_data(where, value):
    x, y = X.copy(), Y.copy()
    (x if where == "x" else y)[2, 1] = value
    with pytest.raises(ValueError, match="contains NaN or infinity"):
        train(_small_network(), mse, mse_prime, x, y, epochs=1, verbose=False)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"learning_rate": -0.1}, ValueError, "learning_rate to be finite and >= 0, got -0.1"),
        ({"learning_rate": float("nan")}, ValueError, "learning_rate to be finite"),
        ({"learning_rate": "0.1"}, TypeError, "learning_rate to be a number"),
        ({"epochs": -1}, ValueError, "epochs to be an int >= 0, got -1"),
        ({"epochs": 2.5}, ValueError, "epochs to be an int >= 0, got 2.5"),
        ({"batch_size": 0}, ValueError, "batch_size > 0, got 0"),
        ({"batch_size": 1.5}, TypeError, "batch_size to be an int"),
    ],
)
def test_train_rejects_bad_hyper_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        train(_small_network(), mse, mse_prime, X, Y, verbose=False, **{"epochs": 1, **kwargs})


def test_train_rejects_non_callable_losses():
    with pytest.raises(TypeError, match="loss and loss_prime must be callables"):
        train(_small_network(), "mse", mse_prime, X, Y, epochs=1, verbose=False)


def test_diverging_training_raises_floating_point_error_naming_the_epoch():
    nncore.seed(0)
    network = [Dense(1, 8), Dense(8, 1)]
    x = np.linspace(-10, 10, 8).reshape(8, 1, 1)
    with pytest.raises(
        FloatingPointError,
        match=r"train: the loss became (inf|nan) at epoch \d+, samples \d+\.\.\d+",
    ):
        train(network, mse, mse_prime, x, 3 * x, epochs=100, learning_rate=10.0, verbose=False)


def test_nan_weights_are_reported_in_the_first_epoch():
    network = _small_network()
    network[2].weights[0, 0] = np.nan
    with pytest.raises(FloatingPointError, match="at epoch 1, samples 0..0"):
        train(network, mse, mse_prime, X, Y, epochs=3, verbose=False)


def test_float64_data_beyond_the_float32_range():
    # Converting 1e39 to float32 makes numpy warn ("overflow encountered in cast"); nncore should
    # not leak that warning from its own conversion (with -W error it becomes a RuntimeWarning
    # exception): train must refuse the data with its ValueError, predict may return inf.
    network = [Dense(1, 1)]  # float32
    with pytest.raises(ValueError, match="contains NaN or infinity"):
        train(
            network, mse, mse_prime, np.array([[1e39]]), np.array([[0.0]]), epochs=1, verbose=False
        )
    try:
        output = predict(network, np.array([[1e39]]))
    except ValueError:
        pass
    else:
        assert not np.isfinite(output).all()


@pytest.mark.parametrize("where", ["train", "fit"])
def test_one_layer_object_in_two_places_cannot_be_trained(where):
    # Its second forward would overwrite the input that the first place's backward needs.
    dense, tanh = nncore.Dense(3, 3), nncore.Tanh()
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 3), np.float32)
    for network, message in (([dense, tanh, dense], "layer 2 is the same Dense object as layer 0"),
                             ([nncore.Dense(3, 3), tanh, nncore.Dense(3, 3), tanh], "layer 3 is the same Tanh")):
        before = dense.weights.copy()
        with pytest.raises(ValueError, match=message):
            if where == "train":
                nncore.train(network, nncore.mse, nncore.mse_prime, x, y, epochs=1, verbose=False)
            else:
                nncore.Sequential(network).fit(x, y, loss="mse", optimizer="sgd", verbose=0)
        assert np.array_equal(dense.weights, before)
    assert nncore.predict([dense, tanh, dense], x).shape == (4, 3)  # predicting through it is fine


@pytest.mark.parametrize("use_engine", [True, False])
@pytest.mark.parametrize("batch_size", [1, 2])
def test_a_shuffled_divergence_names_the_samples_of_x_train(use_engine, batch_size):
    x = np.zeros((6, 2))
    x[4] = 1e200  # only x_train[4] overflows
    nncore.engine.set_enabled(use_engine)
    try:
        nncore.seed(5)
        with pytest.raises(FloatingPointError, match=r"epoch 1, samples? (\d+, )?4(, \d+)? of x_train \(shuffled\)"):
            train([Dense(2, 1, dtype=np.float64)], mse, mse_prime, x, np.zeros((6, 1)), epochs=1, learning_rate=0.1,
                  verbose=False, shuffle=True, batch_size=batch_size)
    finally:
        nncore.engine.set_enabled(None)


@pytest.mark.parametrize("make, x, tie", [
    (lambda: nncore.Dense(3, 2), np.ones((1, 3), np.float32), lambda l: setattr(l, "bias_gradient", l.bias)),
    (lambda: nncore.Dense(3, 2), np.ones((1, 3), np.float32),
     lambda l: setattr(l, "bias_gradient", l.weights.reshape(-1)[1:3])),  # a (2,) view into the weights
    (lambda: nncore.Conv2D(1, 2, 3), np.ones((1, 1, 5, 5), np.float32), lambda l: setattr(l, "bias_gradient", l.bias)),
    (lambda: nncore.Convolutional((1, 5, 5), 3, 2), np.ones((1, 5, 5)),
     lambda l: setattr(l, "biases_gradient", l.biases)),
])
def test_a_gradient_sharing_memory_with_a_parameter_is_refused(make, x, tie):
    # backward writes the gradient first: the parameter would be overwritten before its step.
    layer = make()
    tie(layer)
    output = layer.forward(x)
    before = [p.copy() for p, _ in layer.parameters()]
    with pytest.raises(ValueError, match="shares memory with parameter"):
        layer.backward(np.ones_like(output), 0.1)
    assert all(np.array_equal(a, p) for a, (p, _) in zip(before, layer.parameters()))


def test_more_arguments_of_the_wrong_kind_are_refused(tmp_path):
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)
    with pytest.raises(TypeError, match=r"network\[1\] is the class Tanh, not a layer; write Tanh\(...\)"):
        nncore.Sequential([Dense(3, 2), nncore.Tanh])
    for name, value in (("verbose", "no"), ("shuffle", "yes")):
        with pytest.raises(TypeError, match=f"expected {name} to be True or False"):
            train([Dense(3, 2)], mse, mse_prime, x, y, epochs=1, **{name: value})
    train([Dense(3, 2)], mse, mse_prime, x, y, epochs=1, verbose=None, shuffle=None)  # None: off
    model = nncore.Sequential([Dense(3, 2)])
    model.fit(x, y, loss="mse", callbacks=None, verbose=0)  # None: no callbacks, as in Keras
    with pytest.raises(TypeError, match="expected callbacks to be a list of callbacks, got int"):
        model.fit(x, y, loss="mse", callbacks=3, verbose=0)
    with pytest.raises(ValueError, match="expected a file path, got an empty one"):
        model.save("")
    with pytest.raises(IsADirectoryError, match="it is a directory, expected a file path"):
        model.save(tmp_path)
    assert list(tmp_path.iterdir()) == []
