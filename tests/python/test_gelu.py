"""The GELU layer (exact and tanh approximation): forward and backward against PyTorch, gradients
against finite differences (float64), configuration and bad arguments."""

from __future__ import annotations

import nncore
import numpy as np
import pytest
from conftest import assert_gradients_close, numerical_gradient
from nncore import _core
from nncore.layer import LAYER_TYPES


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape", [(5, 4), (3, 1), (2, 3, 4)])
def test_gelu_gradient_matches_finite_differences(approximate, shape, rng):
    layer = nncore.GELU(approximate)
    x = rng.uniform(-4, 4, shape)
    y = layer.forward(x)
    g = rng.standard_normal(y.shape)
    analytic = layer.backward(g, None)
    assert analytic.shape == x.shape and analytic.dtype == np.float64
    assert_gradients_close(
        analytic, numerical_gradient(lambda: float(np.sum(g * layer.forward(x))), x)
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch(approximate, dtype, rng):
    torch = pytest.importorskip("torch")
    x = np.concatenate(
        [rng.uniform(-8, 8, 2000), [0.0, -0.0, 1e-30, -1e-30, 30.0, 5.0, -5.0]]
    ).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.gelu(tx, approximate=approximate)
    g = rng.standard_normal(x.shape).astype(dtype)
    (tdx,) = torch.autograd.grad(ty, tx, torch.tensor(g))
    layer = nncore.GELU(approximate)
    y = layer.forward(x)
    dx = layer.backward(g, None)
    eps = float(np.finfo(dtype).eps)
    # PyTorch computes 1 + erf(x / sqrt 2) (or 1 + tanh), which cancels for negative x: compare
    # with an absolute tolerance relative to |x| there.
    np.testing.assert_array_less(
        np.abs(y - ty.detach().numpy()), 16 * eps * (np.abs(y) + np.abs(x)) + 1e-37
    )
    np.testing.assert_array_less(
        np.abs(dx - tdx.numpy()), 32 * eps * np.abs(g) * (1 + np.abs(x)) + 1e-37
    )


def test_gelu_core_names_and_special_values():
    x = np.array([0.0, -0.0, np.inf, np.nan, 1.0])
    y = _core.activation("gelu", x)
    assert y[0] == 0 and np.signbit(y[1]) and y[2] == np.inf and np.isnan(y[3])
    assert y[4] == pytest.approx(0.8413447460685429, rel=1e-15)
    assert _core.activation("gelu_tanh", np.array([1.0]))[0] == pytest.approx(
        0.8411919906082768, rel=1e-15
    )
    with pytest.raises(ValueError, match="activation 'gelu' needs x"):
        _core.activation_backward("gelu", None, None, np.ones(2))


def test_gelu_config_and_bad_arguments():
    assert nncore.GELU().get_config() == {"approximate": "none"}
    layer = nncore.GELU.from_config(nncore.GELU("tanh").get_config())
    assert layer.approximate == "tanh" and repr(layer) == "GELU(approximate='tanh')"
    assert LAYER_TYPES["GELU"] is nncore.GELU
    assert "GELU" in nncore.__all__ and "optim" in nncore.__all__ and "losses" in nncore.__all__
    with pytest.raises(ValueError, match="'none' or 'tanh', got 'fast'"):
        nncore.GELU("fast")
    with pytest.raises(TypeError, match="approximate to be a str, got bool"):
        nncore.GELU(True)
