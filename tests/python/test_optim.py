"""Optimizers, gradient clipping and learning-rate schedules (nncore.optim): several steps against
torch.optim (foreach=False) in float32 and float64, state handling, bad arguments, thread-count
independence, and agreement of every ISA path."""

from __future__ import annotations

import json
import math
import textwrap

import nncore
import numpy as np
import pytest
from conftest import run_python
from nncore import _core, optim

DTYPES = [np.float32, np.float64]
# Several steps accumulate a rounding or two per step; differences in FMA use between PyTorch's
# kernels and ours are of that size.
RTOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-13}
ATOL = {np.dtype(np.float32): 2e-7, np.dtype(np.float64): 1e-15}

CONFIGS = {
    "sgd": (optim.SGD, {"lr": 0.1}, "SGD", {"lr": 0.1}),
    "sgd_momentum": (
        optim.SGD,
        {"lr": 0.05, "momentum": 0.9},
        "SGD",
        {"lr": 0.05, "momentum": 0.9},
    ),
    "sgd_nesterov_wd": (
        optim.SGD,
        {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.01},
        "SGD",
        {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.01},
    ),
    "sgd_wd": (
        optim.SGD,
        {"lr": 0.1, "weight_decay": 0.1},
        "SGD",
        {"lr": 0.1, "weight_decay": 0.1},
    ),
    "adam": (optim.Adam, {}, "Adam", {}),
    "adam_l2": (
        optim.Adam,
        {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1},
        "Adam",
        {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1},
    ),
    "adamw": (optim.AdamW, {"lr": 0.01}, "AdamW", {"lr": 0.01}),
    "adamw_beta1_large_weight": (
        optim.AdamW,
        {"lr": 0.01, "betas": (0.3, 0.9), "weight_decay": 0.5},
        "AdamW",
        {"lr": 0.01, "betas": (0.3, 0.9), "weight_decay": 0.5},
    ),
    "rmsprop": (optim.RMSprop, {}, "RMSprop", {}),
    "rmsprop_centered": (
        optim.RMSprop,
        {"lr": 0.01, "centered": True},
        "RMSprop",
        {"lr": 0.01, "centered": True},
    ),
    "rmsprop_momentum_wd": (
        optim.RMSprop,
        {"lr": 0.01, "alpha": 0.9, "momentum": 0.9, "weight_decay": 0.05},
        "RMSprop",
        {"lr": 0.01, "alpha": 0.9, "momentum": 0.9, "weight_decay": 0.05},
    ),
    "rmsprop_all": (
        optim.RMSprop,
        {"lr": 0.005, "momentum": 0.5, "centered": True, "weight_decay": 0.01},
        "RMSprop",
        {"lr": 0.005, "momentum": 0.5, "centered": True, "weight_decay": 0.01},
    ),
}


def _params(rng, dtype):
    # a matrix, a vector and a size with a partial vector register at the end
    return [rng.standard_normal(shape).astype(dtype) for shape in ((7, 13), (13,), (1001,))]


def _run_both(name, dtype, rng, steps=6, clip_norm=None):
    torch = pytest.importorskip("torch")
    ours_cls, ours_kwargs, torch_name, torch_kwargs = CONFIGS[name]
    params = _params(rng, dtype)
    torch_params = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    ours = ours_cls(**ours_kwargs, clip_norm=clip_norm)
    theirs = getattr(torch.optim, torch_name)(torch_params, foreach=False, **torch_kwargs)
    for _ in range(steps):
        grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
        for tp, g in zip(torch_params, grads):
            tp.grad = torch.tensor(g.copy())
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(torch_params, clip_norm, foreach=False)
        theirs.step()
        ours.step(zip(params, grads))
    return params, [tp.detach().numpy() for tp in torch_params], ours


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CONFIGS)
def test_optimizers_match_torch(name, dtype, rng):
    params, expected, ours = _run_both(name, dtype, rng)
    assert ours.iterations == 6
    for got, want in zip(params, expected):
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(
            got, want, rtol=RTOL[np.dtype(dtype)], atol=ATOL[np.dtype(dtype)]
        )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["sgd_momentum", "adam", "rmsprop_centered"])
def test_clip_norm_matches_torch(name, dtype, rng):
    params, expected, _ = _run_both(name, dtype, rng, steps=4, clip_norm=0.5)
    for got, want in zip(params, expected):
        np.testing.assert_allclose(
            got, want, rtol=10 * RTOL[np.dtype(dtype)], atol=10 * ATOL[np.dtype(dtype)]
        )


def test_clip_grad_norm(rng):
    grads = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    originals = [g.copy() for g in grads]
    norm = math.sqrt(sum(float(np.sum(g * g)) for g in originals))
    assert optim.clip_grad_norm(grads, 1.0) == pytest.approx(norm, rel=1e-14)
    factor = 1.0 / (norm + 1e-6)
    for g, o in zip(grads, originals):
        np.testing.assert_allclose(g, o * factor, rtol=1e-15)
    # already small enough: untouched
    small = [np.array([0.1, 0.2])]
    assert optim.clip_grad_norm(small, 10.0) == pytest.approx(math.sqrt(0.05))
    assert small[0].tolist() == [0.1, 0.2]
    with pytest.raises(ValueError, match="max_norm.*got 0"):
        optim.clip_grad_norm(small, 0)
    with pytest.raises(ValueError, match="read-only"):
        frozen = np.ones(3)
        frozen.flags.writeable = False
        optim.clip_grad_norm([frozen], 0.1)


def test_core_sum_of_squares_and_scale():
    exact = sum(float(v) ** 2 for v in range(1, 2001))
    assert (
        _core.sum_of_squares(np.arange(1, 2001, dtype=np.float64)) == exact
    )  # every partial sum exact
    x = np.arange(1, 2001, dtype=np.float32)
    assert _core.sum_of_squares(x) == pytest.approx(
        exact, rel=1e-6
    )  # float32 within a block of 1024
    _core.scale(x, 0.5)
    assert x[-1] == 1000.0
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.scale(np.ones((4, 4))[:, 0], 2.0)
    with pytest.raises(TypeError, match="numpy array"):
        _core.scale([1.0], 2.0)


# ----------------------------------------------------------------------------------------------
# State


def test_state_continues_across_calls_and_reset_drops_it(rng):
    p1 = rng.standard_normal(10)
    p2 = p1.copy()
    g = rng.standard_normal(10)
    a, b = optim.Adam(lr=0.01), optim.Adam(lr=0.01)
    a.step([(p1, g)])
    a.step([(p1, g)])
    b.step([(p2, g)])
    b.reset()
    assert b.iterations == 0
    b.step([(p2, g)])  # a fresh first step again (bias correction of step 1)
    assert not np.array_equal(p1, p2)
    fresh = p1.copy()
    c = optim.Adam(lr=0.01)
    c.step([(fresh, g)])
    # step 1 moves by lr * sign(g) (approximately) whatever the state says
    np.testing.assert_allclose(np.abs(fresh - p1), 0.01, rtol=1e-6)


def test_state_is_kept_per_parameter_array(rng):
    x, y = np.zeros(4), np.zeros(4)
    opt = optim.SGD(lr=1.0, momentum=0.5)
    g = np.ones(4)
    opt.step([(x, g)])
    opt.step([(x, g), (y, g)])  # y is new: its buffer starts at zero
    assert x.tolist() == [-2.5] * 4 and y.tolist() == [-1.0] * 4


def test_changed_parameter_and_bad_pairs_are_errors():
    opt = optim.SGD(momentum=0.9)
    p = np.zeros(6)
    opt.step([(p, np.ones(6))])
    p.resize(7, refcheck=False)
    with pytest.raises(ValueError, match=r"changed from shape \(6,\).*to shape \(7,\)"):
        opt.step([(p, np.ones(7))])
    q = np.zeros((2, 3))
    with pytest.raises(
        ValueError,
        match=r"grad of shape \(3, 2\) and dtype float64 does not match its param of shape \(2, 3\)",
    ):
        opt.step([(q, np.zeros((3, 2)))])
    with pytest.raises(ValueError, match="dtype float32 does not match.*float64"):
        opt.step([(q, np.zeros((2, 3), np.float32))])
    with pytest.raises(ValueError, match="C-contiguous and writable"):
        opt.step([(np.zeros((4, 4))[:, 1], np.zeros(4))])
    with pytest.raises(TypeError, match="dtype float32 or float64, got int64"):
        opt.step([(np.zeros(3, np.int64), np.zeros(3, np.int64))])
    with pytest.raises(TypeError, match="param to be a numpy array, got list"):
        opt.step([([0.0], np.zeros(1))])
    with pytest.raises(TypeError, match="pairs"):
        opt.step([np.zeros(3)])


def test_non_contiguous_gradient_is_accepted_and_not_modified_by_clipping(rng):
    p = np.zeros(4)
    base = rng.standard_normal((4, 2)) * 100
    g = base[:, 0]
    optim.SGD(lr=1.0, clip_norm=1.0).step([(p, g)])
    assert np.array_equal(base[:, 0], g)  # the user's (non-contiguous) gradient is left alone
    assert np.linalg.norm(p) == pytest.approx(1.0, rel=1e-5)


# ----------------------------------------------------------------------------------------------
# Hyper-parameters


BAD_ARGUMENTS = [
    (lambda: optim.SGD(lr=-0.1), ValueError, "lr.*-0.1"),
    (lambda: optim.SGD(lr=float("nan")), ValueError, "lr.*nan"),
    (lambda: optim.SGD(lr=float("inf")), ValueError, "lr.*inf"),
    (lambda: optim.SGD(lr="0.1"), TypeError, "lr.*str"),
    (lambda: optim.SGD(lr=True), TypeError, "lr.*bool"),
    (lambda: optim.SGD(momentum=1.0), ValueError, r"momentum in \[0, 1\).*1.0"),
    (lambda: optim.SGD(momentum=-0.5), ValueError, "momentum.*-0.5"),
    (lambda: optim.SGD(momentum=False), TypeError, "momentum.*bool"),
    (lambda: optim.SGD(nesterov=True), ValueError, "nesterov.*momentum"),
    (lambda: optim.SGD(nesterov=1), TypeError, "nesterov.*bool"),
    (lambda: optim.SGD(weight_decay=-1), ValueError, "weight_decay.*-1"),
    (lambda: optim.SGD(clip_norm=0), ValueError, "clip_norm.*0"),
    (lambda: optim.SGD(clip_norm=-2.0), ValueError, "clip_norm.*-2.0"),
    (lambda: optim.SGD(clip_norm="1"), TypeError, "clip_norm.*str"),
    (lambda: optim.Adam(betas=(1.0, 0.999)), ValueError, r"betas\[0\].*1.0"),
    (lambda: optim.Adam(betas=(0.9, -0.1)), ValueError, r"betas\[1\].*-0.1"),
    (lambda: optim.Adam(betas=0.9), TypeError, "betas"),
    (lambda: optim.Adam(eps=0.0), ValueError, "eps.*0.0"),
    (lambda: optim.Adam(eps=-1e-8), ValueError, "eps.*-1e-08"),
    (lambda: optim.AdamW(weight_decay=-0.01), ValueError, "weight_decay.*-0.01"),
    (lambda: optim.AdamW(lr=None), TypeError, "lr.*NoneType"),
    (lambda: optim.RMSprop(alpha=1.5), ValueError, r"alpha in \[0, 1\].*1.5"),
    (lambda: optim.RMSprop(alpha=-0.1), ValueError, "alpha.*-0.1"),
    (lambda: optim.RMSprop(momentum=1.0), ValueError, "momentum.*1.0"),
    (lambda: optim.RMSprop(eps=0), ValueError, "eps.*0"),
    (lambda: optim.RMSprop(centered="yes"), TypeError, "centered.*str"),
    (lambda: optim.StepLR(optim.SGD(), step_size=0), ValueError, "step_size > 0, got 0"),
    (lambda: optim.StepLR(optim.SGD(), step_size=2.5), TypeError, "step_size.*float"),
    (lambda: optim.StepLR(optim.SGD(), step_size=True), TypeError, "step_size.*bool"),
    (lambda: optim.CosineAnnealingLR(optim.SGD(), T_max=-3), ValueError, "T_max > 0, got -3"),
    (
        lambda: optim.CosineAnnealingLR(optim.SGD(), T_max=10, eta_min=-1.0),
        ValueError,
        "eta_min.*-1.0",
    ),
    (lambda: optim.StepLR("sgd", step_size=1), TypeError, "Optimizer, got str"),
    (
        lambda: optim.get("adagrad"),
        ValueError,
        "unknown optimizer 'adagrad'.*sgd, adam, adamw, rmsprop",
    ),
    (lambda: optim.get(None), TypeError, "NoneType"),
]


@pytest.mark.parametrize("index", range(len(BAD_ARGUMENTS)))
def test_bad_arguments(index):
    make, error, message = BAD_ARGUMENTS[index]
    with pytest.raises(error, match=message):
        make()


def test_lr_property_validates():
    opt = optim.Adam()
    opt.lr = 0.5
    assert opt.lr == 0.5 and opt.get_config()["lr"] == 0.5
    with pytest.raises(ValueError, match="lr.*-1"):
        opt.lr = -1
    assert opt.lr == 0.5


def test_core_update_bindings_check_their_arguments():
    p, g = np.zeros(3), np.zeros(3)
    with pytest.raises(ValueError, match="momentum_buffer"):
        _core.sgd_update(p, g, None, 0.1, momentum=0.9)
    with pytest.raises(
        ValueError,
        match=r"param and momentum_buffer must have the same shape, got \(3,\) and \(2,\)",
    ):
        _core.sgd_update(p, g, np.zeros(2), 0.1, momentum=0.9)
    with pytest.raises(ValueError, match="step >= 1"):
        _core.adam_update(p, g, np.zeros(3), np.zeros(3), 0, 0.1, 0.9, 0.999, 1e-8, 0.0, False)
    with pytest.raises(ValueError, match="shares memory"):
        shared = np.zeros(3)
        _core.adam_update(p, g, shared, shared, 1, 0.1, 0.9, 0.999, 1e-8, 0.0, False)
    with pytest.raises(ValueError, match="grad_avg"):
        _core.rmsprop_update(p, g, np.zeros(3), 0.1, 0.99, 1e-8, 0.0, 0.0, None, True, None)
    with pytest.raises(TypeError, match="same dtype"):
        _core.sgd_update(p, g.astype(np.float32), None, 0.1)
    readonly = np.zeros(3)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="param is read-only"):
        _core.sgd_update(readonly, g, None, 0.1)


def test_get_and_configs():
    assert type(optim.get("sgd")) is optim.SGD and type(optim.get("adam")) is optim.Adam
    assert type(optim.get("adamw")) is optim.AdamW and type(optim.get("rmsprop")) is optim.RMSprop
    assert optim.get("adam") is not optim.get("adam")
    opt = optim.RMSprop(lr=0.1, centered=True, clip_norm=2.0)
    assert optim.get(opt) is opt
    assert opt.get_config() == {
        "lr": 0.1,
        "alpha": 0.99,
        "eps": 1e-8,
        "weight_decay": 0.0,
        "momentum": 0.0,
        "centered": True,
        "clip_norm": 2.0,
    }
    assert optim.AdamW().get_config() == {
        "lr": 1e-3,
        "betas": [0.9, 0.999],
        "eps": 1e-8,
        "weight_decay": 0.01,
        "clip_norm": None,
    }
    assert (
        optim.SGD(**{k: v for k, v in optim.SGD(momentum=0.5).get_config().items()}).momentum == 0.5
    )


# ----------------------------------------------------------------------------------------------
# Schedules


@pytest.mark.parametrize("kind", ["step", "cosine"])
def test_schedulers_match_torch(kind):
    torch = pytest.importorskip("torch")
    ours = optim.SGD(lr=0.3)
    param = torch.nn.Parameter(torch.zeros(1))
    theirs_opt = torch.optim.SGD([param], lr=0.3)
    if kind == "step":
        scheduler = optim.StepLR(ours, step_size=3, gamma=0.5)
        theirs = torch.optim.lr_scheduler.StepLR(theirs_opt, step_size=3, gamma=0.5)
    else:
        scheduler = optim.CosineAnnealingLR(ours, T_max=10, eta_min=0.01)
        theirs = torch.optim.lr_scheduler.CosineAnnealingLR(theirs_opt, T_max=10, eta_min=0.01)
    assert scheduler.get_last_lr() == theirs.get_last_lr()[0] == 0.3
    assert scheduler.base_lr == 0.3
    for epoch in range(1, 26):
        theirs_opt.step()
        theirs.step()
        scheduler.step()
        assert scheduler.last_epoch == epoch
        assert scheduler.get_last_lr() == pytest.approx(
            theirs.get_last_lr()[0], rel=1e-12, abs=1e-15
        )
        assert ours.lr == scheduler.get_last_lr()


def test_scheduler_closed_forms():
    opt = optim.SGD(lr=1.0)
    scheduler = optim.CosineAnnealingLR(opt, T_max=4)
    values = []
    for _ in range(4):
        scheduler.step()
        values.append(opt.lr)
    assert values == pytest.approx([0.5 + 0.5 * math.cos(math.pi * e / 4) for e in range(1, 5)])
    assert values[-1] == pytest.approx(0.0, abs=1e-16)


# ----------------------------------------------------------------------------------------------
# Threads and ISAs


@pytest.mark.parametrize("name", ["sgd_nesterov_wd", "adamw", "rmsprop_all"])
def test_large_updates_are_bit_identical_for_any_thread_count(name, restore_threads):
    results = []
    for threads in (1, 2):
        nncore.set_num_threads(threads)
        rng = np.random.default_rng(3)
        cls, kwargs, _, _ = CONFIGS[name]
        opt = cls(**kwargs, clip_norm=5.0)
        p = rng.standard_normal(300001).astype(np.float32)
        for _ in range(3):
            opt.step([(p, rng.standard_normal(300001).astype(np.float32))])
        results.append(p)
    assert np.array_equal(results[0], results[1])


ISA_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import nncore
    from nncore import losses, optim
    out = {{}}
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(11)
        tag = np.dtype(dtype).name
        t = rng.uniform(size=(9, 37)).astype(dtype)
        p = rng.uniform(0.05, 0.95, (9, 37)).astype(dtype)
        z = (4 * rng.standard_normal((9, 37))).astype(dtype)
        for name, loss, pred in (("mse", losses.MSE(), p), ("mae", losses.MAE(), p),
                                 ("bce", losses.BinaryCrossEntropy(), p),
                                 ("bcel", losses.BinaryCrossEntropy(from_logits=True), z),
                                 ("ce", losses.CrossEntropy(), z), ("cep", losses.CrossEntropy(), z)):
            target = rng.integers(0, 37, 9) if name == "ce" else t
            value, grad = loss.value_and_gradient(target, pred)
            out[name + "_" + tag] = [value] + grad.ravel().tolist()
        for name, opt in (("sgd", optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
                          ("adam", optim.Adam(lr=0.01, weight_decay=0.1)), ("adamw", optim.AdamW(lr=0.01)),
                          ("rmsprop", optim.RMSprop(momentum=0.5, centered=True, clip_norm=1.0))):
            param = rng.standard_normal(101).astype(dtype)
            for _ in range(3):
                opt.step([(param, rng.standard_normal(101).astype(dtype))])
            out[name + "_" + tag] = param.tolist()
        x = rng.uniform(-6, 6, 77).astype(dtype)
        for name, layer in (("gelu", nncore.GELU()), ("gelu_tanh", nncore.GELU("tanh"))):
            y = layer.forward(x)
            out[name + "_" + tag] = y.tolist() + layer.backward(np.ones_like(y)).tolist()
    print("RESULT=" + json.dumps(out))
    """
)


@pytest.mark.slow
def test_every_isa_path_agrees():
    available = nncore.cpu_info()["available_isas"]
    results = {}
    for isa in available:
        process = run_python(ISA_SCRIPT.format(), {"NNCORE_ISA": isa})
        assert process.returncode == 0, process.stderr
        line = next(line for line in process.stdout.splitlines() if line.startswith("RESULT="))
        results[isa] = json.loads(line[len("RESULT=") :])
    reference = results["scalar"]
    assert len(reference) == 2 * 12
    for isa, result in results.items():
        assert sorted(result) == sorted(reference)
        for name, values in result.items():
            rtol = 1e-5 if name.endswith("float32") else 1e-12
            got, want = np.array(values), np.array(reference[name])
            np.testing.assert_allclose(
                got, want, rtol=rtol, atol=rtol * np.abs(want).max(), err_msg=f"{name} on {isa}"
            )
