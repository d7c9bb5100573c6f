"""MNIST MLP benchmarks: nncore ``Sequential`` against the same 784-256-128-10 ReLU network in
PyTorch and scikit-learn's ``MLPClassifier``.

- ``run_training``: seconds per epoch (median over the timed epochs) and test accuracy after the
  last one, for SGD with momentum and for Adam at several batch sizes.
- ``run_inference``: single-sample predict latency (median microseconds) and batch throughput.
- ``run_memory``: peak RSS of a training run in a fresh subprocess against the dataset's size.
- ``run_determinism``: whether 1 and 2 threads give bit-identical weights after a short fit.

Every peer gets the same data, architecture, initialisation scheme (Glorot uniform weights;
nncore and PyTorch zero biases, scikit-learn draws its biases from the same uniform range, which
it does not let one change), loss (softmax cross-entropy, mean over the batch) and optimizer
settings, and the same thread count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

import nncore
from common import NOT_INSTALLED, compare, ratio, settle_time, sklearn, threads, time_epochs, torch

HIDDEN = (256, 128)
SGD_SETTINGS = {"lr": 0.01, "momentum": 0.9}
ADAM_SETTINGS = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}
MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"

Data = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def load_data(path: Optional[Path] = MNIST_DIR, n_train: int = 60000, n_test: int = 10000,
              seed: int = 0) -> tuple[Data, str]:
    """(x_train, y_train, x_test, y_test) as float32 rows in [0, 1] and int64 labels, and a note on
    where they came from: real MNIST from ``path`` when present, else random data of that shape."""
    if path is not None and Path(path).is_dir():
        try:
            (xa, ya), (xb, yb) = nncore.datasets.load_mnist(path)
            rows = lambda x: x.reshape(len(x), -1).astype(np.float32) / 255.0  # noqa: E731
            return ((rows(xa[:n_train]), ya[:n_train].astype(np.int64), rows(xb[:n_test]),
                     yb[:n_test].astype(np.int64)), f"real MNIST from {path}")
        except (FileNotFoundError, OSError, ValueError) as error:
            note = f"MNIST not readable ({error}); "
    else:
        note = f"MNIST not found at {path}; "
    rng = np.random.default_rng(seed)
    data = (rng.random((n_train, 784), dtype=np.float32), rng.integers(0, 10, n_train),
            rng.random((n_test, 784), dtype=np.float32), rng.integers(0, 10, n_test))
    return data, note + "random data of MNIST's shape (accuracies are meaningless)"


def _glorot(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_out, fan_in)).astype(np.float32)


def initial_weights(seed: int = 0, sizes: Sequence[int] = (784, *HIDDEN, 10)) -> list[tuple[np.ndarray, np.ndarray]]:
    """Glorot-uniform (out, in) weights and zero biases, shared by nncore and PyTorch."""
    rng = np.random.default_rng(seed)
    return [(_glorot(rng, a, b), np.zeros(b, np.float32)) for a, b in zip(sizes[:-1], sizes[1:])]


def nncore_model(weights: list[tuple[np.ndarray, np.ndarray]]) -> nncore.Sequential:
    layers: list[Any] = []
    for i, (w, b) in enumerate(weights):
        dense = nncore.Dense(w.shape[1], w.shape[0])
        dense.weights[...] = w
        dense.bias[...] = b
        layers.append(dense)
        if i + 1 < len(weights):
            layers.append(nncore.ReLU())
    return nncore.Sequential(layers)


def torch_model(weights: list[tuple[np.ndarray, np.ndarray]]) -> Any:
    layers: list[Any] = []
    for i, (w, b) in enumerate(weights):
        linear = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w))
            linear.bias.copy_(torch.from_numpy(b))
        layers.append(linear)
        if i + 1 < len(weights):
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def sklearn_model(optimizer: str, batch_size: int, seed: int = 0) -> Any:
    from sklearn.neural_network import MLPClassifier

    settings = SGD_SETTINGS if optimizer == "sgd" else ADAM_SETTINGS
    extra = ({"momentum": settings["momentum"], "nesterovs_momentum": False, "learning_rate": "constant"}
             if optimizer == "sgd" else
             {"beta_1": settings["betas"][0], "beta_2": settings["betas"][1], "epsilon": settings["eps"]})
    return MLPClassifier(hidden_layer_sizes=HIDDEN, activation="relu", solver=optimizer, alpha=0.0,
                         batch_size=batch_size, learning_rate_init=settings["lr"], shuffle=True,
                         random_state=seed, **extra)


# -- training ---------------------------------------------------------------------------------
# Each trainer returns (epoch, accuracy): ``epoch()`` trains one epoch over shuffled mini-batches,
# ``accuracy()`` is the test accuracy now. Epochs of the frameworks are interleaved by the caller.
def _nncore_trainer(data: Data, optimizer: str, batch_size: int, seed: int) -> tuple[Callable, Callable]:
    x, y, xt, yt = data
    model = nncore_model(initial_weights(seed))
    opt = (nncore.optim.SGD(SGD_SETTINGS["lr"], momentum=SGD_SETTINGS["momentum"]) if optimizer == "sgd"
           else nncore.optim.Adam(ADAM_SETTINGS["lr"], betas=ADAM_SETTINGS["betas"], eps=ADAM_SETTINGS["eps"]))
    nncore.seed(seed)  # shuffling; each fit call continues the generator and the optimizer state

    def epoch() -> None:
        model.fit(x, y, epochs=1, batch_size=batch_size, loss="cross_entropy", optimizer=opt, verbose=0)

    return epoch, lambda: float(np.mean(np.argmax(model.predict(xt), axis=1) == yt))


def _torch_trainer(data: Data, optimizer: str, batch_size: int, seed: int) -> tuple[Callable, Callable]:
    x, y, xt, yt = data
    model = torch_model(initial_weights(seed))
    opt = (torch.optim.SGD(model.parameters(), lr=SGD_SETTINGS["lr"], momentum=SGD_SETTINGS["momentum"])
           if optimizer == "sgd" else
           torch.optim.Adam(model.parameters(), lr=ADAM_SETTINGS["lr"], betas=ADAM_SETTINGS["betas"],
                            eps=ADAM_SETTINGS["eps"]))
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(seed)
    loss_fn = torch.nn.functional.cross_entropy

    def epoch() -> None:
        order = torch.randperm(len(tx), generator=generator)
        for start in range(0, len(tx), batch_size):
            index = order[start:start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(tx[index]), ty[index])
            loss.backward()
            opt.step()

    def accuracy() -> float:
        with torch.no_grad():
            return float(np.mean(model(torch.from_numpy(xt)).argmax(dim=1).numpy() == yt))

    return epoch, accuracy


def _sklearn_trainer(data: Data, optimizer: str, batch_size: int, seed: int) -> tuple[Callable, Callable]:
    x, y, xt, yt = data
    model = sklearn_model(optimizer, batch_size, seed)
    classes = np.arange(10)

    def epoch() -> None:
        model.partial_fit(x, y, classes=classes)  # one pass over shuffled mini-batches

    return epoch, lambda: float(np.mean(model.predict(xt) == yt))


def _with_setting(make: Callable, turn_on: Callable[[], Any], turn_off: Callable[[], Any]) -> Callable:
    """A trainer like ``make``'s whose epochs run with a setting turned on, and off again after."""
    def trainer(data: Data, optimizer: str, batch_size: int, seed: int) -> tuple[Callable, Callable]:
        epoch, accuracy = make(data, optimizer, batch_size, seed)

        def set_epoch() -> None:
            turn_on()
            try:
                epoch()
            finally:
                turn_off()

        return set_epoch, accuracy

    return trainer


# "nncore dense": the sparse-input path off, the first layer as a dense product, as for inputs with
# more nonzeros than MNIST's 19%. "torch flush": PyTorch with subnormals flushed to zero during its
# epochs, as nncore's engine trains by default (the like-for-like comparison of that choice).
_nncore_dense_trainer = _with_setting(_nncore_trainer, lambda: nncore.engine.set_sparse_input(False),
                                      lambda: nncore.engine.set_sparse_input(None))
_torch_flush_trainer = _with_setting(_torch_trainer, lambda: torch.set_flush_denormal(True),
                                     lambda: torch.set_flush_denormal(False))


TRAINERS = {"nncore": _nncore_trainer, "nncore dense": _nncore_dense_trainer, "torch": _torch_trainer,
            "torch flush": _torch_flush_trainer, "sklearn": _sklearn_trainer}


def train_epochs(framework: str, data: Data, optimizer: str, batch_size: int, epochs: int,
                 seed: int = 0) -> tuple[list[float], float]:
    """Seconds of each of ``epochs`` epochs of one framework, and the test accuracy after them."""
    epoch, accuracy = TRAINERS[framework](data, optimizer, batch_size, seed)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - t0)
    return times, accuracy()


def run_training(data: Data, batch_sizes: Sequence[int] = (32, 64, 256), epochs: int = 3,
                 n_threads: int = 2, optimizers: Sequence[str] = ("sgd", "adam"), seed: int = 0) -> list[dict]:
    """One row per (optimizer, batch size): median seconds per epoch of each framework over
    ``epochs`` epochs (the frameworks' epochs interleaved, so a burst of load on the shared machine
    hits all of them), test accuracy after them, and nncore's speed-up."""
    available = {"nncore": True, "nncore dense": True, "torch": torch is not None, "torch flush": torch is not None,
                 "sklearn": sklearn is not None}
    names = [name for name in TRAINERS if available[name]]
    rows = []
    warm = tuple(part[:512] for part in data)
    with threads(n_threads):
        for optimizer in optimizers:
            for name in names:  # first-call costs (PyTorch's especially) stay untimed
                train_epochs(name, warm, optimizer, min(batch_sizes), 1, seed)
            for batch_size in batch_sizes:
                row: dict[str, Any] = {"optimizer": _optimizer_label(optimizer), "batch": batch_size,
                                       "epochs": epochs, "threads": n_threads}
                trainers = {name: TRAINERS[name](data, optimizer, batch_size, seed) if name in names else None
                            for name in TRAINERS}
                seconds = time_epochs(trainers, epochs, row, settle_time(n_threads))
                row["vs torch"] = ratio(seconds["torch"], seconds["nncore"])
                row["vs torch flush"] = ratio(seconds["torch flush"], seconds["nncore"])
                row["vs sklearn"] = ratio(seconds["sklearn"], seconds["nncore"])
                row["dense vs torch"] = ratio(seconds["torch"], seconds["nncore dense"])
                rows.append(row)
    return rows


def _optimizer_label(optimizer: str) -> str:
    if optimizer == "sgd":
        return f"SGD lr {SGD_SETTINGS['lr']} momentum {SGD_SETTINGS['momentum']}"
    return f"Adam lr {ADAM_SETTINGS['lr']}"


# -- inference --------------------------------------------------------------------------------
def run_inference(data: Data, n_threads: int = 2, batch: int = 10000, min_time: float = 0.3, seed: int = 0) -> list[dict]:
    """Single-sample latency (median us per call) and batch throughput (samples/s) of the same
    (untrained, Glorot-initialised) network in each framework."""
    x_test = data[2]
    sample = np.ascontiguousarray(x_test[0])
    column = sample.reshape(-1, 1)
    big = np.ascontiguousarray(np.resize(x_test, (batch, x_test.shape[1])))
    weights = initial_weights(seed)
    model = nncore_model(weights)

    def without_skipping(x: np.ndarray) -> Any:  # the dense product for every input (engine.py)
        nncore.engine.set_sparse_input(False)
        try:
            return model.predict(x)
        finally:
            nncore.engine.set_sparse_input(None)

    single: dict[str, Any] = {
        "nncore Sequential.predict(x[None])": lambda: model.predict(sample[None]),
        "nncore predict(network, x) (classic, (784, 1) column)": lambda: nncore.predict(model.layers, column),
        "nncore Sequential.predict, zero inputs not skipped": lambda: without_skipping(sample[None]),
        "torch net(x) under no_grad": None,
        "sklearn predict_proba": None,
    }
    batched: dict[str, Any] = {
        "nncore Sequential.predict(x[None])": lambda: model.predict(big),
        "nncore predict(network, x) (classic, (784, 1) column)": lambda: nncore.predict(model.layers, big),
        "nncore Sequential.predict, zero inputs not skipped": lambda: without_skipping(big),
        "torch net(x) under no_grad": None,
        "sklearn predict_proba": None,
    }
    if torch is not None:
        net = torch_model(weights).eval()

        def torch_single() -> Any:
            with torch.no_grad():
                return net(torch.from_numpy(sample[None])).numpy()

        def torch_batch() -> Any:
            with torch.no_grad():
                return net(torch.from_numpy(big)).numpy()

        single["torch net(x) under no_grad"], batched["torch net(x) under no_grad"] = torch_single, torch_batch
    if sklearn is not None:
        clf = _fitted_sklearn(weights, data)
        single["sklearn predict_proba"] = lambda: clf.predict_proba(sample[None])
        batched["sklearn predict_proba"] = lambda: clf.predict_proba(big)
    with threads(n_threads):
        latency = compare(single, min_time=min_time, min_runs=50, settle=settle_time(n_threads))
        throughput = compare(batched, min_time=min_time, min_runs=5, settle=settle_time(n_threads))
    best_ours = latency["nncore Sequential.predict(x[None])"]
    best_batch = throughput["nncore Sequential.predict(x[None])"]
    rows = []
    for name in single:
        lat, thr = latency[name], throughput[name]
        rows.append({
            "implementation": name, "threads": n_threads,
            "1-sample latency (us)": NOT_INSTALLED if lat is None else lat * 1e6,
            f"batch {batch} (samples/s)": NOT_INSTALLED if thr is None else batch / thr,
            "nncore Sequential latency vs this": ratio(lat, best_ours),
            f"nncore Sequential batch {batch} vs this": ratio(thr, best_batch),
        })
    return rows


def _fitted_sklearn(weights: list[tuple[np.ndarray, np.ndarray]], data: Data) -> Any:
    """An MLPClassifier of the same shape, set up by one tiny partial_fit and then given the shared
    weights, so its predict_proba runs the same network."""
    clf = sklearn_model("sgd", 32)
    clf.partial_fit(data[0][:32], np.arange(32) % 10, classes=np.arange(10))
    clf.coefs_ = [w.T.copy() for w, _ in weights]
    clf.intercepts_ = [b.copy() for _, b in weights]
    return clf


# -- memory and determinism -------------------------------------------------------------------
_MEMORY_CHILD = r"""
import json, resource, sys
# Only the framework under test is imported, so the RSS is its own.
for other in {blocked!r}:
    sys.modules[other] = None
sys.path.insert(0, {bench_dir!r})
import bench_mnist, nncore

def rss_kb(field):
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

data, note = bench_mnist.load_data({path!r}, n_train={n_train}, n_test=100)
before = rss_kb("VmRSS")
try:  # reset the high-water mark, so the peak is the training's and not the data conversion's
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    reset = True
except OSError:
    reset = False
nncore.set_num_threads({threads})
times, acc = bench_mnist.train_epochs({framework!r}, data, "adam", 64, 1)
print(json.dumps({{"before_kb": before, "peak_kb": rss_kb("VmHWM"), "data_bytes": int(data[0].nbytes + data[1].nbytes),
                   "seconds": times[0], "reset": reset}}))
"""


def run_memory(n_train: int = 60000, path: Optional[Path] = MNIST_DIR, n_threads: int = 2,
               frameworks: Sequence[str] = ("nncore", "torch")) -> list[dict]:
    """Peak RSS (VmHWM, reset once the data is loaded) of a fresh process per framework that loads
    the data and trains one epoch of Adam (batch 64), next to the training data's size and the RSS
    once the data is loaded. Only the framework under test is imported in that process."""
    rows = []
    for framework in frameworks:
        if framework == "torch" and torch is None:
            rows.append({"framework": framework, "peak RSS (MB)": NOT_INSTALLED})
            continue
        blocked = [name for name in ("torch", "sklearn") if name != framework]
        code = _MEMORY_CHILD.format(blocked=blocked, bench_dir=str(Path(__file__).resolve().parent), framework=framework,
                                    n_train=n_train, path=None if path is None else str(path), threads=n_threads)
        env = dict(os.environ, OMP_NUM_THREADS=str(n_threads))
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode != 0 or not lines:
            rows.append({"framework": framework, "peak RSS (MB)": f"failed: {result.stderr.strip()[-200:]}"})
            continue
        m = json.loads(lines[-1])
        rows.append({
            "framework": framework, "training samples": n_train, "threads": n_threads,
            "training data (MB)": m["data_bytes"] / 1e6,
            "RSS with data loaded (MB)": m["before_kb"] / 1e3,
            "peak RSS (MB)": m["peak_kb"] / 1e3,
            "growth during training (MB)": (m["peak_kb"] - m["before_kb"]) / 1e3,
            "note": "" if m.get("reset") else "peak includes loading the data (VmHWM could not be reset)",
        })
    return rows


def run_determinism(data: Data, n_samples: int = 4096, batch_size: int = 64, seed: int = 0) -> list[dict]:
    """Fit the same network for one epoch with 1 and with 2 threads (same init and shuffling) and
    report whether the resulting weights are bit-identical."""
    x, y = data[0][:n_samples], data[1][:n_samples]
    results = {}
    for n in (1, 2):
        model = nncore_model(initial_weights(seed))
        with threads(n):
            model.fit(x, y, epochs=1, batch_size=batch_size, loss="cross_entropy",
                      optimizer=nncore.optim.Adam(1e-3), seed=seed, verbose=0)
        results[n] = [p.copy() for p, _ in model.parameters()]
    identical = all(np.array_equal(a, b) for a, b in zip(results[1], results[2]))
    return [{"check": f"weights after 1 epoch ({n_samples} samples, batch {batch_size}, Adam), 1 vs 2 threads",
             "bit-identical": "yes" if identical else "NO"}]
