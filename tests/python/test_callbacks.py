"""EarlyStopping and ModelCheckpoint, driven both directly and through fit."""

from __future__ import annotations

import nncore
import numpy as np
import pytest
from nncore import Dense, ReLU, Sequential
from nncore.callbacks import Callback, EarlyStopping, ModelCheckpoint
from nncore.optim import SGD


def _model():
    return Sequential([Dense(3, 8), ReLU(), Dense(8, 2)])


def _data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def _drive(callback, model, values, monitor="val_loss"):
    """Feed a sequence of monitored values to a callback the way fit does; returns the epoch
    after which training stopped (or None)."""
    callback.set_model(model)
    model.stop_training = False
    callback.on_train_begin()
    stopped = None
    for epoch, value in enumerate(values):
        callback.on_epoch_end(epoch, {"loss": 1.0, monitor: value})
        if model.stop_training:
            stopped = epoch
            break
    callback.on_train_end({})
    return stopped


@pytest.mark.parametrize(
    "values, patience, min_delta, stopped",
    [
        ([1.0, 0.9, 0.8, 0.7], 0, 0.0, None),  # always improving
        ([1.0, 1.1, 0.5], 0, 0.0, 1),  # patience 0 stops at the first miss
        ([1.0, 1.1, 1.2, 0.5], 2, 0.0, 2),  # two misses in a row
        ([1.0, 1.1, 0.9, 1.0, 1.0], 2, 0.0, 4),  # the counter resets on improvement
        ([1.0, 0.99, 0.98], 1, 0.05, 1),  # improvements below min_delta do not count
    ],
)
def test_early_stopping_patience_and_min_delta(values, patience, min_delta, stopped):
    callback = EarlyStopping(patience=patience, min_delta=min_delta)
    assert _drive(callback, _model(), values) == stopped
    assert callback.stopped_epoch == stopped


def test_early_stopping_maximises_accuracies():
    callback = EarlyStopping(monitor="val_accuracy", patience=1)
    assert _drive(callback, _model(), [0.5, 0.6, 0.55], monitor="val_accuracy") == 2
    assert callback.best == 0.6 and callback.best_epoch == 1


def test_early_stopping_restores_the_best_weights():
    model = _model()
    callback = EarlyStopping(patience=1, restore_best_weights=True)
    callback.set_model(model)
    callback.on_train_begin()
    snapshots = []
    for epoch, value in enumerate([1.0, 0.5, 0.7]):
        for parameter, _ in model.parameters():
            parameter += 1.0  # "training" changes the weights every epoch
        snapshots.append([p.copy() for p, _ in model.parameters()])
        callback.on_epoch_end(epoch, {"val_loss": value})
    assert model.stop_training
    callback.on_train_end({})
    for restored, best in zip(model.parameters(), snapshots[1]):
        np.testing.assert_array_equal(restored[0], best)


def test_early_stopping_in_fit_stops_training():
    x, y = _data()
    history = _model().fit(x, y, epochs=20, batch_size=8, loss="cross_entropy", optimizer=SGD(0.0),
                           callbacks=[EarlyStopping(monitor="loss", patience=2, min_delta=1e-6)], verbose=0)
    # lr 0: the loss never changes (but for rounding: each epoch sums its batches in a new shuffled
    # order, so min_delta ignores differences in the last bits), so epoch 0 sets the best and
    # epochs 1, 2 are the two misses.
    assert len(history.epoch) == 3


def test_monitoring_a_value_that_is_not_logged_is_an_error():
    x, y = _data()
    with pytest.raises(ValueError, match=r"'val_loss' is not logged .*validation_data"):
        _model().fit(x, y, epochs=2, loss="cross_entropy", callbacks=[EarlyStopping()], verbose=0)
    with pytest.raises(ValueError, match="'val_acc' is not logged"):
        _model().fit(x, y, epochs=1, loss="cross_entropy", validation_split=0.25,
                     callbacks=[ModelCheckpoint("unused", monitor="val_acc", save_best_only=True)], verbose=0)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"patience": -1}, ValueError),
        ({"patience": 1.5}, ValueError),
        ({"min_delta": -0.1}, ValueError),
        ({"min_delta": "0.1"}, TypeError),
        ({"min_delta": float("nan")}, ValueError),
        ({"mode": "up"}, ValueError),
        ({"monitor": 3}, TypeError),
        ({"restore_best_weights": "False"}, TypeError),  # used to be taken as True
        ({"restore_best_weights": 1}, TypeError),
    ],
)
def test_early_stopping_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        EarlyStopping(**kwargs)


def test_numpy_numbers_and_bools_are_accepted():
    assert EarlyStopping(min_delta=np.float32(0.25)).best == np.inf
    assert EarlyStopping(min_delta=np.int64(0), restore_best_weights=np.True_).restore_best_weights is True
    assert ModelCheckpoint("unused", save_best_only=np.False_).save_best_only is False
    with pytest.raises(TypeError, match="save_best_only to be a bool, got str"):
        ModelCheckpoint("unused", save_best_only="no")
    with pytest.raises(TypeError, match="ModelCheckpoint: expected a file path"):
        ModelCheckpoint(None)
    assert ModelCheckpoint("./ckpt-{epoch}.safetensors").path == "./ckpt-{epoch}.safetensors"  # as given


def test_checkpoint_every_epoch_with_a_path_template(tmp_path):
    x, y = _data()
    model = _model()
    template = str(tmp_path / "ckpt-{epoch:02d}-{loss:.3f}.safetensors")
    checkpoint = ModelCheckpoint(template, monitor="loss")
    model.fit(x, y, epochs=3, batch_size=8, loss="cross_entropy", callbacks=[checkpoint], verbose=0)
    assert len(checkpoint.saved) == 3
    assert [p.split("ckpt-")[1][:2] for p in checkpoint.saved] == ["01", "02", "03"]
    final = nncore.load(checkpoint.saved[-1])
    np.testing.assert_array_equal(final.predict(x), model.predict(x))


def test_checkpoint_save_best_only_keeps_the_best_model(tmp_path):
    model = _model()
    path = tmp_path / "best.safetensors"
    checkpoint = ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    checkpoint.set_model(model)
    checkpoint.on_train_begin()
    x, _ = _data()
    expected = None
    for epoch, value in enumerate([1.0, 0.5, 0.8]):
        for parameter, _ in model.parameters():
            parameter *= 0.5
        if value == 0.5:
            expected = model.predict(x)
        checkpoint.on_epoch_end(epoch, {"val_loss": value})
    assert len(checkpoint.saved) == 2
    np.testing.assert_array_equal(nncore.load(path).predict(x), expected)


def test_checkpoint_save_best_only_keeps_its_best_across_fits(tmp_path):
    # A second fit that only gets worse must not replace the best file of the first.
    nncore.seed(0)
    x, y = _data()
    model = _model()
    path = tmp_path / "best.safetensors"
    checkpoint = ModelCheckpoint(path, monitor="loss", save_best_only=True)
    _drive(checkpoint, model, [1.0, 0.5], monitor="loss")
    best = model.predict(x)
    for parameter, _ in model.parameters():
        parameter *= 0.5
    _drive(checkpoint, model, [0.8, 0.6], monitor="loss")
    assert checkpoint.best == 0.5 and len(checkpoint.saved) == 2
    np.testing.assert_array_equal(nncore.load(path).predict(x), best)
    optimizer = SGD(0.1)
    model.fit(x, y, epochs=2, loss="cross_entropy", optimizer=optimizer, callbacks=[checkpoint], verbose=0)
    assert checkpoint.best == 0.5 and len(checkpoint.saved) == 2  # losses near 0.7: no improvement


def test_checkpoint_path_with_an_unknown_name_is_an_error(tmp_path):
    x, y = _data()
    with pytest.raises(ValueError, match="cannot fill in path"):
        _model().fit(x, y, epochs=1, loss="cross_entropy", verbose=0,
                     callbacks=[ModelCheckpoint(str(tmp_path / "{val_accuracy}.safetensors"), monitor="loss")])


def test_user_callback_sees_every_hook_in_order():
    events = []

    class Recorder(Callback):
        def on_train_begin(self):
            events.append("begin")

        def on_epoch_begin(self, epoch):
            events.append(f"epoch {epoch}")

        def on_epoch_end(self, epoch, logs):
            events.append(f"end {epoch} {sorted(logs)}")
            if epoch == 1:
                self.model.stop_training = True

        def on_train_end(self, logs):
            events.append("done")

    x, y = _data()
    _model().fit(x, y, epochs=5, loss="cross_entropy", callbacks=[Recorder()], verbose=0)
    assert events == [
        "begin",
        "epoch 0",
        "end 0 ['accuracy', 'loss', 'lr']",
        "epoch 1",
        "end 1 ['accuracy', 'loss', 'lr']",
        "done",
    ]
