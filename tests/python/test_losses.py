"""Loss objects (nncore.losses): values and gradients against finite differences (float64) and
PyTorch, the mean conventions, accuracy counts, bad input, and the native ``_core.loss`` /
``_core.softmax_cross_entropy`` bindings themselves."""

from __future__ import annotations

import nncore
import numpy as np
import pytest
from conftest import assert_gradients_close, numerical_gradient
from nncore import _core, losses

DTYPES = [np.float32, np.float64]
# Loss values are sums accumulated in double; float32 inputs round each term.
VALUE_RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
GRAD_RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def _inputs(name: str, rng: np.random.Generator, shape, dtype):
    """(y_true, y_pred) suited to each loss."""
    if name in ("mse", "mae"):
        return rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    if name == "bce":
        t = (rng.uniform(size=shape) > 0.5).astype(dtype)
        t.flat[::3] = rng.uniform(size=t.flat[::3].shape)  # soft labels too
        return t, rng.uniform(0.02, 0.98, shape).astype(dtype)
    if name == "bce_logits":
        return rng.uniform(size=shape).astype(dtype), (3 * rng.standard_normal(shape)).astype(dtype)
    raise AssertionError(name)


ELEMENTWISE = {
    "mse": losses.MSE,
    "mae": losses.MAE,
    "bce": losses.BinaryCrossEntropy,
    "bce_logits": lambda: losses.BinaryCrossEntropy(from_logits=True),
}


# ----------------------------------------------------------------------------------------------
# Finite differences (float64)


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("shape", [(1,), (5, 3), (2, 3, 4)])
def test_elementwise_loss_gradient_matches_finite_differences(name, shape, rng):
    loss = ELEMENTWISE[name]()
    y_true, y_pred = _inputs(name, rng, shape, np.float64)
    if name == "mae":  # keep away from the kink at y_pred == y_true
        y_pred = y_true + np.where(rng.uniform(size=shape) > 0.5, 1.0, -1.0) * rng.uniform(
            0.1, 1.0, shape
        )
    value, gradient = loss.value_and_gradient(y_true, y_pred)
    assert value == pytest.approx(loss(y_true, y_pred), rel=1e-15)
    assert gradient.shape == y_pred.shape and gradient.dtype == np.float64
    assert_gradients_close(gradient, numerical_gradient(lambda: loss(y_true, y_pred), y_pred))


@pytest.mark.parametrize("target_kind", ["labels", "probabilities", "one_hot"])
def test_cross_entropy_gradient_matches_finite_differences(target_kind, rng):
    logits = rng.standard_normal((6, 5)) * 2
    labels = rng.integers(0, 5, 6)
    if target_kind == "labels":
        target = labels
    elif target_kind == "one_hot":
        target = np.eye(5)[labels]
    else:
        target = rng.uniform(size=(6, 5))
        target /= target.sum(axis=1, keepdims=True)
    loss = losses.CrossEntropy()
    value, gradient = loss.value_and_gradient(target, logits)
    assert_gradients_close(gradient, numerical_gradient(lambda: loss(target, logits), logits))
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    dense = np.eye(5)[labels] if target_kind == "labels" else target
    assert value == pytest.approx(-(dense * log_softmax).sum() / 6, rel=1e-13)


def test_labels_and_one_hot_give_the_same_loss(rng):
    logits = rng.standard_normal((9, 4))
    labels = rng.integers(0, 4, 9)
    a = losses.CrossEntropy().value_and_gradient(labels, logits)
    b = losses.CrossEntropy().value_and_gradient(np.eye(4)[labels], logits)
    assert a[0] == pytest.approx(b[0], rel=1e-14)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-13, atol=1e-16)


# ----------------------------------------------------------------------------------------------
# PyTorch


def _torch_elementwise(name, torch):
    return {
        "mse": torch.nn.MSELoss(),
        "mae": torch.nn.L1Loss(),
        "bce": torch.nn.BCELoss(),
        "bce_logits": torch.nn.BCEWithLogitsLoss(),
    }[name]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_losses_match_torch(name, dtype, rng):
    torch = pytest.importorskip("torch")
    y_true, y_pred = _inputs(name, rng, (37, 11), dtype)
    if name == "mae":
        y_pred[0, :3] = y_true[0, :3]  # gradient 0 at 0, like PyTorch
    if name == "bce":
        y_pred[1, 0], y_pred[1, 1] = 0.0, 1.0  # logs clamped at -100
    prediction = torch.tensor(y_pred, requires_grad=True)
    expected = _torch_elementwise(name, torch)(prediction, torch.tensor(y_true))
    (expected_grad,) = torch.autograd.grad(expected, prediction)
    value, gradient = ELEMENTWISE[name]().value_and_gradient(y_true, y_pred)
    assert value == pytest.approx(expected.item(), rel=VALUE_RTOL[np.dtype(dtype)])
    assert gradient.dtype == np.dtype(dtype)
    expected_grad = expected_grad.numpy()
    if name == "bce":
        # At p = 0 and 1 the gradient is (p - t) / 1e-12 / n; PyTorch's float64 result there is
        # off by ~4e-9 relative (its 1/n is not rounded in float64), so these two are looser.
        np.testing.assert_allclose(gradient[1, :2], expected_grad[1, :2], rtol=1e-7)
        gradient[1, :2] = expected_grad[1, :2] = 0
    np.testing.assert_allclose(
        gradient,
        expected_grad,
        rtol=GRAD_RTOL[np.dtype(dtype)],
        atol=float(np.finfo(dtype).eps) * np.abs(expected_grad).max(),
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target_kind", ["labels", "probabilities"])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_cross_entropy_matches_torch(dtype, target_kind, scale, rng):
    torch = pytest.importorskip("torch")
    logits = (scale * rng.standard_normal((23, 7))).astype(dtype)  # scale 1e4: exp would overflow
    if target_kind == "labels":
        target = rng.integers(0, 7, 23).astype(np.int32)
        torch_target = torch.tensor(target.astype(np.int64))
    else:
        target = rng.uniform(size=(23, 7)).astype(dtype)
        torch_target = torch.tensor(target)
    z = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.CrossEntropyLoss()(z, torch_target)
    (expected_grad,) = torch.autograd.grad(expected, z)
    value, gradient = losses.CrossEntropy().value_and_gradient(target, logits)
    assert np.isfinite(value)
    assert value == pytest.approx(expected.item(), rel=VALUE_RTOL[np.dtype(dtype)])
    np.testing.assert_allclose(
        gradient,
        expected_grad.numpy(),
        rtol=GRAD_RTOL[np.dtype(dtype)],
        atol=4 * float(np.finfo(dtype).eps) / 23,
    )


# ----------------------------------------------------------------------------------------------
# Conventions, accuracy, configuration


def test_means_are_over_all_elements_and_rows(rng):
    y_true, y_pred = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    assert losses.MSE()(y_true, y_pred) == pytest.approx(np.mean((y_pred - y_true) ** 2), rel=1e-14)
    assert losses.MAE()(y_true, y_pred) == pytest.approx(
        np.mean(np.abs(y_pred - y_true)), rel=1e-14
    )
    # the classic functions agree with the objects
    assert losses.MSE()(y_true, y_pred) == pytest.approx(nncore.mse(y_true, y_pred), rel=1e-14)
    np.testing.assert_allclose(
        losses.MSE().value_and_gradient(y_true, y_pred)[1],
        nncore.mse_prime(y_true, y_pred),
        rtol=1e-14,
    )
    p = rng.uniform(0.1, 0.9, (4, 3))
    t = (rng.uniform(size=(4, 3)) > 0.5).astype(float)
    assert losses.BinaryCrossEntropy()(t, p) == pytest.approx(
        nncore.binary_cross_entropy(t, p), rel=1e-14
    )


def test_accuracy_counts():
    assert losses.MSE().correct([1.0], [2.0]) is None
    assert losses.MAE().correct([1.0], [2.0]) is None
    t = np.array([[1.0], [0.0], [1.0], [0.0]])
    p = np.array([[0.9], [0.2], [0.4], [0.7]])
    assert losses.BinaryCrossEntropy().correct(t, p) == (2, 4)
    assert losses.BinaryCrossEntropy(from_logits=True).correct(
        t, np.array([[2.0], [-1.0], [-0.5], [0.5]])
    ) == (2, 4)
    logits = np.array([[1.0, 3.0, 0.0], [2.0, 0.0, 1.0], [0.0, 0.0, 5.0]])
    assert losses.CrossEntropy().correct(np.array([1, 0, 0]), logits) == (2, 3)
    assert losses.CrossEntropy().correct(np.eye(3)[[1, 2, 2]], logits) == (2, 3)


def test_get_names_and_configs():
    assert (
        type(losses.get("mse")) is losses.MSE
        and type(losses.get("mean_squared_error")) is losses.MSE
    )
    assert (
        type(losses.get("mae")) is losses.MAE
        and type(losses.get("mean_absolute_error")) is losses.MAE
    )
    for name in ("binary_cross_entropy", "bce"):
        loss = losses.get(name)
        assert isinstance(loss, losses.BinaryCrossEntropy) and not loss.from_logits
    logits_loss = losses.get("binary_cross_entropy_logits")
    assert logits_loss.from_logits and logits_loss.name == "binary_cross_entropy_logits"
    assert logits_loss.get_config() == {"from_logits": True}
    for name in ("cross_entropy", "categorical_cross_entropy"):
        assert type(losses.get(name)) is losses.CrossEntropy
    assert losses.get("mse") is not losses.get("mse")  # fresh objects
    instance = losses.MAE()
    assert losses.get(instance) is instance
    assert losses.MSE().name == "mse" and losses.CrossEntropy().name == "cross_entropy"
    assert losses.MSE().get_config() == {}
    with pytest.raises(ValueError, match="unknown loss 'hinge'.*mse.*cross_entropy"):
        losses.get("hinge")
    with pytest.raises(TypeError, match="got int"):
        losses.get(3)
    with pytest.raises(TypeError, match="from_logits"):
        losses.BinaryCrossEntropy(from_logits="yes")


def test_prepare_targets():
    ce = losses.CrossEntropy()
    labels = ce.prepare_targets(np.array([0, 2, 1], dtype=np.uint8), np.float32)
    assert labels.dtype == np.int64 and labels.tolist() == [0, 2, 1]
    assert ce.prepare_targets(np.array([1.0, 0.0]), np.float32).dtype == np.int64
    probabilities = ce.prepare_targets(np.eye(3), np.float32)
    assert probabilities.dtype == np.float32
    with pytest.raises(ValueError, match="non-integral value 0.5"):
        ce.prepare_targets(np.array([1.0, 0.5]), np.float32)
    with pytest.raises(ValueError, match=r"got shape \(2, 2, 2\)"):
        ce.prepare_targets(np.zeros((2, 2, 2)), np.float32)
    assert losses.MSE().prepare_targets([[1, 2]], np.float64).dtype == np.float64
    with pytest.raises(TypeError, match="float32 or float64"):
        losses.MSE().prepare_targets([1.0], np.int32)


# ----------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("loss", [losses.MSE(), losses.MAE(), losses.BinaryCrossEntropy()])
def test_elementwise_bad_input(loss):
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)"):
        loss(np.zeros((3, 2)), np.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="empty"):
        loss(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(TypeError, match="complex"):
        loss(np.zeros(3), np.zeros(3, dtype=complex))


def test_cross_entropy_bad_input():
    ce = losses.CrossEntropy()
    logits = np.zeros((3, 4))
    with pytest.raises(ValueError, match="label 4 of sample 2 is out of range for 4 classes"):
        ce(np.array([0, 1, 4]), logits)
    with pytest.raises(ValueError, match="label -1 of sample 0"):
        ce.value_and_gradient(np.array([-1, 1, 2]), logits)
    with pytest.raises(ValueError, match=r"y_true has shape \(2,\) but y_pred has shape \(3, 4\)"):
        ce(np.array([0, 1]), logits)
    with pytest.raises(
        ValueError, match=r"y_true has shape \(3, 3\) but y_pred has shape \(3, 4\)"
    ):
        ce(np.zeros((3, 3)), logits)
    with pytest.raises(ValueError, match=r"shape \(batch, classes\), got shape \(4,\)"):
        ce(np.array([0]), np.zeros(4))
    with pytest.raises(ValueError, match="empty batch"):
        ce(np.zeros(0, dtype=int), np.zeros((0, 4)))
    with pytest.raises(ValueError, match="non-integral"):
        ce(np.array([0.0, 1.5, 2.0]), logits)


def test_core_bindings_check_their_arguments():
    x = np.zeros(3)
    with pytest.raises(
        ValueError, match="unknown loss 'huber'.*squared_error.*binary_cross_entropy_logits"
    ):
        _core.loss("huber", x, x, 1.0)
    with pytest.raises(TypeError, match="same dtype"):
        _core.loss("squared_error", x, x.astype(np.float32), 1.0)
    with pytest.raises(ValueError, match="non-empty"):
        _core.loss("squared_error", np.zeros(0), np.zeros(0), 1.0)
    value, gradient = _core.loss("squared_error", np.ones(3), np.zeros(3), 0.5, need_gradient=False)
    assert value == 3.0 and gradient is None
    with pytest.raises(TypeError, match="integer dtype.*float64.*got complex128"):
        _core.softmax_cross_entropy(np.zeros((2, 2)), np.zeros(2, dtype=complex), 1.0)
    with pytest.raises(TypeError, match="same dtype"):
        _core.softmax_cross_entropy(np.zeros((2, 2)), np.zeros((2, 2), np.float32), 1.0)
    with pytest.raises(ValueError, match="classes >= 1"):
        _core.softmax_cross_entropy(np.zeros((2, 0)), np.zeros(2, dtype=int), 1.0)
    value, gradient = _core.softmax_cross_entropy(
        np.zeros((2, 4)), np.array([1, 3], np.uint16), 1.0, False
    )
    assert value == pytest.approx(2 * np.log(4)) and gradient is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_losses_are_bit_identical_for_any_thread_count(dtype, rng, restore_threads):
    y_true = rng.uniform(size=300001).astype(dtype)
    y_pred = rng.uniform(0.01, 0.99, 300001).astype(dtype)
    logits = rng.standard_normal((1001, 257)).astype(dtype)
    labels = rng.integers(0, 257, 1001)
    outcomes = []
    for threads in (1, 2):
        nncore.set_num_threads(threads)
        runs = [
            _core.loss(name, y_true, y_pred, 0.5)
            for name in (
                "squared_error",
                "absolute_error",
                "binary_cross_entropy",
                "binary_cross_entropy_logits",
            )
        ]
        runs.append(_core.softmax_cross_entropy(logits, labels, 0.1))
        outcomes.append(runs)
    for (v1, g1), (v2, g2) in zip(*outcomes):
        assert v1 == v2 and np.array_equal(g1, g2)


@pytest.mark.parametrize("label", [2.0**63, -1e20, 1e30])
def test_a_float_label_beyond_int64_is_refused_not_wrapped(label):
    # (found by hypothesis: float32 9.223372e18 is 2**63, whose cast to int64 warned and wrapped)
    for dtype in (np.float32, np.float64):
        target = np.array([label], dtype)
        with pytest.raises(ValueError, match="beyond any number of classes"):
            nncore.losses.get("cross_entropy").value_and_gradient(target, np.zeros((1, 3), np.float32))
