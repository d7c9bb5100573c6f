"""The native engine against the layer-by-layer Python path: bit-identical parameters, gradients,
histories and optimizer states from the same seed, for every loss, optimizer, activation, dtype,
batch layout and thread count; fallback for what the engine does not run; clear errors."""

from __future__ import annotations

import itertools

import nncore
import numpy as np
import pytest
from nncore import GELU, Dense, Dropout, Flatten, LeakyReLU, ReLU, Sequential, Sigmoid, Tanh, _core, engine
from nncore.optim import SGD, Adam, AdamW, RMSprop, StepLR


@pytest.fixture(autouse=True)
def _restore_engine_switch():
    yield
    engine.set_enabled(None)


def _data(n, features, outputs, loss, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(dtype)
    if loss == "cross_entropy":
        return x, rng.integers(0, outputs, n)
    if loss == "cross_entropy_probabilities":
        p = rng.random((n, outputs)).astype(dtype)
        return x, p / p.sum(axis=1, keepdims=True)
    if loss in ("binary_cross_entropy", "binary_cross_entropy_logits"):
        return x, (rng.random((n, outputs)) > 0.5).astype(dtype)
    return x, rng.normal(size=(n, outputs)).astype(dtype)


def _model(activations, dtype, features=6, outputs=3, last=None):
    sizes = [features, 9, 5, outputs][: len(activations) + 2]
    layers = []
    for i, act in enumerate(activations):
        layers += [Dense(sizes[i], sizes[i + 1], dtype=dtype), act()]
    layers.append(Dense(sizes[len(activations)], outputs, dtype=dtype))
    if last is not None:
        layers.append(last())
    return Sequential(layers)


def _snapshot(model, opt):
    arrays = [a.copy() for pair in model.parameters() for a in pair]
    state = [
        (slot.steps, {name: a.copy() for name, a in slot.arrays.items()})
        for slot in sorted(opt._state.values(), key=lambda s: [id(p) for p, _ in model.parameters()].index(id(s.param)))
    ]
    return arrays, state, opt.iterations


def _fit(use_engine, build, x, y, threads=None, fits=1, **kwargs):
    engine.set_enabled(use_engine)
    previous = nncore.get_num_threads()
    if threads:
        nncore.set_num_threads(threads)
    try:
        nncore.seed(7)
        model, opt = build()
        histories = [model.fit(x, y, optimizer=opt, seed=11 + i, verbose=0, **kwargs).history for i in range(fits)]
        assert (getattr(model, "_nncore_engine", None) is not None) == use_engine  # no silent fallback
        return _snapshot(model, opt), histories, model
    finally:
        nncore.set_num_threads(previous)


def _assert_identical(a, b, rtol=None):
    """Two ``_fit`` results bit for bit, or within ``rtol`` (relative to each array's largest value)."""
    (arrays_a, state_a, it_a), hist_a, _ = a
    (arrays_b, state_b, it_b), hist_b, _ = b

    def same(p, q, what=""):
        if rtol is None:
            assert p.dtype == q.dtype and p.tobytes() == q.tobytes(), what
        else:
            np.testing.assert_allclose(p, q, rtol=rtol, atol=rtol * np.abs(q).max(), err_msg=what)

    assert it_a == it_b
    if rtol is None:
        assert hist_a == hist_b
    else:
        for ha, hb in zip(hist_a, hist_b):
            for key in ha:
                np.testing.assert_allclose(ha[key], hb[key], rtol=rtol)
    assert len(arrays_a) == len(arrays_b)
    for p, q in zip(arrays_a, arrays_b):
        same(p, q)
    assert len(state_a) == len(state_b)
    for (steps_a, sa), (steps_b, sb) in zip(state_a, state_b):
        assert steps_a == steps_b and sa.keys() == sb.keys()
        for name in sa:
            same(sa[name], sb[name], name)


LOSSES = ["cross_entropy", "cross_entropy_probabilities", "mse", "mae", "binary_cross_entropy_logits"]
OPTIMIZERS = [
    lambda: SGD(0.05),
    lambda: SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda: Adam(0.01),
    lambda: Adam(0.01, weight_decay=1e-2, clip_norm=0.3),
    lambda: AdamW(0.01, clip_norm=1.0),
    lambda: RMSprop(0.01, momentum=0.5, centered=True, weight_decay=1e-3),
    lambda: RMSprop(0.005),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("make_opt", OPTIMIZERS)
def test_fit_is_bit_identical_to_the_python_path(dtype, loss, make_opt):
    x, y = _data(37, 6, 3, loss, dtype)
    name = "cross_entropy" if loss.startswith("cross_entropy") else loss

    def build():
        return _model([ReLU, Tanh], dtype), make_opt()

    kwargs = dict(epochs=3, batch_size=8, loss=name)  # 37 = 4 * 8 + 5: a partial last batch
    _assert_identical(_fit(True, build, x, y, **kwargs), _fit(False, build, x, y, **kwargs))


@pytest.mark.parametrize(
    "activations",
    [[ReLU], [Tanh], [Sigmoid], [lambda: LeakyReLU(0.1)], [GELU], [lambda: GELU("tanh")], [ReLU, GELU], []],
)
@pytest.mark.parametrize("batch_size,shuffle", [(1, True), (5, False), (16, True), (64, True)])
def test_every_activation_and_batch_layout(activations, batch_size, shuffle):
    x, y = _data(41, 6, 3, "mse", np.float32, seed=3)

    def build():
        return _model(activations, np.float32), SGD(0.02, momentum=0.8)

    kwargs = dict(epochs=2, batch_size=batch_size, loss="mse", shuffle=shuffle)
    _assert_identical(_fit(True, build, x, y, **kwargs), _fit(False, build, x, y, **kwargs))


def test_binary_cross_entropy_on_probabilities():
    x, y = _data(30, 6, 2, "binary_cross_entropy", np.float64)

    def build():
        return _model([Tanh], np.float64, outputs=2, last=Sigmoid), Adam(0.01)

    kwargs = dict(epochs=3, batch_size=7, loss="binary_cross_entropy")
    _assert_identical(_fit(True, build, x, y, **kwargs), _fit(False, build, x, y, **kwargs))


@pytest.mark.parametrize("threads", [1, 2])
def test_one_and_two_threads_are_identical_to_each_other_and_to_python(threads):
    # Big enough that the GEMMs and elementwise kernels really split over two threads.
    x, y = _data(300, 200, 10, "cross_entropy", np.float32)

    def build():
        return Sequential([Dense(200, 300), ReLU(), Dense(300, 10)]), SGD(0.05, momentum=0.9, clip_norm=2.0)

    kwargs = dict(epochs=1, batch_size=128, loss="cross_entropy")
    reference = _fit(False, build, x, y, threads=1, **kwargs)
    _assert_identical(_fit(True, build, x, y, threads=threads, **kwargs), reference)


def test_state_continues_across_fits_schedulers_and_validation():
    x, y = _data(50, 6, 3, "cross_entropy", np.float32)
    val = _data(20, 6, 3, "cross_entropy", np.float32, seed=9)

    def run(use_engine):
        engine.set_enabled(use_engine)
        nncore.seed(2)
        model, opt = _model([ReLU], np.float32), Adam(0.02)
        scheduler = StepLR(opt, step_size=1, gamma=0.5)
        histories = [
            model.fit(x, y, epochs=2, batch_size=8, loss="cross_entropy", optimizer=opt, validation_data=val,
                      callbacks=[scheduler], seed=s, verbose=0).history
            for s in (1, 2)
        ]
        return _snapshot(model, opt), histories, model

    a, b = run(True), run(False)
    _assert_identical(a, b)
    assert a[2].evaluate(*val) == b[2].evaluate(*val)


def test_mixing_the_engine_and_the_python_path_between_fits():
    x, y = _data(40, 6, 3, "cross_entropy", np.float32)

    def run(switches):
        nncore.seed(4)
        model, opt = _model([Tanh], np.float32), SGD(0.1, momentum=0.9)
        for i, use_engine in enumerate(switches):
            engine.set_enabled(use_engine)
            model.fit(x, y, epochs=1, batch_size=6, loss="cross_entropy", optimizer=opt, seed=i, verbose=0)
        return _snapshot(model, opt), [], model

    _assert_identical(run([True, False, True]), run([False, False, False]))


def test_predict_and_evaluate_are_identical():
    x, y = _data(2500, 6, 3, "cross_entropy", np.float32)  # more rows than the engine's 1024-row chunk
    nncore.seed(0)
    model = _model([ReLU, GELU], np.float32)
    engine.set_enabled(True)
    fast, fast_eval = model.predict(x), model.evaluate(x, y, loss="cross_entropy")
    one = model.predict(x[:1])
    engine.set_enabled(False)
    assert fast.tobytes() == model.predict(x).tobytes()
    assert fast_eval == model.evaluate(x, y, loss="cross_entropy")
    assert one.tobytes() == model.predict(x[:1]).tobytes()


def test_flatten_in_front_and_column_inputs():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(20, 3, 4)).astype(np.float32)
    labels = rng.integers(0, 3, 20)

    def build():
        return Sequential([Flatten(), Dense(12, 8), ReLU(), Dense(8, 3)]), SGD(0.1)

    kwargs = dict(epochs=2, batch_size=6, loss="cross_entropy")
    a, b = _fit(True, build, images, labels, **kwargs), _fit(False, build, images, labels, **kwargs)
    _assert_identical(a, b)
    engine.set_enabled(True)
    fast = a[2].predict(images)
    engine.set_enabled(False)
    assert fast.tobytes() == a[2].predict(images).tobytes()

    columns = rng.normal(size=(20, 6, 1)).astype(np.float32)
    targets = rng.normal(size=(20, 3, 1)).astype(np.float32)

    def build_mse():
        return _model([Tanh], np.float32), SGD(0.05)

    _assert_identical(_fit(True, build_mse, columns, targets, epochs=2, batch_size=4, loss="mse"),
                      _fit(False, build_mse, columns, targets, epochs=2, batch_size=4, loss="mse"))


def test_the_engine_is_really_used_and_the_switch_turns_it_off(monkeypatch):
    x, y = _data(20, 6, 3, "cross_entropy", np.float32)
    nncore.seed(0)
    model = _model([ReLU], np.float32)
    model.fit(x, y, epochs=1, loss="cross_entropy", optimizer=SGD(0.1), verbose=0)
    assert getattr(model, "_nncore_engine", None) is not None
    assert model.layers[0].input is None  # documented: the engine does not store layer inputs

    monkeypatch.setenv("NNCORE_ENGINE", "0")
    assert not engine.enabled()
    nncore.seed(0)
    other = _model([ReLU], np.float32)
    other.fit(x, y, epochs=1, loss="cross_entropy", optimizer=SGD(0.1), verbose=0)
    assert getattr(other, "_nncore_engine", None) is None
    assert other.layers[0].input is not None


@pytest.mark.parametrize("use_engine", [True, False])
def test_nan_stop_names_the_same_epoch_and_batch(use_engine):
    x, y = _data(40, 6, 3, "mse", np.float32)
    x[23] = 1e30  # finite, but its loss overflows to inf
    engine.set_enabled(use_engine)
    nncore.seed(0)
    model = _model([ReLU], np.float32)
    with pytest.raises(FloatingPointError) as info:
        model.fit(x, y, epochs=2, batch_size=8, loss="mse", optimizer=SGD(0.01), shuffle=False, verbose=0)
    engine.set_enabled(not use_engine)
    nncore.seed(0)
    other = _model([ReLU], np.float32)
    with pytest.raises(FloatingPointError) as other_info:
        other.fit(x, y, epochs=2, batch_size=8, loss="mse", optimizer=SGD(0.01), shuffle=False, verbose=0)
    assert str(info.value) == str(other_info.value)
    assert "epoch 1, batch 3 of 5" in str(info.value)
    for (p, _), (q, _) in zip(model.parameters(), other.parameters()):
        assert p.tobytes() == q.tobytes()


def test_networks_the_engine_does_not_run_fall_back_and_work():
    x, y = _data(30, 6, 3, "cross_entropy", np.float32)

    class Double(nncore.Layer):
        def forward(self, input):
            self.input = input
            return input * 2

        def backward(self, output_gradient, learning_rate=None):
            return output_gradient * 2

    for layers in (
        [Dense(6, 8), ReLU(), Dropout(0.2), Dense(8, 3)],
        [Dense(6, 8), Double(), Dense(8, 3)],
        [Dense(6, 8), nncore.Activation(np.tanh, lambda v: 1 - np.tanh(v) ** 2), Dense(8, 3)],
        [Dense(6, 8), ReLU(), Tanh(), Dense(8, 3)],
    ):
        model = Sequential(layers)
        history = model.fit(x, y, epochs=2, batch_size=8, loss="cross_entropy", optimizer="adam", verbose=0)
        assert np.isfinite(history.history["loss"]).all()
        assert getattr(model, "_nncore_engine", None) is None
        assert model.predict(x).shape == (30, 3)


def test_bad_input_still_gives_clear_errors():
    nncore.seed(0)
    model = _model([ReLU], np.float32)
    x, y = _data(10, 6, 3, "cross_entropy", np.float32)
    with pytest.raises(ValueError, match=r"class label 5 of sample 0 is outside 0..2"):
        model.fit(x, np.full(10, 5), epochs=1, loss="cross_entropy", optimizer="sgd", verbose=0)
    with pytest.raises(ValueError, match=r"shape"):
        model.fit(x[:, :4], y, epochs=1, loss="cross_entropy", optimizer="sgd", verbose=0)
    with pytest.raises(ValueError, match=r"y_true has shape"):
        model.fit(x, np.zeros((10, 2), np.float32), epochs=1, loss="mse", optimizer="sgd", verbose=0)
    with pytest.raises(ValueError, match=r"\(batch, 6\)"):
        model.predict(np.zeros((3, 5), np.float32))
    with pytest.raises(TypeError):
        model.predict(np.zeros((3, 6), dtype=complex))


def test_engine_binding_checks_its_arguments():
    dense = Dense(4, 3)
    spec = [(dense.weights, dense.bias, dense.weights_gradient, dense.bias_gradient, "relu", 0.0)]
    runner = nncore._core.Engine(spec)
    assert (runner.input_size, runner.output_size, runner.dtype) == (4, 3, np.float32)
    with pytest.raises(TypeError, match="float32"):
        runner.predict(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        runner.predict(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="no rows"):
        runner.predict(np.zeros((0, 4), np.float32))
    with pytest.raises(ValueError, match="unknown activation"):
        nncore._core.Engine([spec[0][:4] + ("swish", 0.0)])
    with pytest.raises(ValueError, match="unknown loss"):
        runner.run_epoch(np.zeros((2, 4), np.float32), np.zeros((2, 3), np.float32), None, 1, "hinge")
    with pytest.raises(ValueError, match="out of range"):
        runner.run_epoch(np.zeros((2, 4), np.float32), np.array([0, 3]), None, 1, "cross_entropy")
    with pytest.raises(ValueError, match="permutation"):
        runner.run_epoch(np.zeros((2, 4), np.float32), np.array([0, 1]), np.array([0, 1, 2]), 1, "cross_entropy")
    with pytest.raises(ValueError, match="state"):
        runner.run_epoch(np.zeros((2, 4), np.float32), np.array([0, 1]), None, 1, "cross_entropy", "adam", {"lr": 0.1})
    for optimizer, hyper in ((None, {}), ("sgd_step", {"lr": 0.1})):
        with pytest.raises(ValueError, match=f"sparse_input=True needs optimizer sgd, adam, adamw or rmsprop, got {optimizer}"):
            runner.run_epoch(np.zeros((2, 4), np.float32), np.array([0, 1]), None, 1, "cross_entropy", optimizer, hyper,
                             sparse_input=True)
    read_only = dense.weights.copy()
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        nncore._core.Engine([(read_only,) + spec[0][1:]])
    with pytest.raises(ValueError, match="inputs"):
        other = Dense(5, 2)
        nncore._core.Engine(spec + [(other.weights, other.bias, other.weights_gradient, other.bias_gradient, "identity", 0.0)])


# -- the classic train / predict ------------------------------------------------------------------
def _classic(use_engine, layers, loss, prime, x, y, **kwargs):
    engine.set_enabled(use_engine)
    nncore.seed(5)
    network = layers()
    history = nncore.train(network, loss, prime, x, y, verbose=False, **kwargs)
    params = [a.tobytes() for layer in network for pair in layer.parameters() for a in pair]
    return history, params, nncore.predict(network, x)


@pytest.mark.parametrize("columns,batch_size,shuffle,dtype", [
    (True, 1, False, np.float32), (True, 1, True, np.float64), (False, 1, True, np.float32),
    (True, 3, True, np.float32), (False, 4, False, np.float64),
    (False, 2, True, np.float32),  # 23 samples: the last mini-batch has one row (the rank-1 step)
])
def test_classic_train_is_bit_identical(columns, batch_size, shuffle, dtype):
    rng = np.random.default_rng(1)
    x = rng.random((23, 12)).astype(dtype)
    y = np.eye(4, dtype=dtype)[rng.integers(0, 4, 23)]
    if columns:
        x, y = x[..., None], y[..., None]

    def layers():
        return [Dense(12, 7, dtype=dtype), Tanh(), Dense(7, 4, dtype=dtype), Tanh()]

    kwargs = dict(epochs=4, learning_rate=0.1, batch_size=batch_size, shuffle=shuffle)
    fast = _classic(True, layers, nncore.mse, nncore.mse_prime, x, y, **kwargs)
    slow = _classic(False, layers, nncore.mse, nncore.mse_prime, x, y, **kwargs)
    assert fast[0] == slow[0] and fast[1] == slow[1]
    assert fast[2].tobytes() == slow[2].tobytes() and fast[2].shape == slow[2].shape


def test_classic_binary_cross_entropy_and_single_sample_predict():
    rng = np.random.default_rng(2)
    x = rng.random((15, 5, 1))
    y = (rng.random((15, 1, 1)) > 0.5).astype(np.float64)

    def layers():
        return [Dense(5, 4, dtype=np.float64), ReLU(), Dense(4, 1, dtype=np.float64), Sigmoid()]

    fast = _classic(True, layers, nncore.binary_cross_entropy, nncore.binary_cross_entropy_prime, x, y, epochs=5,
                    learning_rate=0.5)
    slow = _classic(False, layers, nncore.binary_cross_entropy, nncore.binary_cross_entropy_prime, x, y, epochs=5,
                    learning_rate=0.5)
    assert fast[0] == slow[0] and fast[1] == slow[1]
    network = layers()
    for sample in (x[0], x[0].ravel()):
        engine.set_enabled(True)
        a = nncore.predict(network, sample)
        engine.set_enabled(False)
        b = nncore.predict(network, sample)
        assert a.shape == b.shape and a.tobytes() == b.tobytes()


def _own_train(network, x, y, epochs, learning_rate):
    """The original classic training loop, written out by a user around nncore's ``predict``."""
    for _ in range(epochs):
        for sample, target in zip(x, y):
            output = nncore.predict(network, sample)
            gradient = nncore.mse_prime(target, output)
            for layer in reversed(network):
                gradient = layer.backward(gradient, learning_rate)


@pytest.mark.parametrize("columns", [True, False])
def test_a_users_own_loop_around_predict_trains_as_on_the_python_path(columns):
    # predict runs on the engine, which keeps no layer inputs: the backward that follows must still
    # see this sample's (a forward run earlier by hand must not be used instead).
    rng = np.random.default_rng(4)
    x = rng.random((9, 5, 1) if columns else (9, 1, 5)).astype(np.float32)
    y = rng.random((9, 2, 1) if columns else (9, 1, 2)).astype(np.float32)
    results = []
    for use_engine in (True, False):
        engine.set_enabled(use_engine)
        nncore.seed(3)
        network = [Dense(5, 4), Tanh(), Dense(4, 2), Sigmoid()]
        nncore.predict(network, x[-1] + 1)  # an earlier Python forward (engine off) or prediction
        output = x[-1]
        for layer in network:  # ... and one by hand
            output = layer.forward(output)
        _own_train(network, x, y, epochs=3, learning_rate=0.2)
        results.append([a.tobytes() for layer in network for pair in layer.parameters() for a in pair])
    assert results[0] == results[1]
    # A fresh network: the first backward follows an engine predict and no forward at all.
    engine.set_enabled(True)
    network = [Dense(5, 3), ReLU(), Dense(3, 2)]
    output = nncore.predict(network, x[0])
    assert network[2].backward(np.ones_like(output), 0.1).shape == ((3, 1) if columns else (1, 3))
    # A forward by hand after the prediction is what that layer's backward then uses.
    network = [Dense(5, 3), ReLU(), Dense(3, 2)]
    nncore.predict(network, x[0])
    network[1].forward(np.full((3, 1) if columns else (1, 3), -1.0, np.float32))
    assert not network[1].backward(np.ones((3, 1) if columns else (1, 3), np.float32)).any()


@pytest.mark.parametrize("tie", ["weights", "bias_view"])
def test_layers_sharing_memory_train_as_on_the_python_path(tie):
    # Tied weights: each layer's backward steps the shared array in turn on the layer-by-layer path,
    # which the per-sample engine (holding a layer's step until its next forward) would not do.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 3, 1)), rng.uniform(-0.5, 0.5, size=(6, 3, 1))
    results = []
    for use_engine in (True, False):
        engine.set_enabled(use_engine)
        nncore.seed(0)
        d1, d2 = Dense(3, 3, dtype=np.float64), Dense(3, 3, dtype=np.float64)
        if tie == "weights":
            d2.weights = d1.weights
        else:  # layer 2's bias is part of layer 1's weights
            d2.bias = d1.weights[1]
        network = [d1, Tanh(), d2]
        assert not use_engine or engine.plan(network).shares_memory
        nncore.train(network, nncore.mse, nncore.mse_prime, x, y, epochs=3, learning_rate=0.2, verbose=False)
        results.append([d1.weights.tobytes(), d2.weights.tobytes(), d1.bias.tobytes(), d2.bias.tobytes()])
    assert results[0] == results[1]
    engine.set_enabled(True)
    assert not engine.plan([Dense(3, 3), Tanh(), Dense(3, 3)]).shares_memory  # separate arrays: the engine


def test_classic_nan_stop_is_the_same():
    x = np.ones((6, 3, 1), np.float32)
    x[4] = 1e30
    y = np.zeros((6, 2, 1), np.float32)
    messages, arrays = [], []
    for use_engine in (True, False):
        engine.set_enabled(use_engine)
        nncore.seed(0)
        network = [Dense(3, 2)]
        with pytest.raises(FloatingPointError) as info:
            nncore.train(network, nncore.mse, nncore.mse_prime, x, y, epochs=2, learning_rate=0.01, verbose=False)
        messages.append(str(info.value))
        # Parameters and gradients as the last finished sample left them (the per-sample engine
        # path applies its pending update and writes dW before it reports the stop).
        arrays.append([a.tobytes() for pair in network[0].parameters() for a in pair])
    assert arrays[0] == arrays[1]
    # Sample 4 overflows: its loss is inf where the ISA sums in float (scalar), else the loss is
    # still finite in double and the next sample diverges. Either way both paths agree.
    assert messages[0] == messages[1] and ("samples 4..4" in messages[0] or "samples 5..5" in messages[0])


def test_classic_train_with_a_user_loss_falls_back():
    x = np.random.default_rng(0).random((8, 3, 1)).astype(np.float32)
    network = [Dense(3, 2), Tanh()]
    history = nncore.train(network, lambda t, p: float(np.mean((t - p) ** 2)), lambda t, p: 2 * (p - t) / p.size,
                           x, x[:, :2], epochs=3, learning_rate=0.1, verbose=False)
    assert len(history) == 3 and network[0].input is not None


def test_no_workspace_growth_over_many_steps():
    x, y = _data(256, 20, 4, "cross_entropy", np.float32)
    nncore.seed(0)
    model = Sequential([Dense(20, 32), ReLU(), Dense(32, 4)])
    model.fit(x, y, epochs=1, batch_size=32, loss="cross_entropy", optimizer=Adam(), verbose=0)
    runner = model._nncore_engine[1]
    held = runner.workspace_bytes
    model.fit(x, y, epochs=5, batch_size=32, loss="cross_entropy", optimizer=Adam(), verbose=0)
    assert runner is model._nncore_engine[1] and runner.workspace_bytes == held


def test_many_configurations_quickly():
    """A broad sweep: every pairing of loss and optimizer family on a tiny float64 net."""
    for loss, make_opt in itertools.product(["mse", "cross_entropy"], [OPTIMIZERS[1], OPTIMIZERS[3], OPTIMIZERS[5]]):
        x, y = _data(9, 6, 3, loss, np.float64, seed=4)

        def build(make_opt=make_opt):
            return _model([LeakyReLU], np.float64), make_opt()

        kwargs = dict(epochs=2, batch_size=4, loss=loss)
        _assert_identical(_fit(True, build, x, y, fits=2, **kwargs), _fit(False, build, x, y, fits=2, **kwargs))


def test_concurrent_predict_through_one_engine_matches_serial():
    import threading

    nncore.seed(0)
    model = Sequential([Dense(64, 200), ReLU(), Dense(200, 10)])
    rng = np.random.default_rng(1)
    inputs = [rng.normal(size=(n, 64)).astype(np.float32) for n in (1, 7, 300, 1500)]
    serial = [model.predict(x) for x in inputs]
    assert model._nncore_engine is not None
    results: list[list[np.ndarray]] = [[] for _ in inputs]

    def work(i):
        for _ in range(20):
            results[i].append(model.predict(inputs[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for expected, got in zip(serial, results):
        assert len(got) == 20 and all(g.tobytes() == expected.tobytes() for g in got)


# -- the remembered predictor (single-sample predict skips re-planning) ---------------------------
def _python_predict(network, x):
    engine.set_enabled(False)
    try:
        return nncore.predict(network, x) if isinstance(network, list) else network.predict(x)
    finally:
        engine.set_enabled(None)


@pytest.mark.parametrize("classic", [False, True])
def test_remembered_predictor_sees_every_change_to_the_layers(classic, monkeypatch):
    rng = np.random.default_rng(3)
    nncore.seed(1)
    layers = [Dense(6, 5), ReLU(), Dense(5, 3)]
    network = layers if classic else Sequential(layers)
    layers = layers if classic else network.layers  # the list the network reads
    x = rng.normal(size=(6, 1) if classic else (1, 6)).astype(np.float32)

    def check():
        got = nncore.predict(network, x) if classic else network.predict(x)
        want = _python_predict(network, x)
        assert got.shape == want.shape and got.tobytes() == want.tobytes()
        return got

    first = check()
    assert check().tobytes() == first.tobytes()
    layers[0].weights[0, 0] += 1.0  # in place: the engine reads the same memory
    check()
    layers[0].weights = rng.normal(size=(5, 6)).astype(np.float32)  # a new array
    check()
    layers[2].bias = np.ones(3, np.float32)
    check()
    layers[1] = LeakyReLU(0.3)  # another activation object
    check()
    layers[1]._alpha = 0.05  # a changed slope
    check()
    layers[1] = Tanh()
    check()
    layers.insert(2, Dense(5, 5))
    layers.insert(3, Sigmoid())
    check()
    layers[:] = [Dense(6, 3, dtype=np.float64)]  # another dtype: the input is then converted
    out = nncore.predict(network, x) if classic else network.predict(x)
    assert out.dtype == np.float64
    # The switches still apply at once.
    engine.set_enabled(False)
    check()
    engine.set_enabled(None)
    monkeypatch.setenv("NNCORE_ENGINE", "0")
    assert not engine.enabled()
    monkeypatch.setenv("NNCORE_ENGINE", "1")
    assert engine.enabled()


def test_the_one_call_fast_path_refuses_what_it_cannot_run_as_is():
    # predict_if_current answers only for plain C-contiguous rows (or, when asked, one column) of
    # the engine's dtype and unchanged layers; None sends the caller to its general path.
    nncore.seed(2)
    model = Sequential([Dense(6, 4), ReLU(), Dense(4, 3)])
    rows = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    want = model.predict(rows)
    _, names_expected, (plan, runner) = model._nncore_predictor[1:]
    names, expected = names_expected

    def fast(x, column=False):
        return runner.predict_if_current(model.layers, names, expected, x, column)

    assert fast(rows).tobytes() == want.tobytes()
    # With inference_mode it also sets every layer's training to False (Sequential.predict's).
    for layer in model.layers:
        layer.training = True
    fast(rows)
    assert all(layer.training for layer in model.layers)
    assert runner.predict_if_current(model.layers, names, expected, rows, False, True).tobytes() == want.tobytes()
    assert not any(layer.training for layer in model.layers)
    column = np.ascontiguousarray(rows[:1].T)
    assert fast(column) is None
    assert fast(column, column=True).shape == (3, 1)
    assert fast(column, column=True).tobytes() == want[:1].tobytes()

    class Subclass(np.ndarray):
        pass

    for refused in (rows.view(Subclass), np.asfortranarray(rows), rows.astype(np.float64), rows[:, :5].copy(),
                    rows[:0], rows[::2], rows.tolist(), rows[0]):
        assert fast(refused) is None
    model.layers[0].weights = model.layers[0].weights.copy()  # a new array: the plan is stale
    assert fast(rows) is None
    assert model.predict(rows).tobytes() == want.tobytes()


def test_remembered_list_predictor_does_not_keep_the_network_alive():
    import gc
    import weakref

    network = [Dense(4, 2), Tanh()]
    nncore.predict(network, np.ones((4, 1), np.float32))
    first = weakref.ref(network[0])
    del network
    gc.collect()
    assert first() is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_parameters_start_on_cache_lines(dtype, tmp_path):
    # The kernels stream parameters in 64-byte vectors; numpy alone aligns to 16 bytes.
    layers = [Dense(13, 7, dtype=dtype), Tanh()]
    nncore.Sequential(layers).save(tmp_path / "m.safetensors")
    for dense in (layers[0], nncore.load(tmp_path / "m.safetensors").layers[0]):
        for array in (dense.weights, dense.bias, dense.weights_gradient, dense.bias_gradient):
            assert array.ctypes.data % 64 == 0 and array.flags.c_contiguous and array.flags.writeable


def test_single_sample_sgd_step_is_the_rank_one_update():
    # Dense.backward(g, lr) on one sample: weights += (-lr g) x^T, close to weights - lr * dW.
    rng = np.random.default_rng(9)
    for dtype in (np.float32, np.float64):
        dense = Dense(11, 5, dtype=dtype)
        before = dense.weights.copy()
        x = rng.normal(size=(1, 11)).astype(dtype)
        g = rng.normal(size=(1, 5)).astype(dtype)
        dense.forward(x)
        dense.backward(g, 0.25)
        want = before.astype(np.float64) - 0.25 * np.outer(g[0], x[0])
        np.testing.assert_allclose(dense.weights, want, rtol=4 * np.finfo(dtype).eps, atol=4 * np.finfo(dtype).eps)
        np.testing.assert_array_equal(dense.weights_gradient, np.outer(g[0], x[0]).astype(dtype))


@pytest.mark.parametrize("huge", [2**63 - 1, 2**63 + 5, 2**64])
def test_a_batch_size_beyond_int64_is_one_batch_of_everything(huge):
    # The engine counts batches in int64: (n + batch_size - 1) overflowed, and 2**64 did not convert.
    rng = np.random.default_rng(0)
    x, y = rng.random((20, 4), dtype=np.float32), rng.integers(0, 3, 20)
    results = []
    for batch_size in (20, huge):
        nncore.seed(0)
        model = Sequential([Dense(4, 8), ReLU(), Dense(8, 3)])
        history = model.fit(x, y, batch_size=batch_size, epochs=2, loss="cross_entropy", optimizer="sgd", verbose=0)
        network = [Dense(4, 3), Tanh()]
        errors = nncore.train(network, nncore.mse, nncore.mse_prime, x, np.eye(3, dtype=np.float32)[y], epochs=2,
                              batch_size=batch_size, verbose=False)
        results.append((history.history, model.evaluate(x, y, batch_size=batch_size), errors,
                        [a.tobytes() for a in (model[0].weights, network[0].weights)]))
    assert results[0] == results[1]


def test_a_cached_engine_follows_arrays_changed_in_place():
    # numpy lets code make an array read-only or reshape it in place; the engine holds raw pointers.
    x, y = np.ones((6, 4), np.float32), np.zeros((6, 8), np.float32)
    nncore.seed(0)
    model = Sequential([Dense(4, 8), Tanh()])
    model.fit(x, y, loss="mse", optimizer="sgd", verbose=0)
    model.predict(x[:1])
    weights = model[0].weights
    weights.flags.writeable = False
    before = weights.copy()
    with pytest.raises(ValueError, match="writable|read-only"):
        model.fit(x, y, loss="mse", optimizer="sgd", verbose=0)
    assert np.array_equal(weights, before)
    weights.flags.writeable = True
    model[0].weights_gradient.shape = (4, 8)  # the same values, now the wrong shape
    with pytest.raises(ValueError, match=r"\(4, 8\)"):
        model.fit(x, y, loss="mse", optimizer="sgd", verbose=0)
    model[0].weights_gradient.shape = (8, 4)
    network = [Dense(4, 8), Tanh()]
    for run in (lambda: nncore.predict(network, x[0]), lambda: model.predict(x[:1])):
        run()
        network[0].weights.shape = model[0].weights.shape = (2, 16)
        with pytest.raises(ValueError, match=r"weights of shape \(2, 16\)"):
            run()
        network[0].weights.shape = model[0].weights.shape = (8, 4)


def test_a_forward_or_backward_set_on_one_layer_object_is_run():
    # e.g. switching one activation off for an ablation: the engine would run the class's kernel.
    x = np.array([[1.0], [2.0]], np.float32)
    nncore.seed(0)
    network = [Dense(2, 3), Tanh(), Dense(3, 1)]
    model = Sequential(list(network))
    plain = nncore.predict(network, x)
    model.predict(x.T)  # both cached now
    network[1].forward = lambda value: np.zeros_like(value)
    assert engine.plan(network) is None
    expected = network[2].bias.reshape(1, 1)  # every hidden value zeroed: the last bias alone
    assert np.array_equal(nncore.predict(network, x), expected)
    assert np.array_equal(model.predict(x.T), expected)
    del network[1].forward
    assert np.array_equal(nncore.predict(network, x), plain)
    calls = []
    original = network[0].backward
    network[0].backward = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
    nncore.train(network, nncore.mse, nncore.mse_prime, x[None], np.ones((1, 1, 1), np.float32), epochs=2,
                 verbose=False)
    assert len(calls) == 2


def test_a_width_one_layer_gives_the_layer_paths_layout_on_the_engine():
    # A Dense with one input reads a (1, 1) value as a row, so from there a classic column sample
    # comes out as a row on the layer-by-layer path; the engine must agree (it kept the column).
    x = np.array([[0.5], [-0.25]], np.float32)
    results = []
    for use_engine in (True, False):
        engine.set_enabled(use_engine)
        nncore.seed(0)
        network = [Dense(2, 1), Tanh(), Dense(1, 3)]
        results.append(nncore.predict(network, x))
        results.append(nncore.predict(network, x[None]))
        with pytest.raises(ValueError, match=r"y_true has shape \(3, 1\) but y_pred has shape \(1, 3\)"):
            nncore.train(network, nncore.mse, nncore.mse_prime, x[None], np.zeros((1, 3, 1), np.float32), epochs=1,
                         verbose=False)
    assert [(r.shape, r.tobytes()) for r in results[:2]] == [(r.shape, r.tobytes()) for r in results[2:]]
    engine.set_enabled(True)
    assert engine.plan([Dense(2, 3), Tanh(), Dense(3, 2)]).columns_survive


def test_a_prediction_in_another_thread_does_not_replace_this_threads_forward():
    # The replay a classic predict leaves on the layers serves that thread's own loop only (a fit
    # running layer by layer in another thread must keep its inputs).
    import threading

    network = [Dense(4, 3), Tanh(), Dense(3, 2)]
    mine, other = np.full((1, 4), 0.5, np.float32), np.full((1, 4), -2.0, np.float32)
    output = mine
    for layer in network:
        output = layer.forward(output)
    thread = threading.Thread(target=lambda: nncore.predict(network, other))
    thread.start()
    thread.join()
    gradient = np.ones_like(output)
    for layer in reversed(network):
        gradient = layer.backward(gradient)
    assert network[0].input is mine


def test_models_and_layers_pickle_and_copy_after_the_engine_ran():
    import copy
    import pickle

    x, y = np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)
    model = Sequential([Dense(3, 2), Tanh()])
    model.fit(x, y, loss="mse", optimizer="sgd", verbose=0)
    expected = model.predict(x[:1])
    network = [Dense(3, 2), Tanh()]
    nncore.predict(network, x[0])
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert np.array_equal(clone.predict(x[:1]), expected)
        clone.fit(x, y, loss="mse", optimizer="sgd", verbose=0)
    for clone in (copy.deepcopy(network), pickle.loads(pickle.dumps(network))):
        assert np.array_equal(nncore.predict(clone, x[0]), nncore.predict(network, x[0]))


# -- the sparse-input path (inputs mostly zeros; see nncore.engine.sparse_input) -------------------
@pytest.fixture
def _restore_sparse_switch():
    yield
    engine.set_sparse_input(None)


def _mostly_zeros(n, features, outputs, dtype, density=0.15, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, features)).astype(dtype)
    x[rng.random((n, features)) >= density] = 0
    return x, rng.integers(0, outputs, n)


def test_sparse_input_is_chosen_by_the_share_of_nonzeros(_restore_sparse_switch):
    mostly_zeros, _ = _mostly_zeros(1000, 50, 3, np.float32, density=0.1)
    assert engine.sparse_input(mostly_zeros)
    assert not engine.sparse_input(np.ones((1000, 50), np.float32))
    assert not engine.sparse_input(np.zeros((0, 50), np.float32))
    engine.set_sparse_input(False)
    assert not engine.sparse_input(mostly_zeros)
    engine.set_sparse_input(True)
    assert engine.sparse_input(np.ones((10, 5), np.float32))
    engine.set_sparse_input(np.True_)
    assert engine.sparse_input(np.ones((10, 5), np.float32))
    engine.set_sparse_input(None)
    assert engine.sparse_input(mostly_zeros)
    for bad in (1, "yes", 0.5):
        with pytest.raises(TypeError, match="set_sparse_input: expected True, False or None, got"):
            engine.set_sparse_input(bad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [255, 256, 1030, 2500])
@pytest.mark.parametrize("threads", [1, 2])
def test_predict_and_evaluate_skipping_zero_inputs_give_the_dense_values(dtype, n, threads, _restore_sparse_switch):
    # Columns zero in whole 12-row tiles, as MNIST's pixels are, and a few -0.0 among the zeros.
    x, y = _zero_columns_often(n, 300, 5)
    x = x.astype(dtype)
    x[(x == 0) & (np.random.default_rng(3).random(x.shape) < 0.1)] = -0.0
    nncore.seed(1)
    model = Sequential([Dense(300, 70, dtype=dtype), ReLU(), Dense(70, 5, dtype=dtype)])
    before = nncore.get_num_threads()
    nncore.set_num_threads(threads)
    results = []
    try:
        for flag in (None, False):
            engine.set_sparse_input(flag)
            assert _core.skip_zero_inputs() == (flag is None)
            results.append((model.predict(x), model.evaluate(x, y, loss="cross_entropy"),
                            model.evaluate(x, y, batch_size=300, loss="cross_entropy")))
    finally:
        nncore.set_num_threads(before)
    (skipping, *skipping_eval), (dense, *dense_eval) = results
    # The same values; only a zero may change its sign (array_equal counts -0.0 == 0.0).
    assert np.array_equal(skipping, dense)
    assert skipping_eval == dense_eval


def test_predict_skipping_zero_inputs_keeps_nan_from_infinite_weights(_restore_sparse_switch):
    # 0 * inf is NaN in the dense product, so with a non-finite weight predict must not skip.
    x, _ = _zero_columns_often(600, 300, 3)
    zero_column = int(np.flatnonzero(~x.any(axis=0))[0])
    nncore.seed(2)
    model = Sequential([Dense(300, 20), ReLU(), Dense(20, 3)])
    model.layers[0].weights[4, zero_column] = np.inf
    engine.set_sparse_input(None)
    got = model.predict(x)
    engine.set_sparse_input(False)
    dense = model.predict(x)
    assert np.isnan(got).all() and np.isnan(dense).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make_opt", OPTIMIZERS[1:])
@pytest.mark.parametrize("activation", [ReLU, GELU])
def test_sparse_input_fit_matches_the_dense_path(dtype, make_opt, activation, _restore_sparse_switch):
    x, y = _mostly_zeros(150, 40, 4, dtype)

    def build():
        return Sequential([Dense(40, 24, dtype=dtype), activation(), Dense(24, 4, dtype=dtype)]), make_opt()

    kwargs = dict(epochs=3, batch_size=16, loss="cross_entropy")  # 150 = 9 * 16 + 6: a partial last batch
    engine.set_sparse_input(True)
    sparse = _fit(True, build, x, y, **kwargs)
    engine.set_sparse_input(False)
    dense = _fit(True, build, x, y, **kwargs)
    _assert_identical(sparse, dense, rtol=1e-4 if dtype == np.float32 else 1e-10)
    # The layer's gradient arrays hold the last step's, in their own layout.
    np.testing.assert_allclose(sparse[2].layers[0].weights_gradient, dense[2].layers[0].weights_gradient,
                               rtol=1e-3 if dtype == np.float32 else 1e-9, atol=1e-6)


# Clipping keeps layer 0's step out of its gradient kernel; without it the step runs there, per row
# of W^T (300 wide: a partial vector per row).
SPARSE_OPTIMIZERS = [
    lambda: SGD(0.05, momentum=0.9, clip_norm=2.0),
    lambda: SGD(0.05, momentum=0.9),
    lambda: Adam(0.01),
    lambda: RMSprop(0.01, momentum=0.5, centered=True),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("make_opt", SPARSE_OPTIMIZERS)
def test_sparse_input_is_identical_for_thread_counts_chunks_and_mnist_like_data(threads, make_opt, _restore_sparse_switch):
    x, y = _mostly_zeros(300, 200, 10, np.float32)
    assert engine.sparse_input(x)  # chosen by itself

    def build():
        return Sequential([Dense(200, 300), ReLU(), Dense(300, 10)]), make_opt()

    kwargs = dict(epochs=2, batch_size=64, loss="cross_entropy")
    reference = _fit(True, build, x, y, threads=1, **kwargs)
    _assert_identical(_fit(True, build, x, y, threads=threads, **kwargs), reference)
    # Chunked by the progress bar (verbose=1): the same bits.
    engine.set_enabled(True)
    nncore.seed(7)
    model, opt = build()
    model.fit(x, y, optimizer=opt, seed=11, verbose=1, **kwargs)
    for p, q in zip(_snapshot(model, opt)[0], reference[0][0]):
        assert p.tobytes() == q.tobytes()
    engine.set_sparse_input(False)
    _assert_identical(reference, _fit(True, build, x, y, threads=1, **kwargs), rtol=1e-4)


def _zero_columns_often(n, features, outputs, seed=0):
    # Columns whose inputs are zero in every row of many batches (as MNIST's border pixels are):
    # densities from 0 (never nonzero) to 0.3 across the columns. float32 rows and labels.
    rng = np.random.default_rng(seed)
    density = np.resize([0.0, 0.002, 0.01, 0.03, 0.1, 0.3], features)
    x = np.where(rng.random((n, features)) < density, rng.random((n, features)), 0).astype(np.float32)
    return x, rng.integers(0, outputs, n)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("options", [dict(momentum=0.9), dict(momentum=0.8, nesterov=True, weight_decay=1e-2),
                                     dict(weight_decay=1e-3), dict()])
@pytest.mark.parametrize("outputs", [24, 300])  # rows of W^T of whole vectors / with a partial vector
def test_sparse_input_sgd_defers_zero_gradient_steps_to_the_same_bits(threads, options, outputs, _restore_sparse_switch):
    # Without clipping, a row of W^T whose input is zero in a whole batch takes that step when the
    # row is next read (or at the end of the run); with clipping (here never scaling: the norm is far
    # below 1e30) every row steps every batch. Both give the same bits.
    x, y = _zero_columns_often(400, 60, 5)
    assert ((x[:16] != 0).sum(axis=0) == 0).sum() > 10  # many columns of a batch are all zeros

    def build(clip):
        return lambda: (Sequential([Dense(60, outputs), ReLU(), Dense(outputs, 5)]), SGD(0.05, clip_norm=clip, **options))

    engine.set_sparse_input(True)
    kwargs = dict(epochs=3, batch_size=16, loss="cross_entropy", threads=threads)
    deferred, every_batch = _fit(True, build(None), x, y, **kwargs), _fit(True, build(1e30), x, y, **kwargs)
    _assert_identical(deferred, every_batch)
    # The same again with the epochs run in chunks (verbose=1 reports progress between them).
    engine.set_enabled(True)
    nncore.seed(7)
    model, opt = build(None)()
    model.fit(x, y, optimizer=opt, seed=11, verbose=1, epochs=3, batch_size=16, loss="cross_entropy")
    for p, q in zip(_snapshot(model, opt)[0], every_batch[0][0]):
        assert p.tobytes() == q.tobytes()


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("make_opt", [lambda: SGD(0.1, momentum=0.9), lambda: Adam(1e36)])  # Adam: weights ~1e36 overflow
def test_sparse_input_nan_stop_leaves_the_arrays_in_their_layout(shuffle, make_opt, _restore_sparse_switch):
    # Layer 0's gradient of each step but a run's last is not stored on the sparse path: at a NaN
    # stop the engine forms the previous batch's again, which the layer must hold as on the dense path.
    x, y = _mostly_zeros(100, 30, 3, np.float32)
    x[70, 5] = 3e38  # finite, but its products overflow: the loss of its batch is not finite
    results, messages = [], []
    for sparse in (True, False):
        engine.set_sparse_input(sparse)
        nncore.seed(3)
        model = Sequential([Dense(30, 12), ReLU(), Dense(12, 3)])
        opt = make_opt()
        with pytest.raises(FloatingPointError, match="the loss became") as info:
            model.fit(x, y, optimizer=opt, loss="cross_entropy", batch_size=16, shuffle=shuffle, epochs=3, verbose=0)
        results.append(model)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    for a, b in zip(results[0].layers, results[1].layers):
        if isinstance(a, Dense):
            np.testing.assert_allclose(a.weights, b.weights, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(a.weights_gradient, b.weights_gradient, rtol=1e-4, atol=1e-6)


def test_sparse_input_batches_beyond_2_20_values_take_the_dense_path(_restore_sparse_switch):
    # 1800 rows of 600 values: 1.08e6 > 2^20, where the path's lists (room for every value, by rows
    # and by columns) would grow large; the engine then runs the dense kernels, bit for bit.
    x, y = _mostly_zeros(1800, 600, 3, np.float32)

    def build():
        return Sequential([Dense(600, 8), ReLU(), Dense(8, 3)]), SGD(0.05, momentum=0.9)

    kwargs = dict(epochs=1, batch_size=1800, loss="cross_entropy")
    engine.set_sparse_input(True)
    forced = _fit(True, build, x, y, **kwargs)
    engine.set_sparse_input(False)
    _assert_identical(forced, _fit(True, build, x, y, **kwargs))
    engine.set_sparse_input(True)  # 1600 rows of 600: within the limit, so not the dense path's bits
    kwargs["batch_size"] = 1600
    sparse = _fit(True, build, x, y, **kwargs)
    engine.set_sparse_input(False)
    dense = _fit(True, build, x, y, **kwargs)
    assert any(p.tobytes() != q.tobytes() for p, q in zip(sparse[0][0], dense[0][0]))
    _assert_identical(sparse, dense, rtol=1e-4)


# -- subnormals ---------------------------------------------------------------------------------
@pytest.fixture
def _restore_flush():
    yield
    engine.set_flush_denormals(True)


TINY32 = np.finfo(np.float32).tiny  # the smallest normal float32


@pytest.mark.parametrize("sparse", [False, True])
def test_training_flushes_subnormals_unless_asked_not_to(sparse, _restore_flush, _restore_sparse_switch):
    # A column of inputs 1e-17: its weights' gradients are ~1e-18, and Adam's second moments
    # (1 - beta2) g^2 ~ 1e-39 are subnormal, unless training flushes them to zero.
    x, y = _mostly_zeros(96, 20, 3, np.float32, density=0.5)
    x[:, 3] = 1e-17
    engine.set_sparse_input(sparse)

    def build():
        return Sequential([Dense(20, 8), ReLU(), Dense(8, 3)]), Adam(0.01)

    kwargs = dict(epochs=1, batch_size=16, loss="cross_entropy")
    runs = {}
    for flush in (True, False):
        engine.set_flush_denormals(flush)
        assert engine.flush_denormals() is flush
        runs[flush] = _fit(True, build, x, y, **kwargs)

    def subnormals(run):
        (arrays, state, _), _, _ = run
        values = arrays + [a for _, named in state for a in named.values()]
        return sum(int(np.count_nonzero((np.abs(a) > 0) & (np.abs(a) < TINY32))) for a in values)

    assert subnormals(runs[False]) > 0 and subnormals(runs[True]) == 0
    # Elsewhere the two runs agree (the flushed values are far below anything that matters).
    _assert_identical(runs[True], runs[False], rtol=1e-5)


def test_flushing_stays_inside_the_training_run(_restore_flush):
    x, y = _mostly_zeros(64, 10, 2, np.float32)
    model = Sequential([Dense(10, 4), ReLU(), Dense(4, 2)])
    model.fit(x, y, optimizer=Adam(0.01), epochs=1, batch_size=8, loss="cross_entropy", verbose=0)
    assert getattr(model, "_nncore_engine", None) is not None
    # The calling thread and the pool's workers compute subnormals again: numpy here, and exp split
    # over the threads (exp(-100) = 3.7e-44 in float32).
    assert np.float32(TINY32) * np.float32(0.5) > 0
    big = np.full(1 << 18, -100.0, dtype=np.float32)
    assert np.all(nncore.ops.exp(big) > 0)


@pytest.mark.parametrize("value", [1, None, "yes", 0.0])
def test_set_flush_denormals_rejects_non_bools(value):
    with pytest.raises(TypeError, match="set_flush_denormals: expected True or False"):
        engine.set_flush_denormals(value)
