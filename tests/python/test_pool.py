"""max_pool2d / avg_pool2d bindings and the MaxPool2D / AvgPool2D layers: forward vs a naive numpy
loop and torch, gradients vs torch and central finite differences (float64), save/load, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_gradients_close, numerical_gradient

import nncore
from nncore import _core
from nncore.serialization import load_layers, save_layers


def naive_pool(x, k, s, reduce):
    n, c, h, w = x.shape
    oh, ow = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
    y = np.zeros((n, c, oh, ow), dtype=np.float64)
    for i in range(oh):
        for j in range(ow):
            y[:, :, i, j] = reduce(x[:, :, i * s[0]: i * s[0] + k[0], j * s[1]: j * s[1] + k[1]].astype(np.float64),
                                   axis=(2, 3))
    return y


CASES = [((2, 3, 6, 6), (2, 2), (2, 2)), ((1, 2, 7, 5), (3, 2), (1, 2)), ((3, 1, 9, 8), (1, 4), (3, 1))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, k, s", CASES)
def test_pool_forward_matches_naive(shape, k, s, dtype):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(_core.max_pool2d(x, k, s), naive_pool(x, k, s, np.max).astype(dtype))
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(_core.avg_pool2d(x, k, s), naive_pool(x, k, s, np.mean), rtol=tol, atol=tol)


@pytest.mark.parametrize("shape, k, s", CASES)
def test_pool_matches_torch(shape, k, s):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = np.round(rng.standard_normal(shape) * 2)  # ties: both must pick the first maximum
    for name, fn in (("max", torch.nn.functional.max_pool2d), ("avg", torch.nn.functional.avg_pool2d)):
        tx = torch.tensor(x, requires_grad=True)
        ty = fn(tx, k, s)
        dy = rng.standard_normal(tuple(ty.shape))
        ty.backward(torch.tensor(dy))
        forward = getattr(_core, f"{name}_pool2d")
        backward = getattr(_core, f"{name}_pool2d_backward")
        np.testing.assert_allclose(forward(x, k, s), ty.detach().numpy(), rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(backward(x, dy, k, s), tx.grad.numpy(), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("cls", [nncore.MaxPool2D, nncore.AvgPool2D])
def test_pool_layer_gradients_finite_differences(cls):
    layer = cls((2, 3), stride=(1, 2))
    x = np.random.default_rng(2).standard_normal((2, 2, 5, 7))  # distinct values: max is differentiable
    y = layer.forward(x)
    dy = np.random.default_rng(3).standard_normal(y.shape)
    dx = layer.backward(dy)
    numeric = numerical_gradient(lambda: float(np.sum(layer.forward(x) * dy)), x)
    assert_gradients_close(dx, numeric, rtol=1e-3, atol=1e-5)


def test_max_pool_nan_propagates():
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 1] = np.nan
    y = _core.max_pool2d(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and not np.isnan(y[0, 0, 1:, 1:]).any()


def test_pool_save_load_round_trip(tmp_path):
    layers = [nncore.Conv2D(1, 2, 3, padding=1), nncore.MaxPool2D(2), nncore.AvgPool2D((2, 1), stride=1)]
    path = tmp_path / "pool.safetensors"
    save_layers(layers, path)
    loaded = load_layers(path)
    assert [type(layer) for layer in loaded] == [nncore.Conv2D, nncore.MaxPool2D, nncore.AvgPool2D]
    assert [layer.get_config() for layer in loaded] == [layer.get_config() for layer in layers]
    assert loaded[1].stride == (2, 2) and loaded[2].stride == (1, 1)


x4 = np.zeros((2, 3, 5, 5), np.float32)


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_pool_bad_input(name):
    forward, backward = getattr(_core, name), getattr(_core, f"{name}_backward")
    with pytest.raises(ValueError, match=r"4 dimensions.*\(3, 5, 5\)"):
        forward(x4[0], 2)
    with pytest.raises(ValueError, match=r"larger than the input.*\(2, 3, 5, 5\)"):
        forward(x4, 6)
    with pytest.raises(ValueError, match="kernel_size"):
        forward(x4, 0)
    with pytest.raises(ValueError, match="stride"):
        forward(x4, 2, (1, -1))
    with pytest.raises(TypeError, match="kernel_size"):
        forward(x4, 2.0)
    with pytest.raises(TypeError, match="int32"):
        forward(x4.astype(np.int32), 2)
    with pytest.raises(ValueError, match=r"positive.*\(2, 0, 5, 5\)"):
        forward(np.zeros((2, 0, 5, 5), np.float32), 2)
    with pytest.raises(ValueError, match=r"\(2, 3, 2, 2\).*\(2, 3, 3, 3\)"):
        backward(x4, np.zeros((2, 3, 3, 3), np.float32), 2)
    with pytest.raises(TypeError, match="output_gradient"):
        backward(x4, np.zeros((2, 3, 2, 2), np.float64), 2)
    with pytest.raises(ValueError, match=r"\(2, 3, 2, 2\).*\(2, 3, 2, 3\)"):
        forward(x4, 2, out=np.zeros((2, 3, 2, 3), np.float32))
    layer = nncore.MaxPool2D(2) if name == "max_pool2d" else nncore.AvgPool2D(2)
    with pytest.raises(ValueError, match=r"\(3, 5, 5\)"):
        layer.forward(x4[0])
    layer.forward(x4)
    with pytest.raises(ValueError, match=r"\(2, 3, 2, 2\).*\(2, 3, 2, 3\)"):
        layer.backward(np.zeros((2, 3, 2, 3), np.float32))
