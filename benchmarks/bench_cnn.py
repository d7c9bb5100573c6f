"""LeNet-style CNN training on MNIST: nncore ``Sequential.fit`` against the same network in PyTorch.

    Conv2D(1, 16, 5, padding=2) ReLU MaxPool2D(2) Conv2D(16, 32, 5) ReLU MaxPool2D(2)
    Flatten Dense(800, 128) ReLU Dense(128, 10)

Both start from the same weights (PyTorch's default initialisation, copied into nncore), train
with Adam (lr 1e-3) on softmax cross-entropy (mean over the batch) over shuffled mini-batches, with
the same thread count; their epochs are interleaved so that load on the shared machine hits both.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

import nncore
from common import Trainer, ratio, settle_time, threads, time_epochs, torch

Data = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def as_images(data: Data) -> Data:
    """MNIST rows (N, 784) as NCHW images (N, 1, 28, 28)."""
    x, y, xt, yt = data
    return x.reshape(-1, 1, 28, 28), y, xt.reshape(-1, 1, 28, 28), yt


def nncore_lenet() -> nncore.Sequential:
    from nncore import Conv2D, Dense, Flatten, MaxPool2D, ReLU

    return nncore.Sequential([
        Conv2D(1, 16, 5, padding=2), ReLU(), MaxPool2D(2),
        Conv2D(16, 32, 5), ReLU(), MaxPool2D(2),
        Flatten(), Dense(800, 128), ReLU(), Dense(128, 10),
    ])


def torch_lenet() -> Any:
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(800, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def initial_weights(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) of each Conv2d/Linear of the PyTorch network under ``seed`` (PyTorch's default
    init); without PyTorch, nncore's own default init under that seed."""
    if torch is None:
        nncore.seed(seed)
        return [(layer.parameters()[0][0].copy(), layer.parameters()[1][0].copy())
                for layer in nncore_lenet().layers if layer.parameters()]
    torch.manual_seed(seed)
    return [(m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy())
            for m in torch_lenet() if hasattr(m, "weight")]


def nncore_model(weights: list[tuple[np.ndarray, np.ndarray]]) -> nncore.Sequential:
    model = nncore_lenet()
    for layer, (w, b) in zip((layer for layer in model.layers if layer.parameters()), weights):
        (pw, _), (pb, _) = layer.parameters()
        pw[...] = w
        pb[...] = b
    return model


def torch_model(weights: list[tuple[np.ndarray, np.ndarray]]) -> Any:
    model = torch_lenet()
    with torch.no_grad():
        for module, (w, b) in zip((m for m in model if hasattr(m, "weight")), weights):
            module.weight.copy_(torch.from_numpy(w))
            module.bias.copy_(torch.from_numpy(b))
    return model


def _nncore_trainer(data: Data, weights: list, batch_size: int, seed: int) -> Trainer:
    x, y, xt, yt = data
    model = nncore_model(weights)
    opt = nncore.optim.Adam(1e-3)
    nncore.seed(seed)

    def epoch() -> None:
        model.fit(x, y, epochs=1, batch_size=batch_size, loss="cross_entropy", optimizer=opt, verbose=0)

    return epoch, lambda: float(np.mean(np.argmax(model.predict(xt, batch_size=1000), axis=1) == yt))


def _torch_trainer(data: Data, weights: list, batch_size: int, seed: int) -> Trainer:
    x, y, xt, yt = data
    model = torch_model(weights)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(seed)

    def epoch() -> None:
        order = torch.randperm(len(tx), generator=generator)
        for start in range(0, len(tx), batch_size):
            index = order[start:start + batch_size]
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(tx[index]), ty[index]).backward()
            opt.step()

    def accuracy() -> float:
        with torch.no_grad():
            return float(np.mean(model(torch.from_numpy(xt)).argmax(dim=1).numpy() == yt))

    return epoch, accuracy


def run_cnn_training(data: Data, batch_size: int = 64, epochs: int = 2, n_threads: int = 2,
                     seed: int = 0) -> list[dict]:
    """One row: median seconds per epoch of nncore and PyTorch over ``epochs`` interleaved epochs
    from the same initial weights, test accuracy after them, and nncore's speed-up."""
    images = as_images(data)
    weights = initial_weights(seed)
    trainers: dict[str, Optional[Trainer]] = {"nncore": None, "torch": None}
    makers = {"nncore": _nncore_trainer, "torch": _torch_trainer if torch is not None else None}
    warm = tuple(part[:256] for part in images)
    row: dict[str, Any] = {"network": "LeNet (2 conv, 2 max-pool, 2 dense)", "optimizer": "Adam lr 0.001",
                           "batch": batch_size, "epochs": epochs, "threads": n_threads,
                           "training images": len(images[0])}
    with threads(n_threads):
        for name, make in makers.items():
            if make is not None:
                make(warm, weights, batch_size, seed)[0]()  # first-call costs stay untimed
                trainers[name] = make(images, weights, batch_size, seed)
        seconds = time_epochs(trainers, epochs, row, settle_time(n_threads))
    row["vs torch"] = ratio(seconds["torch"], seconds["nncore"])
    return [row]
