"""What ``Sequential.fit`` returns: per-epoch metrics, and a plot of them."""

from __future__ import annotations

import os
from typing import Any, Optional

from ._files import atomic_write, file_path


class History:
    """``history``: a dict of per-epoch lists, e.g. ``{"loss": [...], "val_loss": [...],
    "accuracy": [...], "val_accuracy": [...], "lr": [...]}``; ``epoch``: the epoch numbers
    (counting from 0 across this call of fit)."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for name, value in logs.items():
            self.history.setdefault(name, []).append(float(value))

    def __repr__(self) -> str:
        last = {name: round(values[-1], 6) for name, values in self.history.items() if values}
        return f"History(epochs={len(self.epoch)}, last={last})"

    def plot(self, path: "Optional[str | os.PathLike[str]]" = None) -> Any:
        """Draw the loss curves (and accuracy curves, if logged) with matplotlib; save a PNG to
        ``path`` when given. Returns the matplotlib Figure. Raises ImportError naming the extra
        to install when matplotlib is absent."""
        return plot_history(self, path)


def plot_history(history: History, path: "Optional[str | os.PathLike[str]]" = None) -> Any:
    """See ``History.plot``."""
    if not isinstance(history, History):
        raise TypeError(f"plot_history: expected a History (what fit returns), got {type(history).__name__}")
    if not history.epoch:
        raise ValueError("plot_history: the history is empty (fit ran 0 epochs)")
    try:
        # A bare Figure needs no GUI backend (pyplot is not imported), so this works headless.
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plot_history needs matplotlib: pip install 'nncore[plot]'") from None

    panels = [name for name in ("loss", "accuracy") if name in history.history]
    if not panels:
        raise ValueError(f"plot_history: the history has no loss or accuracy to plot, only {sorted(history.history)}")
    target = None if path is None else file_path(path, "plot_history")
    if target is not None and not target.suffix:  # as savefig does with a path: add the default format
        from matplotlib import rcParams

        target = target.with_name(f"{target.name}.{rcParams['savefig.format']}")
    figure = Figure(figsize=(5.5 * len(panels), 4), layout="constrained")
    epochs = [e + 1 for e in history.epoch]
    for i, name in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), i + 1)
        for key, label in ((name, "training"), (f"val_{name}", "validation")):
            if key in history.history:
                axes.plot(epochs, history.history[key], marker="o", markersize=3, label=label)
        axes.set_xlabel("epoch")
        axes.set_ylabel(name)
        if name == "loss" and min(history.history["loss"]) > 0:
            axes.set_yscale("log")
        axes.grid(True, alpha=0.3)
        axes.legend()
    if target is not None:
        # Atomically, like a model file: a failed write keeps any previous image whole. The format
        # comes from the file name's extension, as savefig would take it from a path.
        with atomic_write(target, where="plot_history") as stream:
            figure.savefig(stream, format=target.suffix[1:].lower(), dpi=110)
    return figure
