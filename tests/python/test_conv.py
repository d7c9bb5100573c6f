"""conv2d bindings and the Conv2D / Convolutional layers: forward vs a naive numpy loop and
torch, gradients vs central finite differences (float64), save/load, and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import assert_gradients_close, numerical_gradient

import nncore
from nncore import _core
from nncore.serialization import load_layers, save_layers


def naive_conv(x, w, b, stride, padding, dilation):
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw), dtype=np.float64)
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, o, oh, ow))
    for i, j in itertools.product(range(kh), range(kw)):
        patch = xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
        y += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j].astype(np.float64))
    if b is not None:
        y += np.asarray(b, dtype=np.float64)[None, :, None, None]
    return y


CASES = [
    # n, c, o, h, w, k, stride, padding, dilation
    (1, 1, 1, 5, 5, (3, 3), (1, 1), (0, 0), (1, 1)),
    (2, 3, 4, 7, 9, (3, 2), (2, 1), (1, 2), (1, 2)),
    (3, 2, 5, 11, 7, (5, 5), (3, 2), (2, 1), (2, 1)),
    (1, 5, 2, 9, 9, (1, 1), (1, 3), (0, 2), (1, 1)),
    (2, 4, 3, 13, 13, (4, 3), (2, 2), (0, 1), (2, 2)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_conv2d_forward_matches_naive(case, dtype):
    n, c, o, h, w, k, s, p, d = case
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (n, c, h, w)).astype(dtype)
    wt = rng.uniform(-1, 1, (o, c) + k).astype(dtype)
    b = rng.uniform(-1, 1, o).astype(dtype)
    y = _core.conv2d(x, wt, b, s, p, d)
    assert y.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, naive_conv(x, wt, b, s, p, d), rtol=tol, atol=tol)
    out = np.full(y.shape, np.nan, dtype=dtype)
    assert _core.conv2d(x, wt, None, s, p, d, out=out) is out
    np.testing.assert_allclose(out, naive_conv(x, wt, None, s, p, d), rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES)
def test_conv2d_matches_torch(case):
    torch = pytest.importorskip("torch")
    n, c, o, h, w, k, s, p, d = case
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((o, c) + k)
    b = rng.standard_normal(o)
    dy = rng.standard_normal(_core.conv2d(x, wt, b, s, p, d).shape)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(wt, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p, dilation=d)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(_core.conv2d(x, wt, b, s, p, d), ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    dx, dw, db = _core.conv2d_backward(x, wt, dy, s, p, d)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-10, atol=1e-10)
    none, dw2, _ = _core.conv2d_backward(x, wt, dy, s, p, d, need_input_gradient=False)
    assert none is None
    np.testing.assert_array_equal(dw2, dw)


def _check_layer_gradients(layer, x, params):
    rng = np.random.default_rng(3)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    loss = lambda: float(np.sum(layer.forward(x) * dy))  # noqa: E731
    assert_gradients_close(dx, numerical_gradient(loss, x), rtol=1e-3, atol=1e-5)
    for value, gradient in params:
        expected = gradient.copy()
        assert_gradients_close(expected, numerical_gradient(loss, value), rtol=1e-3, atol=1e-5)


def test_conv2d_layer_gradients_finite_differences():
    nncore.seed(0)
    layer = nncore.Conv2D(2, 3, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), dtype=np.float64)
    layer.bias[:] = np.random.default_rng(0).standard_normal(3)
    x = np.random.default_rng(1).standard_normal((2, 2, 6, 5))
    _check_layer_gradients(layer, x, layer.parameters())


@pytest.mark.parametrize("batched", [False, True])
def test_convolutional_gradients_finite_differences(batched):
    nncore.seed(0)
    layer = nncore.Convolutional((2, 6, 5), 3, 2, dtype=np.float64)
    shape = (2, 2, 6, 5) if batched else (2, 6, 5)
    x = np.random.default_rng(1).standard_normal(shape)
    _check_layer_gradients(layer, x, layer.parameters())


def test_convolutional_matches_classic_scipy_style_reference():
    nncore.seed(0)
    layer = nncore.Convolutional((3, 7, 6), 3, 4, dtype=np.float64)
    x = np.random.default_rng(5).standard_normal((3, 7, 6))
    y = layer.forward(x)
    assert y.shape == (4, 5, 4)
    np.testing.assert_allclose(y, naive_conv(x[None], layer.kernels, None, (1, 1), (0, 0), (1, 1))[0] + layer.biases,
                               rtol=1e-12, atol=1e-12)
    # SGD when a learning rate is given, as the classic code does.
    dy = np.random.default_rng(6).standard_normal(y.shape)
    kernels, biases = layer.kernels.copy(), layer.biases.copy()
    dx = layer.backward(dy, 0.1)
    assert dx.shape == x.shape
    np.testing.assert_allclose(layer.biases, biases - 0.1 * dy, rtol=1e-12)
    np.testing.assert_allclose(layer.kernels, kernels - 0.1 * layer.kernels_gradient, rtol=1e-12)


def test_conv_layers_thread_count_bit_identical():
    nncore.seed(0)
    layer = nncore.Conv2D(8, 16, 3, padding=1)
    x = np.random.default_rng(0).standard_normal((3, 8, 21, 19)).astype(np.float32)
    before = nncore.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            nncore.set_num_threads(threads)
            y = layer.forward(x)
            dx = layer.backward(np.ones_like(y))
            results.append((y.copy(), dx.copy(), layer.weights_gradient.copy(), layer.bias_gradient.copy()))
    finally:
        nncore.set_num_threads(before)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_save_load_round_trip(tmp_path):
    nncore.seed(0)
    layers = [nncore.Conv2D(2, 3, (3, 1), stride=2, padding=(1, 0), dilation=1, dtype=np.float64),
              nncore.Convolutional((3, 5, 5), 2, 4)]
    layers[0].bias[:] = [0.5, -1.0, 2.0]
    path = tmp_path / "conv.safetensors"
    save_layers(layers, path)
    loaded = load_layers(path)
    assert [type(layer) for layer in loaded] == [nncore.Conv2D, nncore.Convolutional]
    assert loaded[0].get_config() == layers[0].get_config()
    assert loaded[1].get_config() == layers[1].get_config()
    for a, b in zip(layers, loaded):
        for (pa, _), (pb, _) in zip(a.parameters(), b.parameters()):
            assert pa.dtype == pb.dtype
            np.testing.assert_array_equal(pa, pb)
    x = np.random.default_rng(0).standard_normal((2, 2, 9, 6))
    np.testing.assert_array_equal(layers[0].forward(x), loaded[0].forward(x))


def test_exports():
    assert "Conv2D" in nncore.__all__ and "Convolutional" in nncore.__all__


# ---------------------------------------------------------------------------------------------
x4 = np.zeros((2, 3, 5, 5), np.float32)
w4 = np.zeros((4, 3, 3, 3), np.float32)


@pytest.mark.parametrize(
    "args, kwargs, error, words",
    [
        ((x4, np.zeros((4, 2, 3, 3), np.float32)), {}, ValueError, ["3 channels", "(2, 3, 5, 5)", "(4, 2, 3, 3)"]),
        ((x4, np.zeros((4, 3, 6, 3), np.float32)), {}, ValueError, ["larger than the padded input", "(4, 3, 6, 3)"]),
        ((x4, np.zeros((4, 3, 3, 3), np.float32)), {"dilation": 3}, ValueError, ["larger than the padded input"]),
        ((x4, w4), {"stride": 0}, ValueError, ["stride", "positive"]),
        ((x4, w4), {"padding": -1}, ValueError, ["padding", "non-negative"]),
        ((x4, w4), {"dilation": (1, 0)}, ValueError, ["dilation"]),
        ((x4, w4), {"stride": (1, 2, 3)}, ValueError, ["stride"]),
        ((x4, w4), {"stride": 1.5}, TypeError, ["stride"]),
        ((x4[0], w4), {}, ValueError, ["4 dimensions", "(3, 5, 5)"]),
        ((x4, w4[0]), {}, ValueError, ["4 dimensions", "(3, 3, 3)"]),
        ((x4, w4.astype(np.float64)), {}, TypeError, ["float32", "float64"]),
        ((x4.astype(np.int32), w4), {}, TypeError, ["int32"]),
        ((np.zeros((2, 0, 5, 5), np.float32), np.zeros((4, 0, 3, 3), np.float32)), {}, ValueError, ["positive", "(2, 0, 5, 5)"]),
        ((x4, np.zeros((0, 3, 3, 3), np.float32)), {}, ValueError, ["positive", "(0, 3, 3, 3)"]),
        ((x4, w4, np.zeros(3, np.float32)), {}, ValueError, ["(4,)", "(3,)"]),
        ((x4, w4, np.zeros(4, np.float64)), {}, TypeError, ["bias"]),
        ((x4, w4), {"out": np.zeros((2, 4, 3, 2), np.float32)}, ValueError, ["(2, 4, 3, 3)", "(2, 4, 3, 2)"]),
    ],
)
def test_conv2d_bad_input(args, kwargs, error, words):
    with pytest.raises(error) as info:
        _core.conv2d(*args, **kwargs)
    for word in words:
        assert word in str(info.value)


def test_conv2d_backward_bad_input():
    with pytest.raises(ValueError, match=r"\(2, 4, 3, 3\).*\(2, 4, 3, 2\)"):
        _core.conv2d_backward(x4, w4, np.zeros((2, 4, 3, 2), np.float32))
    with pytest.raises(TypeError, match="output_gradient"):
        _core.conv2d_backward(x4, w4, np.zeros((2, 4, 3, 3), np.float64))
    with pytest.raises(ValueError, match="3 channels"):
        _core.conv2d_backward(x4, np.zeros((4, 2, 3, 3), np.float32), np.zeros((2, 4, 3, 3), np.float32))


def test_empty_batch():
    y = _core.conv2d(np.zeros((0, 3, 5, 5), np.float32), w4)
    assert y.shape == (0, 4, 3, 3)
    dx, dw, db = _core.conv2d_backward(np.zeros((0, 3, 5, 5), np.float32), w4, y)
    assert dx.shape == (0, 3, 5, 5)
    np.testing.assert_array_equal(dw, 0)
    np.testing.assert_array_equal(db, 0)


def test_layer_bad_input():
    with pytest.raises(ValueError, match="in_channels"):
        nncore.Conv2D(0, 2, 3)
    with pytest.raises(ValueError, match="kernel_size"):
        nncore.Conv2D(1, 2, 0)
    with pytest.raises(TypeError, match="stride"):
        nncore.Conv2D(1, 2, 3, stride="a")
    layer = nncore.Conv2D(3, 2, 3)
    with pytest.raises(ValueError, match=r"\(3, 5, 5\)"):
        layer.forward(np.zeros((3, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"2 channels.*\(1, 2, 5, 5\)"):
        layer.forward(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match="larger than the padded input"):
        layer.forward(np.zeros((1, 3, 2, 5), np.float32))
    with pytest.raises(ValueError, match="larger than the input"):
        nncore.Convolutional((1, 2, 5), 3, 2)
    with pytest.raises(ValueError, match="input_shape"):
        nncore.Convolutional((5, 5), 3, 2)
    conv = nncore.Convolutional((1, 5, 5), 3, 2)
    with pytest.raises(ValueError, match=r"\(1, 5, 5\).*\(2, 5, 5\)"):
        conv.forward(np.zeros((2, 5, 5)))
    conv.forward(np.zeros((1, 5, 5)))
    with pytest.raises(ValueError, match=r"\(2, 3, 3\).*\(2, 3, 4\)"):
        conv.backward(np.zeros((2, 3, 4)))


def test_layer_arguments_of_the_wrong_kind_are_refused():
    # A set's order is not the caller's: {2, 1} used to become stride (1, 2).
    for bad in ({2, 1}, frozenset({2}), {"a": 1}, 2.0, None, np.array(2), "ab"):
        with pytest.raises(TypeError, match="stride to be an int or a pair of ints"):
            nncore.Conv2D(3, 4, 3, stride=bad)
    assert nncore.Conv2D(3, 4, 3, stride=np.array([2, 1])).stride == (2, 1)
    assert nncore.Conv2D(3, 4, 3, stride=range(2, 0, -1)).stride == (2, 1)
    for layer, x, out_shape in ((nncore.Conv2D(3, 2, 3), np.zeros((1, 3, 5, 5), np.float32), (1, 2, 3, 3)),
                                (nncore.Dense(5, 2), np.zeros((4, 5), np.float32), (4, 2))):
        layer.forward(x)
        for bad in (None, 0, "no"):  # None and 0 used to mean False; "no" gave pybind's dump of the arrays
            with pytest.raises(TypeError, match="need_input_gradient to be a bool"):
                layer.backward(np.ones(out_shape, np.float32), need_input_gradient=bad)


def test_glorot_initialisers_count_every_kernel_position_in_fan_out():
    # As torch.nn.init.xavier_*: fan_out = out_channels * kh * kw (it was out_channels alone).
    nncore.seed(0)
    conv = nncore.Conv2D(16, 32, 5, init="glorot_uniform")
    limit = np.sqrt(6 / (16 * 25 + 32 * 25))
    assert 0.99 * limit < np.abs(conv.weights).max() <= limit
    normal = nncore.Conv2D(16, 32, 5, init="glorot_normal")
    assert normal.weights.std() == pytest.approx(np.sqrt(2 / (16 * 25 + 32 * 25)), rel=0.03)
    classic = nncore.Convolutional((3, 10, 10), 3, 8, init="glorot_uniform")
    limit = np.sqrt(6 / (3 * 9 + 8 * 9))
    assert 0.95 * limit < np.abs(classic.kernels).max() <= limit
    dense = nncore.Dense(400, 32, init="glorot_uniform")  # a Dense layer's fans are unchanged
    assert 0.99 * np.sqrt(6 / 432) < np.abs(dense.weights).max() <= np.sqrt(6 / 432)


def test_running_out_of_memory_for_the_padded_input_names_the_shapes():
    x, w = np.ones((2, 8, 1, 1), np.float32), np.ones((4, 8, 2, 2), np.float32)
    with pytest.raises(MemoryError, match=r"conv2d_backward: out of memory for the zero-padded input .*x \(2, 8, 1, 1\)"):
        # (512 TB: more than the address space, so no allocation can succeed, whatever the overcommit policy)
        _core.conv2d_backward(x, w, np.ones((2, 4, 1, 1), np.float32), 1, 2_000_000, 4_000_000, True)


def test_small_cnn_trains_with_sequential():
    nncore.seed(0)
    x = np.random.default_rng(0).standard_normal((64, 1, 8, 8)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.float32).reshape(-1, 1)
    model = nncore.Sequential([
        nncore.Conv2D(1, 4, 3, padding=1), nncore.ReLU(), nncore.MaxPool2D(2),
        nncore.Convolutional((4, 4, 4), 3, 2, init="he_uniform"), nncore.Flatten(), nncore.Dense(8, 1), nncore.Sigmoid(),
    ])
    history = model.fit(x, y, epochs=30, batch_size=16, loss="binary_cross_entropy", optimizer="adam", verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.6 * losses[0]


def test_conv2d_backward_writes_given_gradient_arrays_and_checks_them():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 6, 5))
    w = rng.normal(size=(4, 3, 3, 3))
    dy = rng.normal(size=(2, 4, 4, 3))
    _, dw_new, db_new = nncore._core.conv2d_backward(x, w, dy)
    dw, db = np.empty_like(w), np.empty(4)
    _, dw_out, db_out = nncore._core.conv2d_backward(x, w, dy, weights_gradient=dw, bias_gradient=db)
    assert dw_out is dw and db_out is db
    np.testing.assert_array_equal(dw, dw_new)
    np.testing.assert_array_equal(db, db_new)
    with pytest.raises(ValueError, match=r"weights_gradient.*shape \(4, 3, 3, 3\), got \(4, 3, 3\)"):
        nncore._core.conv2d_backward(x, w, dy, weights_gradient=np.empty((4, 3, 3)))
    with pytest.raises(TypeError, match="bias_gradient"):
        nncore._core.conv2d_backward(x, w, dy, bias_gradient=np.empty(4, dtype=np.float32))
