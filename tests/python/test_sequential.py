"""Sequential: fit/predict/evaluate/summary/save, the training loop's behaviour and its bad input."""

from __future__ import annotations

import math
import re

import nncore
import numpy as np
import pytest
from nncore import Dense, ReLU, Sequential, Tanh
from nncore.datasets import load_digits
from nncore.losses import CrossEntropy
from nncore.optim import SGD, Adam, StepLR


def _blobs(n=120, features=4, classes=3, seed=0, dtype=np.float32):
    """Well separated Gaussian blobs (the same centres for every seed): an easy problem."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centers = np.random.default_rng(1234).normal(0, 3, (classes, features))
    x = (centers[labels] + rng.normal(0, 0.5, (n, features))).astype(dtype)
    return x, labels


def _classifier(features=4, classes=3, hidden=16, dtype=np.float32):
    return Sequential([Dense(features, hidden, dtype=dtype), ReLU(), Dense(hidden, classes, dtype=dtype)])


def _weights(model):
    return [p.copy() for p, _ in model.parameters()]


class Scale(nncore.Layer):
    """A user's numpy layer with a parameter, listed through parameters() (optimizer-updated)."""

    def __init__(self, n):
        super().__init__()
        self.scale = np.ones(n, dtype=np.float32)
        self.scale_gradient = np.zeros_like(self.scale)

    def forward(self, input):
        self.input = input
        self.output = input * self.scale
        return self.output

    def backward(self, output_gradient, learning_rate=None):
        self.scale_gradient[...] = np.sum(output_gradient * self.input, axis=0)
        return output_gradient * self.scale

    def parameters(self):
        return [(self.scale, self.scale_gradient)]


class ClassicShift(nncore.Layer):
    """A classic user layer that updates itself from the learning rate (no parameters())."""

    def __init__(self, n):
        super().__init__()
        self.shift = np.zeros(n)
        self.seen_learning_rates = []

    def forward(self, input):
        self.input = input
        self.output = input + self.shift
        return self.output

    def backward(self, output_gradient, learning_rate):
        self.seen_learning_rates.append(learning_rate)
        self.shift -= learning_rate * np.sum(output_gradient, axis=0)
        return output_gradient


# -- fit: results ------------------------------------------------------------------------------
def test_fit_learns_and_returns_a_history_of_every_metric():
    x, y = _blobs()
    nncore.seed(0)
    model = _classifier()
    history = model.fit(x, y, epochs=5, batch_size=16, loss="cross_entropy", optimizer=Adam(0.01),
                        validation_data=_blobs(seed=1), verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert all(len(values) == 5 for values in history.history.values())
    assert history.epoch == [0, 1, 2, 3, 4]
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.9
    assert model.evaluate(*_blobs(seed=2))["accuracy"] > 0.9


def test_fit_on_real_digits_reaches_a_useful_accuracy():
    (x_train, y_train), (x_test, y_test) = load_digits()
    x_train = x_train[:3000].reshape(3000, -1).astype(np.float32) / 255
    x_test = x_test.reshape(len(x_test), -1).astype(np.float32) / 255
    nncore.seed(0)
    model = Sequential([Dense(784, 64, init="he_uniform"), ReLU(), Dense(64, 10)])
    model.fit(x_train, y_train[:3000], epochs=3, batch_size=32, loss="cross_entropy", optimizer="adam", verbose=0)
    assert model.evaluate(x_test, y_test)["accuracy"] > 0.88


def test_regression_history_has_no_accuracy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], dtype=np.float32)
    model = Sequential([Dense(3, 1)])
    history = model.fit(x, y, epochs=30, batch_size=8, loss="mse", optimizer=SGD(0.05), verbose=0)
    assert set(history.history) == {"loss", "lr"}
    assert history.history["loss"][-1] < 1e-3 < history.history["loss"][0]


def test_same_seed_gives_bit_identical_weights_including_dropout():
    x, y = _blobs()

    def run():
        nncore.seed(3)
        model = Sequential([Dense(4, 16), ReLU(), nncore.Dropout(0.3), Dense(16, 3)])
        model.fit(x, y, epochs=3, batch_size=10, loss="cross_entropy", optimizer=Adam(0.01), seed=11, verbose=0)
        return _weights(model)

    first, second = run(), run()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_different_fit_seeds_shuffle_differently():
    x, y = _blobs()
    results = []
    for fit_seed in (1, 2):
        nncore.seed(3)
        model = _classifier()
        model.fit(x, y, epochs=1, batch_size=10, loss="cross_entropy", optimizer=SGD(0.1), seed=fit_seed, verbose=0)
        results.append(_weights(model))
    assert not np.array_equal(results[0][0], results[1][0])


def test_unshuffled_fit_equals_a_manual_loop_with_a_partial_last_batch():
    x, y = _blobs(n=10)
    nncore.seed(0)
    model = _classifier()
    nncore.seed(0)
    reference = _classifier()
    optimizer = SGD(0.1, momentum=0.9)
    model.fit(x, y, epochs=2, batch_size=4, loss="cross_entropy", optimizer=optimizer, shuffle=False, verbose=0)
    assert optimizer.iterations == 6  # batches of 4, 4 and 2, twice

    loss = CrossEntropy()
    manual = SGD(0.1, momentum=0.9)
    for _ in range(2):
        for start in (0, 4, 8):
            out = reference.forward(x[start : start + 4], training=True)
            _, gradient = loss.value_and_gradient(y[start : start + 4], out)
            reference.backward(gradient)
            manual.step(reference.parameters())
    for a, b in zip(_weights(model), _weights(reference)):
        np.testing.assert_array_equal(a, b)


def test_fit_again_with_the_same_optimizer_continues_its_state():
    x, y = _blobs(n=40)
    nncore.seed(0)
    once = _classifier()
    nncore.seed(0)
    twice = _classifier()
    once.fit(x, y, epochs=2, batch_size=8, loss="cross_entropy", optimizer=Adam(0.01), shuffle=False, verbose=0)
    optimizer = Adam(0.01)
    twice.fit(x, y, epochs=1, batch_size=8, loss="cross_entropy", optimizer=optimizer, shuffle=False, verbose=0)
    twice.fit(x, y, epochs=1, batch_size=8, optimizer=optimizer, shuffle=False, verbose=0)
    assert optimizer.iterations == 10
    for a, b in zip(_weights(once), _weights(twice)):
        np.testing.assert_array_equal(a, b)
    # Without arguments, fit reuses the previous loss and optimizer.
    twice.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert twice.optimizer is optimizer and optimizer.iterations == 15


def test_validation_split_holds_out_the_last_samples():
    x, y = _blobs(n=50)
    model = _classifier()
    history = model.fit(x, y, epochs=1, batch_size=8, loss="cross_entropy", optimizer=SGD(0.05),
                        validation_split=0.2, verbose=0)
    held_out = model.evaluate(x[-10:], y[-10:])
    assert history.history["val_loss"][0] == pytest.approx(held_out["loss"], rel=1e-6)
    assert history.history["val_accuracy"][0] == held_out["accuracy"]
    assert model.optimizer.iterations == 5  # 40 training samples in batches of 8


def test_user_layers_train_beside_native_ones():
    x, y = _blobs(n=60)
    nncore.seed(0)
    scale, shift = Scale(16), ClassicShift(16)
    model = Sequential([Dense(4, 16), scale, shift, Tanh(), Dense(16, 3)])
    history = model.fit(x, y, epochs=10, batch_size=12, loss="cross_entropy", optimizer=SGD(0.05), verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert not np.all(scale.scale == 1)  # the optimizer updated the listed parameter
    assert not np.all(shift.shift == 0)  # the classic layer updated itself
    assert set(shift.seen_learning_rates) == {0.05}


def test_float64_end_to_end():
    x, y = _blobs(dtype=np.float64)
    model = _classifier(dtype=np.float64)
    model.fit(x.astype(np.float32), y, epochs=1, loss="cross_entropy", optimizer="sgd", verbose=0)
    assert model.dtype == np.float64
    assert model.predict(x).dtype == np.float64
    assert all(p.dtype == np.float64 for p, _ in model.parameters())


def test_scheduler_in_callbacks_steps_once_per_epoch():
    x, y = _blobs(n=20)
    optimizer = SGD(0.1)
    history = _classifier().fit(x, y, epochs=4, batch_size=10, loss="cross_entropy", optimizer=optimizer,
                                callbacks=[StepLR(optimizer, step_size=2, gamma=0.5)], verbose=0)
    assert history.history["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.05])
    assert optimizer.lr == pytest.approx(0.025)


def test_two_schedulers_or_a_callback_listed_twice_are_refused():
    # They used to combine silently: the last scheduler set the rate, a repeated one stepped twice.
    from nncore.callbacks import EarlyStopping
    from nncore.optim import CosineAnnealingLR

    x, y = _blobs(n=20)
    model = _classifier()
    weights = model[0].weights.copy()
    optimizer = SGD(0.1)
    step = StepLR(optimizer, step_size=1, gamma=0.5)
    cases = [
        ([step, CosineAnnealingLR(optimizer, T_max=4)], "at most one learning-rate scheduler, got StepLR and CosineAnnealingLR"),
        ([step, step], "StepLR is listed twice"),
        ([EarlyStopping(monitor="loss")] * 2, "EarlyStopping is listed twice"),
    ]
    for callbacks, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            model.fit(x, y, epochs=2, loss="cross_entropy", optimizer=optimizer, callbacks=callbacks, verbose=0)
    assert optimizer.lr == 0.1 and step.last_epoch == 0 and np.array_equal(model[0].weights, weights)


def test_non_finite_loss_stops_with_the_epoch_and_batch():
    x = np.full((8, 2), 1e18, dtype=np.float32)
    y = np.zeros((8, 1), dtype=np.float32)
    nncore.seed(0)
    model = Sequential([Dense(2, 1)])
    with pytest.raises(FloatingPointError, match=r"loss became (inf|nan) at epoch 1, batch [12] of 2 \(samples"):
        model.fit(x, y, epochs=3, batch_size=4, loss="mse", optimizer=SGD(1.0), verbose=0)
    assert all(layer.training is False for layer in model.layers)


def test_cross_entropy_after_softmax_warns():
    x, y = _blobs(n=8)
    model = Sequential([Dense(4, 3), nncore.Softmax()])
    with pytest.warns(UserWarning, match="expects logits"):
        model.fit(x, y, loss="cross_entropy", verbose=0)


# -- verbosity ---------------------------------------------------------------------------------
def test_verbose_levels(capsys):
    x, y = _blobs(n=20)
    model = _classifier()
    model.fit(x, y, epochs=2, batch_size=5, loss="cross_entropy", verbose=0)
    assert capsys.readouterr().out == ""
    model.fit(x, y, epochs=3, batch_size=5, validation_split=0.25, verbose=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert re.match(r"Epoch 1/3 - [\d.]+s - loss: [\d.]+ - accuracy: [\d.]+ - val_loss: [\d.]+ - val_accuracy: [\d.]+ - lr: ", lines[0])
    model.fit(x, y, epochs=2, batch_size=5, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "4/4" in out and "loss=" in out


# -- predict, evaluate, summary ----------------------------------------------------------------
def test_predict_in_chunks_equals_one_pass_and_disables_dropout():
    nncore.seed(0)
    model = Sequential([Dense(4, 32), ReLU(), nncore.Dropout(0.5), Dense(32, 3)])
    x, _ = _blobs(n=37)
    whole = model.predict(x)
    # Dropout keeps this network on the Python path, where each chunk is its own product: the GEMM
    # picks its kernel by the number of rows (5 vs 37), so sums may round differently.
    np.testing.assert_allclose(model.predict(x, batch_size=5), whole, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.predict(x), whole)  # dropout off: deterministic
    assert whole.shape == (37, 3)


def test_evaluate_in_chunks_weights_by_samples():
    x, y = _blobs(n=23)
    model = _classifier()
    whole = model.evaluate(x, y, loss="cross_entropy")
    chunked = model.evaluate(x, y, batch_size=4, loss="cross_entropy")
    assert chunked["loss"] == pytest.approx(whole["loss"], rel=1e-5)
    assert chunked["accuracy"] == whole["accuracy"]
    logits = model.predict(x).astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    expected = np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(23), y])
    assert whole["loss"] == pytest.approx(expected, rel=1e-5)
    assert whole["accuracy"] == np.mean(np.argmax(logits, axis=1) == y)


def test_summary_lists_shapes_and_parameter_counts():
    model = Sequential([Dense(784, 256), ReLU(), nncore.Dropout(0.2), Dense(256, 10)])
    text = model.summary(print_fn=None)
    assert "(None, 256)" in text and "(None, 10)" in text
    assert "200,960" in text and "2,570" in text and "Total parameters: 203,530" in text
    flat = Sequential([nncore.Flatten(), Dense(12, 2)]).summary((3, 4), print_fn=None)
    assert "(None, 12)" in flat and "(None, 2)" in flat


def test_sequential_works_with_the_classic_functions():
    model = _classifier()
    x, _ = _blobs(n=5)
    np.testing.assert_array_equal(nncore.predict(model, x), model.predict(x))
    assert len(model) == 3 and isinstance(model[0], Dense)


# -- save / load -------------------------------------------------------------------------------
def test_save_and_load_round_trip(tmp_path):
    x, y = _blobs()
    nncore.seed(0)
    model = Sequential([Dense(4, 8), nncore.LeakyReLU(0.1), nncore.Dropout(0.25), Dense(8, 3)])
    model.fit(x, y, epochs=2, loss="cross_entropy", verbose=0)
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = nncore.load(path)
    assert isinstance(loaded, Sequential)
    assert [type(layer) for layer in loaded] == [type(layer) for layer in model]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    for a, b in zip(_weights(model), _weights(loaded)):
        assert a.tobytes() == b.tobytes()


# -- plotting ----------------------------------------------------------------------------------
def test_history_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    x, y = _blobs(n=20)
    history = _classifier().fit(x, y, epochs=3, loss="cross_entropy", validation_split=0.25, verbose=0)
    path = tmp_path / "curves.png"
    figure = history.plot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(figure.axes) == 2
    with pytest.raises(ValueError, match="empty"):
        _classifier().fit(x, y, epochs=0, loss="cross_entropy", verbose=0).plot()


def test_history_plot_replaces_a_file_atomically_and_names_what_it_cannot_plot(tmp_path, monkeypatch):
    matplotlib_figure = pytest.importorskip("matplotlib.figure")
    from nncore.history import History

    history = History()
    history.append(0, {"loss": 1.0, "lr": 0.1})
    history.append(1, {"loss": 0.5, "lr": 0.1})
    path = tmp_path / "curves.svg"
    history.plot(path)
    old = path.read_bytes()
    assert b"<svg" in old  # the format follows the extension

    def fail_half_way(self, stream, **kwargs):
        stream.write(b"partial")
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(matplotlib_figure.Figure, "savefig", fail_half_way)
    with pytest.raises(OSError, match="No space left"):
        history.plot(path)
    monkeypatch.undo()
    assert path.read_bytes() == old and [p.name for p in tmp_path.iterdir()] == ["curves.svg"]
    history.plot(tmp_path / "no-extension")  # as savefig with a path: the default format's extension
    assert (tmp_path / "no-extension.png").read_bytes()[:4] == b"\x89PNG"
    only_lr = History()
    only_lr.append(0, {"lr": 0.1})
    with pytest.raises(ValueError, match=r"no loss or accuracy to plot, only \['lr'\]"):
        only_lr.plot()


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"loss": "hinge"}, ValueError, "hinge"),
        ({"loss": 3}, TypeError, "loss"),
        ({"optimizer": "adagrad"}, ValueError, "adagrad"),
        ({"optimizer": SGD}, TypeError, "optimizer"),
        ({"batch_size": 0}, ValueError, "batch_size > 0"),
        ({"batch_size": 2.5}, TypeError, "batch_size"),
        ({"epochs": -1}, ValueError, "epochs >= 0"),
        ({"verbose": 3}, ValueError, "verbose"),
        ({"validation_split": 1.0}, ValueError, "validation_split"),
        ({"validation_split": 0.001}, ValueError, "leaves 0 for validation"),
        ({"validation_split": 0.2, "validation_data": _blobs(n=5)}, ValueError, "not both"),
        ({"validation_data": np.zeros(3)}, TypeError, r"\(x_val, y_val\)"),
        ({"callbacks": [print]}, TypeError, "callbacks"),
        ({"shuffle": "yes"}, TypeError, "shuffle"),
    ],
)
def test_fit_rejects_bad_arguments(kwargs, error, message):
    x, y = _blobs(n=20)
    arguments = {"loss": "cross_entropy", "verbose": 0, **kwargs}
    with pytest.raises(error, match=message):
        _classifier().fit(x, y, **arguments)


def test_fit_rejects_bad_data():
    x, y = _blobs(n=20)
    model = _classifier()
    with pytest.raises(ValueError, match=r"x has 20 samples .* but y has 19"):
        model.fit(x, y[:19], loss="cross_entropy", verbose=0)
    with pytest.raises(ValueError, match=r"label|range"):
        model.fit(x, np.where(y == 0, 3, y), loss="cross_entropy", verbose=0)
    with pytest.raises(ValueError, match="expected input of shape \\(batch, 4\\)"):
        model.fit(x[:, :3], y, loss="cross_entropy", verbose=0)
    with pytest.raises(ValueError, match="NaN"):
        model.fit(np.where(x > 1, np.nan, x), y, loss="cross_entropy", verbose=0)
    with pytest.raises(ValueError, match="no samples"):
        model.fit(x[:0], y[:0], loss="cross_entropy", verbose=0)
    with pytest.raises(TypeError, match="complex"):
        model.fit(x.astype(np.complex64), y, loss="cross_entropy", verbose=0)
    with pytest.raises(ValueError, match="no loss given"):
        _classifier().evaluate(x, y)
    with pytest.raises(ValueError, match="no loss given"):
        _classifier().fit(x, y, verbose=0)


def test_sequential_rejects_what_is_not_a_list_of_layers():
    with pytest.raises(TypeError, match="list of layers"):
        Sequential(Dense(2, 2))
    with pytest.raises(ValueError, match="no layers"):
        Sequential([])
    with pytest.raises(TypeError, match="forward/backward"):
        Sequential([Dense(2, 2), "relu"])
    with pytest.raises(ValueError, match="batch_size > 0"):
        _classifier().predict(np.zeros((2, 4)), batch_size=0)


def test_predict_leaves_every_layer_in_inference_mode_on_every_path():
    # The engine's one-call path sets `training` in C++ (engine.predict_rows); its first call, the
    # chunked path and the Python path (a layer the engine does not run) in Python.
    class Scale(nncore.Layer):
        def forward(self, input):
            return input * 2

        def backward(self, output_gradient, learning_rate=None):
            return output_gradient * 2

    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    for layers in ([Dense(4, 8), ReLU(), Dense(8, 3)], [Dense(4, 8), Scale(), Dense(8, 3)]):
        model = Sequential(layers)
        for batch_size in (None, None, None, 2):  # first call, remembered plan, again, chunked
            for layer in model.layers:
                layer.training = True
            model.predict(x, batch_size=batch_size)
            assert [layer.training for layer in model.layers] == [False] * 3


def test_a_failed_fit_leaves_the_model_in_inference_mode():
    model = Sequential([Dense(4, 8), nncore.Dropout(0.5), Dense(8, 3)])
    x, y = _blobs(n=10)
    with pytest.raises(ValueError):
        model.fit(x, np.full(10, 7), loss="cross_entropy", verbose=0)
    assert not any(layer.training for layer in model.layers)
    assert math.isfinite(model.evaluate(x, y, loss="cross_entropy")["loss"])


def test_load_state_is_all_or_nothing():
    nncore.seed(0)
    source = Sequential([Dense(4, 8), ReLU(), Dense(8, 3)])
    target = Sequential([Dense(4, 8), ReLU(), Dense(8, 5)])  # the last layer does not fit
    before = target.copy_state()
    with pytest.raises(ValueError, match=r"must have shape \(5, 8\).*got shape \(3, 8\)"):
        target.load_state(source.copy_state())
    for old, now in zip(before, target.copy_state()):
        assert old.keys() == now.keys() and all(np.array_equal(old[k], now[k]) for k in old)
    target.load_state(before)  # and a fitting state loads
    with pytest.raises(ValueError, match="expected 3 layer states, got 2"):
        target.load_state(before[:2])


@pytest.mark.parametrize("case", ["label", "negative label", "validation features", "validation label"])
def test_fit_refuses_bad_targets_and_validation_data_before_training(case):
    rng = np.random.default_rng(0)
    x, y = rng.random((100, 4), dtype=np.float32), rng.integers(0, 3, 100)
    validation = None
    if case == "label":
        y[95], message = 7, r"class label 7 of sample 95 is outside 0..2"
    elif case == "negative label":
        y[40], message = -1, r"class label -1 of sample 40 is outside 0..2"
    elif case == "validation features":
        validation, message = (x[:10, :3], y[:10]), r"\(validation data\): the first 10 samples do not go through"
    else:
        validation, message = (x[:10], np.full(10, 9)), r"\(validation data\).*label 9"
    nncore.seed(0)
    model = Sequential([Dense(4, 8), ReLU(), Dense(8, 3)])
    before = model.copy_state()
    with pytest.raises(ValueError, match=message):
        model.fit(x, y, batch_size=10, shuffle=False, loss="cross_entropy", validation_data=validation, verbose=0)
    assert all(np.array_equal(a[k], b[k]) for a, b in zip(before, model.copy_state()) for k in a)
