"""Concurrency: one trained model used from several Python threads at once."""

from __future__ import annotations

import os
import threading

import nncore
import numpy as np
from nncore import Dense, Softmax, Tanh, mse, mse_prime, predict, train


def test_concurrent_predict_matches_serial():
    nncore.seed(0)
    rng = np.random.default_rng(0)
    network = [Dense(64, 96), Tanh(), Dense(96, 10), Softmax()]
    x_train = rng.standard_normal((32, 64))
    y_train = np.eye(10)[rng.integers(0, 10, 32)]
    train(
        network,
        mse,
        mse_prime,
        x_train,
        y_train,
        epochs=3,
        learning_rate=0.1,
        verbose=False,
        batch_size=8,
    )

    # each thread uses its own batch size and layout: rows, one column, columns, a 1-D vector
    inputs = [
        rng.standard_normal((200, 64)),
        rng.standard_normal((64, 1)),
        rng.standard_normal((17, 64, 1)),
        rng.standard_normal(64),
    ]
    serial = [predict(network, x) for x in inputs]
    iterations = 300
    results: list[list[np.ndarray]] = [[] for _ in inputs]
    errors: list[Exception] = []
    start = threading.Barrier(len(inputs))

    def worker(i: int) -> None:
        try:
            start.wait()
            for _ in range(iterations):
                results[i].append(predict(network, inputs[i]))
        except Exception as error:  # noqa: BLE001 (reported below, in the main thread)
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors
    for i, expected in enumerate(serial):
        assert len(results[i]) == iterations
        for got in results[i]:
            assert got.shape == expected.shape and np.array_equal(got, expected), f"thread {i}"


def test_predict_and_evaluate_from_another_thread_wait_for_a_layer_by_layer_fit():
    # Dropout keeps the model on the layer-by-layer path, where layers hold their forward inputs
    # for backward: a prediction in between would replace them.
    from nncore import Dropout, ReLU, Sequential
    from nncore.optim import SGD

    rng = np.random.default_rng(0)
    x, y = rng.random((600, 16), dtype=np.float32), rng.integers(0, 4, 600)

    def make():
        nncore.seed(0)
        return Sequential([Dense(16, 32), ReLU(), Dropout(0.0), Dense(32, 4)])

    def fit(model):
        model.fit(x, y, loss="cross_entropy", optimizer=SGD(0.1), epochs=2, batch_size=8, shuffle=False, verbose=0)

    serial = make()
    fit(serial)
    model = make()
    stop = threading.Event()
    outputs = []

    def other():
        while not stop.is_set():
            outputs.append(model.predict(x[:8]))
            model.evaluate(x[:8], y[:8], loss="cross_entropy")

    thread = threading.Thread(target=other)
    thread.start()
    try:
        fit(model)
    finally:
        stop.set()
        thread.join()
    assert outputs and np.array_equal(model[0].weights, serial[0].weights)


def _matmul_in_child(threads):
    started_with = nncore.get_num_threads()
    nncore.set_num_threads(threads)
    a = np.ones((256, 256), np.float32)
    return started_with, float(nncore.ops.matmul(a, a)[0, 0])


def test_a_forked_child_computes_and_exits(restore_threads):
    # The parent's pool threads do not exist in a fork child; it used to hang at exit or when it
    # changed the thread count (joining them).
    import multiprocessing

    nncore.set_num_threads(2)
    a = np.ones((256, 256), np.float32)
    nncore.ops.matmul(a, a)  # the parent's pool is running
    with multiprocessing.get_context("fork").Pool(1) as pool:
        # A child starts on one thread (unless NNCORE_NUM_THREADS says otherwise), so that a pool
        # of forked workers does not start every core's threads in each.
        started_with, value = pool.apply_async(_matmul_in_child, (3,)).get(timeout=60)
        assert value == 256.0 and (started_with == 1 or "NNCORE_NUM_THREADS" in os.environ)
        assert pool.apply_async(_matmul_in_child, (2,)).get(timeout=60) == (3, 256.0)


def test_save_and_copy_state_from_another_thread_wait_for_a_fit(tmp_path):
    # A save during a fit used to write weights half-way through an optimizer step (or fail its own
    # checksum). The callback holds the fit in an epoch until the other thread is about to save.
    from nncore import Sequential
    from nncore.callbacks import Callback
    from nncore.optim import SGD

    rng = np.random.default_rng(0)
    x, y = rng.random((64, 8), dtype=np.float32), rng.integers(0, 3, 64)
    nncore.seed(0)
    model = Sequential([Dense(8, 16), Tanh(), Dense(16, 3)])
    events: list[str] = []
    in_fit, saving = threading.Event(), threading.Event()

    class Pause(Callback):
        def on_epoch_end(self, epoch, logs):
            in_fit.set()
            saving.wait(5)
            threading.Event().wait(0.05)  # give the saver time to block on the model
            events.append(f"epoch {epoch}")

    def save():
        in_fit.wait(5)
        saving.set()
        model.save(tmp_path / "m.safetensors")
        events.append("saved")
        events.append(len(model.copy_state()))

    thread = threading.Thread(target=save)
    thread.start()
    model.fit(x, y, loss="cross_entropy", optimizer=SGD(0.1), epochs=2, batch_size=16, callbacks=[Pause()], verbose=0)
    events.append("fit done")
    thread.join()
    assert events[:2] == ["epoch 0", "epoch 1"] and "saved" in events
    np.testing.assert_array_equal(nncore.load(tmp_path / "m.safetensors").predict(x), model.predict(x))


def test_concurrent_layer_by_layer_predict_of_one_sample_and_a_batch():
    # Layer forwards used to keep per-call facts on the layer across the GIL-free kernel call
    # (Convolutional's one-sample flag): a batch came back as its first sample, a sample as a batch.
    from nncore import Convolutional, Reshape, Sigmoid

    nncore.seed(0)
    network = [Convolutional((2, 16, 16), 3, 4), Sigmoid(), Reshape((4, 14, 14), (784, 1)), Dense(784, 3)]
    rng = np.random.default_rng(0)
    inputs = [rng.random((2, 16, 16), dtype=np.float32), rng.random((32, 2, 16, 16), dtype=np.float32)]
    serial = [predict(network, x) for x in inputs]
    assert serial[0].shape == (3, 1) and serial[1].shape == (32, 3, 1)
    wrong: list[tuple[int, tuple[int, ...]]] = []

    def worker(i: int, iterations: int) -> None:
        for _ in range(iterations):
            y = predict(network, inputs[i])
            if not np.array_equal(y, serial[i]):
                wrong.append((i, y.shape))

    threads = [threading.Thread(target=worker, args=(0, 1500)), threading.Thread(target=worker, args=(1, 300))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert not wrong, wrong[:3]
