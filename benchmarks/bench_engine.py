"""Engine vs Python path: seconds per epoch of the MNIST MLP 784-256-128-10 (ReLU, cross-entropy),
single-sample predict latency. Usage: python benchmarks/bench_engine.py [MNIST_DIR] [--threads N]

Reports medians; never used as a test (the machines are noisy)."""

import argparse
import statistics
import time

import nncore
import numpy as np
from nncore import Dense, ReLU, Sequential, engine
from nncore.optim import SGD, Adam

parser = argparse.ArgumentParser()
parser.add_argument("data", nargs="?", default=None)
parser.add_argument("--threads", type=int, default=nncore.get_num_threads())
parser.add_argument("--epochs", type=int, default=3)
args = parser.parse_args()
nncore.set_num_threads(args.threads)

if args.data:
    (x, y), _ = nncore.datasets.load_mnist(args.data)
    x = x.reshape(len(x), -1).astype(np.float32) / 255
else:
    rng = np.random.default_rng(0)
    x, y = rng.random((60000, 784), dtype=np.float32), rng.integers(0, 10, 60000)


def model():
    nncore.seed(0)
    return Sequential([Dense(784, 256, init="he_uniform"), ReLU(), Dense(256, 128, init="he_uniform"), ReLU(), Dense(128, 10)])


print(f"threads={args.threads} isa={nncore.cpu_info()['isa']}")
for name, make_opt in (("sgd momentum", lambda: SGD(0.05, momentum=0.9)), ("adam", lambda: Adam(1e-3))):
    for batch in (32, 64, 256):
        row = []
        for use in (False, True):
            engine.set_enabled(use)
            m, opt = model(), make_opt()
            times = []
            for _ in range(args.epochs):
                t = time.perf_counter()
                h = m.fit(x, y, epochs=1, batch_size=batch, loss="cross_entropy", optimizer=opt, verbose=0)
                times.append(time.perf_counter() - t)
            row.append((statistics.median(times), h.history["accuracy"][-1]))
        print(f"{name:13s} batch {batch:3d}: python {row[0][0]:.3f} s/epoch, engine {row[1][0]:.3f} s/epoch "
              f"({row[0][0] / row[1][0]:.1f}x), train acc {row[0][1]:.4f} / {row[1][1]:.4f}")

m = model()
sample = x[:1]
for use in (False, True):
    engine.set_enabled(use)
    for _ in range(2000):
        m.predict(sample)
    reps = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(2000):
            m.predict(sample)
        reps.append((time.perf_counter() - t) / 2000)
    runner = m._nncore_engine[1] if use else None
    raw = ""
    if runner is not None:
        out = np.empty((1, 10), np.float32)
        t = time.perf_counter()
        for _ in range(20000):
            runner.predict(sample, out)
        raw = f", raw Engine.predict {(time.perf_counter() - t) / 20000 * 1e6:.1f} us"
    print(f"single-sample predict ({'engine' if use else 'python'}): {statistics.median(reps) * 1e6:.1f} us{raw}")
engine.set_enabled(None)
