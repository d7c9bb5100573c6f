"""XOR with the classic from-scratch network, running on nncore.

The network, data and training call are the classic code; only the imports differ. With
matplotlib installed (``pip install nncore[plot]``) it also saves the decision surface as a PNG.

    python examples/xor.py [--out xor_decision_boundary.png] [--seed 0]
"""

import argparse

import numpy as np

import nncore
from nncore import Dense, Tanh, mse, mse_prime, predict, train

parser = argparse.ArgumentParser(description="Train the classic XOR network with nncore.")
parser.add_argument(
    "--out", default="xor_decision_boundary.png", help="where to save the decision boundary PNG"
)
parser.add_argument("--seed", type=int, default=0, help="seed for the initial weights (default 0)")
args = parser.parse_args()
nncore.seed(args.seed)

X = np.reshape([[0, 0], [0, 1], [1, 0], [1, 1]], (4, 2, 1))
Y = np.reshape([[0], [1], [1], [0]], (4, 1, 1))

network = [
    Dense(2, 3),
    Tanh(),
    Dense(3, 1),
    Tanh(),
]

# train
train(network, mse, mse_prime, X, Y, epochs=10000, learning_rate=0.1)

# predictions
for x, y in zip(X, Y):
    output = predict(network, x)
    print(f"input {x.ravel().tolist()} -> {output[0, 0]:.4f} (expected {y[0, 0]})")

# decision boundary: the whole grid goes through the network as one batch of (2, 1) columns
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib is not installed, so no plot was saved (pip install matplotlib)")
else:
    steps = np.linspace(-0.25, 1.25, 151)
    grid_x, grid_y = np.meshgrid(steps, steps)
    grid = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1).reshape(-1, 2, 1)
    z = predict(network, grid).reshape(grid_x.shape)

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    levels = np.linspace(0, 1, 11)
    surface = ax.contourf(grid_x, grid_y, z, levels=levels, cmap="RdBu_r", extend="both")
    ax.contour(grid_x, grid_y, z, levels=[0.5], colors="black", linewidths=1.5)
    for label, marker, color in ((0, "o", "white"), (1, "s", "black")):
        points = X[Y.ravel() == label, :, 0]
        ax.scatter(points[:, 0], points[:, 1], marker=marker, c=color, edgecolors="black", s=140,
                   label=f"XOR = {label}", zorder=3)
    fig.colorbar(surface, ax=ax, label="network output")
    ax.legend(loc="center", framealpha=0.9)
    ax.set(xlabel="x1", ylabel="x2", title="XOR decision boundary (black line: output 0.5)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"saved the decision boundary to {args.out}")
