"""The native training engine: whole epochs (and predictions) of all-native networks in one C++ call.

When every layer of a network is a native ``Dense`` (each optionally followed by one native
activation: ``ReLU``, ``LeakyReLU``, ``Tanh``, ``Sigmoid``, ``GELU``), with at most a ``Flatten`` or
``Reshape`` in front, the loss is a native one and the optimizer a native one,
``Sequential.fit/predict/evaluate`` and the classic ``train``/``predict`` hand the work to
``nncore._core.Engine``: batch gathering, forward (activation fused into the GEMM epilogue),
loss, backward, gradient clipping, the optimizer update and the accuracy count all run in C++,
without the GIL and without allocating per step. The layers' own arrays are updated in place, and
the optimizer's own state arrays and step counts are used, so training can move between the
engine and the layer-by-layer path at any time. The results are bit-identical to the Python path
(except where subnormal values occur, and on the sparse-input path, both below).

Anything else (Dropout, Softmax, a user's layer, ``Activation(f, f')``, a user's loss or
optimizer subclass) runs layer by layer in Python, unchanged.

Switch: ``NNCORE_ENGINE=0`` in the environment, or ``nncore.engine.set_enabled(False)``, forces the
Python path (``set_enabled(None)`` returns to the environment's choice).

Inputs that are mostly zeros (at most ``SPARSE_INPUT_MAX_DENSITY`` of them nonzero, as MNIST's
pixels, 19%) are trained on by ``Sequential.fit`` through their nonzeros: the first layer's
forward and weight gradient then cost in proportion to the nonzeros (see ``src/cpp/sparse.h``).
Its sums then run in another order than the dense kernels', so such a fit matches the Python path
to rounding rather than bit for bit (it stays bit-identical for any thread count), and a zero input
times an infinite or NaN weight counts as zero rather than NaN. Batches of more than 2^20 input
values take the dense kernels all the same. ``set_sparse_input(False)`` (or ``True``, to force it)
overrides the choice; ``set_sparse_input(None)`` restores it.

``predict`` and ``evaluate`` (batches of 256 rows or more) leave zeros out too, with the same
values as without (see ``src/cpp/gemm.h``): each register tile of 12 rows skips the inputs at which
all its rows are zero in the first layer's product (MNIST: ~51% of them; its batch-10000
784 -> 256 product runs ~1.6x faster), provided the first layer's weights are all finite (a zero
times an infinite weight must give NaN); a zero or NaN result may differ in sign.
``set_sparse_input(False)`` turns this off too.

Training runs flush subnormal floats to zero (x86's flush-to-zero and denormals-are-zero modes, on
every thread of the run, restored afterwards), as TensorFlow's and XLA's CPU runtimes do: on Intel
cores each operation that produces or reads a subnormal takes a microcode assist of a hundred
cycles or more, and momentum buffers of weights whose gradient is zero (MNIST's border pixels),
Adam's second moments and confident softmax outputs decay into that range within an epoch (MNIST
MLP on a 2-core Xeon: 1.3-2x faster per epoch). Values that would be below the smallest normal
float (1.2e-38 in float32) become zero, so where they occur such a fit differs from the Python
path. ``set_flush_denormals(False)`` keeps IEEE subnormals; ``predict``, ``evaluate`` and the
layer-by-layer path never flush.

After an engine-run ``fit``/``train``/``Sequential.predict`` the layers' ``input``/``output``
attributes are not updated (they keep what the last Python ``forward`` stored). After the classic
``predict``, a layer's next ``backward`` first runs the pass again through the layers' ``forward``
(see ``Layer._pending_forward``), so the user's own training loop around ``predict`` works.
"""

from __future__ import annotations

import math
import os
import weakref
from typing import Any, NamedTuple, Optional

import numpy as np

try:
    from numpy.lib.array_utils import byte_bounds  # numpy >= 2
except ImportError:  # numpy 1.x
    byte_bounds = np.byte_bounds  # type: ignore[attr-defined]

from . import _core, optim
from . import losses as losses_module
from .activations import GELU, LeakyReLU, ReLU, Sigmoid, Tanh
from .dense import Dense
from .reshape import Flatten, Reshape

_override: Optional[bool] = None


def set_enabled(flag: Optional[bool]) -> None:
    """Use the engine when possible (True), never (False), or as ``NNCORE_ENGINE`` says (None)."""
    global _override
    if flag is not None and not isinstance(flag, (bool, np.bool_)):
        raise TypeError(f"engine.set_enabled: expected True, False or None, got {type(flag).__name__}")
    _override = None if flag is None else bool(flag)


# os.environ.get encodes the key and decodes the value on every call (about a microsecond, a
# noticeable part of a single-sample predict); on POSIX the raw bytes mapping behind it is read
# instead (it is what os.environ and monkeypatch.setenv update), and the last answer is reused
# while the raw value stays the same.
_environ_bytes = getattr(os.environ, "_data", None) if os.name == "posix" else None
if not isinstance(_environ_bytes, dict):
    _environ_bytes = None
_switch_memo: tuple[Any, bool] = (object(), True)


def enabled() -> bool:
    """Whether eligible networks run on the engine (default True; ``NNCORE_ENGINE=0`` turns it off)."""
    global _switch_memo
    if _override is not None:
        return _override
    raw = _environ_bytes.get(b"NNCORE_ENGINE") if _environ_bytes is not None else os.environ.get("NNCORE_ENGINE")
    if raw is _switch_memo[0] or raw == _switch_memo[0]:
        return _switch_memo[1]
    text = os.fsdecode(raw) if isinstance(raw, bytes) else (raw if raw is not None else "1")
    answer = text.strip().lower() not in ("0", "false", "no", "off")
    _switch_memo = (raw, answer)
    return answer


# The sparse-input path pays off below this share of nonzero inputs. Measured (784-256-128-10,
# batch 64, SGD momentum, 2 threads, s per 20000 samples, sparse vs dense path): nonzeros placed
# at random 10% 0.109 vs 0.129, 20% 0.123 vs 0.132, 25% 0.139 vs 0.135, 30% 0.141 vs 0.123;
# MNIST's pixels (19%, in strokes) 0.31-0.32 vs 0.37-0.39 s per epoch of 60000 (BENCHMARKS.md).
SPARSE_INPUT_MAX_DENSITY = 0.25
_sparse_override: Optional[bool] = None


def set_sparse_input(flag: Optional[bool]) -> None:
    """Train the first layer on the inputs' nonzeros always (True), never (False), or when at most
    ``SPARSE_INPUT_MAX_DENSITY`` of the inputs are nonzero (None, the default). False also stops
    ``predict`` and ``evaluate`` from skipping zero inputs in the first layer's product (see the
    module docstring)."""
    global _sparse_override
    if flag is not None and not isinstance(flag, (bool, np.bool_)):
        raise TypeError(f"engine.set_sparse_input: expected True, False or None, got {type(flag).__name__}")
    _sparse_override = None if flag is None else bool(flag)
    _core.set_skip_zero_inputs(_sparse_override is not False)


def sparse_input(x: np.ndarray) -> bool:
    """Whether training on the rows ``x`` takes the sparse-input path: the share of nonzeros (NaN
    counts as one) among 256 rows spread evenly over ``x``, or all of them when fewer (a function
    of the data alone, so every run decides the same)."""
    if _sparse_override is not None:
        return _sparse_override
    sample = x[np.linspace(0, len(x) - 1, min(len(x), 256)).astype(np.intp)] if len(x) else x
    return sample.size > 0 and np.count_nonzero(sample) <= SPARSE_INPUT_MAX_DENSITY * sample.size


_flush_denormals = True


def set_flush_denormals(flag: bool) -> None:
    """Run the engine's training with subnormal floats flushed to zero (True, the default) or as
    IEEE subnormals (False); see the module docstring."""
    global _flush_denormals
    if not isinstance(flag, (bool, np.bool_)):
        raise TypeError(f"engine.set_flush_denormals: expected True or False, got {type(flag).__name__}")
    _flush_denormals = bool(flag)


def flush_denormals() -> bool:
    """Whether the engine's training flushes subnormal floats to zero."""
    return _flush_denormals


_ACTIVATIONS = (ReLU, LeakyReLU, Tanh, Sigmoid, GELU)  # exact types: subclasses may override forward


def _activation_of(layer: Any) -> Optional[tuple[str, float]]:
    if type(layer) in _ACTIVATIONS:
        return layer._kind, float(layer._alpha)
    return None


class Plan(NamedTuple):
    prefix: tuple[Any, ...]  # Flatten / Reshape layers folded into an input reshape
    spec: tuple[tuple[Any, ...], ...]  # (weights, bias, weights_gradient, bias_gradient, act, alpha)
    dtype: np.dtype
    input_size: int
    output_size: int
    # Whether a classic column sample (features, 1) stays a column through every layer on the
    # layer-by-layer path: a Dense layer with one input reads its (1, 1) input as a row and so gives
    # a row, and the engine must give what that path gives.
    columns_survive: bool
    # Whether arrays of two different layers overlap (e.g. tied weights: one array in two Dense
    # layers). Training then runs layer by layer, where each layer's step is applied to the shared
    # array in turn, which the engine's per-sample path, holding a step back until that layer's
    # next forward, would not do. (Predicting is unaffected.)
    shares_memory: bool


def plan(layers: list[Any], allow_prefix: bool = True) -> Optional[Plan]:
    """The engine's view of ``layers``, or None when some layer needs the Python path."""
    if not enabled():
        return None
    if any(_overrides_forward_or_backward(layer) for layer in layers):
        return None
    i = 0
    prefix = []
    while allow_prefix and i < len(layers) and type(layers[i]) in (Flatten, Reshape):
        prefix.append(layers[i])
        i += 1
    spec = []
    seen: set[int] = set()
    while i < len(layers):
        dense = layers[i]
        if type(dense) is not Dense or id(dense) in seen:
            return None
        seen.add(id(dense))
        act, alpha = "identity", 0.0
        if i + 1 < len(layers) and type(layers[i + 1]) is not Dense:
            activation = _activation_of(layers[i + 1])
            if activation is None:
                return None
            act, alpha = activation
            i += 1
        i += 1
        arrays = (dense.weights, dense.bias, dense.weights_gradient, dense.bias_gradient)
        if not all(isinstance(a, np.ndarray) and a.dtype == dense.dtype for a in arrays):
            return None
        spec.append(arrays + (act, alpha))
    if not spec or len({s[0].dtype for s in spec}) != 1:
        return None
    return Plan(tuple(prefix), tuple(spec), spec[0][0].dtype, spec[0][0].shape[1], spec[-1][0].shape[0],
                all(s[0].shape[1] > 1 for s in spec), _layers_share_memory(spec))


def _overrides_forward_or_backward(layer: Any) -> bool:
    """Whether one layer object has its own forward or backward, which the engine would not run
    (``_core.same_attributes`` asks the same of a remembered plan's layers)."""
    own = getattr(layer, "__dict__", {})
    return "forward" in own or "backward" in own


def _layers_share_memory(spec: list[tuple[Any, ...]]) -> bool:
    """Whether arrays of two different layers overlap (see Plan.shares_memory)."""
    spans = [(*byte_bounds(a), layer) for layer, s in enumerate(spec) for a in s[:4] if a.size]
    return any(lo < hi2 and lo2 < hi and layer != layer2 for lo, hi, layer in spans for lo2, hi2, layer2 in spans)


def engine_for(owner: Any, p: Plan) -> Any:
    """The engine for plan ``p``, cached on ``owner`` while the layers keep the same arrays."""
    cached = getattr(owner, "_nncore_engine", None)
    if cached is not None:
        spec, engine = cached
        if len(spec) == len(p.spec) and all(
            all(a is b for a, b in zip(old[:4], new[:4])) and old[4:] == new[4:] for old, new in zip(spec, p.spec)
        ) and engine.unchanged():
            return engine
    try:
        engine = _core.Engine([tuple(s) for s in p.spec])
    except (ValueError, TypeError):  # e.g. a read-only or non-contiguous parameter
        return None
    try:
        owner._nncore_engine = (p.spec, engine)
    except AttributeError:
        pass
    return engine


_WATCHED_ATTRIBUTES = {
    Dense: ("weights", "bias", "weights_gradient", "bias_gradient", "dtype"),
    Reshape: ("input_shape", "output_shape"),
    **{kind: ("_kind", "_alpha") for kind in _ACTIVATIONS},
}


def _watched(layers: list[Any]) -> tuple[tuple[tuple[str, ...], ...], tuple[Any, ...]]:
    """What ``plan`` and ``input_rows`` read from ``layers`` that user code may replace between
    calls: each layer object and its type, a Dense layer's arrays and dtype, an activation's kind
    and slope, a Reshape's shapes. As (attribute names per layer, the objects in order) for
    ``_core.same_attributes``, which compares by identity, so a change (even to an equal new
    object) only costs a fresh plan. It also sees a forward or backward set on one layer object
    after the plan was made."""
    names = tuple(_WATCHED_ATTRIBUTES.get(type(layer), ()) for layer in layers)
    expected: list[Any] = []
    for i, (layer, attributes) in enumerate(zip(layers, names)):
        # The first layer itself is held weakly by the caller (it may be a dictionary key).
        expected += (None if i == 0 else layer, type(layer))
        expected += (getattr(layer, name) for name in attributes)
    return names, tuple(expected)


# Predictors of plain-list networks (the classic API), keyed by the first layer object: a list
# takes no attributes, and the entry goes when the layer does.
_list_predictors: "weakref.WeakKeyDictionary[Any, tuple[Any, ...]]" = weakref.WeakKeyDictionary()


def predictor(owner: Any, layers: list[Any], allow_prefix: bool = True) -> Optional[tuple[Plan, Any]]:
    """``plan(layers)`` and its engine, remembered between calls while the same layer objects hold
    the same arrays and settings, so a single-sample ``predict`` does not rebuild either (the
    remembered entry for a plain list holds its first layer, the key, only weakly). ``owner`` is the Sequential, or None for a
    plain list of layers. None when the layers need the Python path."""
    if not layers or not enabled():
        return None
    memo = _remembered(owner, layers, allow_prefix)
    if memo is not None and _core.same_attributes(layers, memo[2][0], memo[2][1]) and memo[3][1].unchanged():
        return memo[3]
    p = plan(layers, allow_prefix)
    runner = engine_for(owner, p) if p is not None else None
    if runner is None:
        return None
    try:
        # The first layer is held weakly: it is the key of _list_predictors, which must not keep it alive.
        entry = (allow_prefix, weakref.ref(layers[0]), _watched(layers), (p, runner))
        if owner is None:
            _list_predictors[layers[0]] = entry
        else:
            owner._nncore_predictor = entry
    except (TypeError, AttributeError):  # layers without weak references, or an owner without attributes
        pass
    return p, runner


def _remembered(owner: Any, layers: list[Any], allow_prefix: bool) -> Optional[tuple[Any, ...]]:
    """The entry ``predictor`` remembered for these layers (not yet checked against their current
    attributes), or None."""
    try:
        memo = _list_predictors.get(layers[0]) if owner is None else getattr(owner, "_nncore_predictor", None)
    except TypeError:  # a first layer that takes no weak reference
        return None
    return memo if memo is not None and memo[0] is allow_prefix and memo[1]() is layers[0] else None


def predict_rows(owner: Any, layers: list[Any], x: Any) -> Optional[np.ndarray]:
    """The engine's outputs for ``x`` when it already is what the engine reads and the network has
    no Flatten/Reshape in front: C-contiguous ``(n, input_size)`` rows (n >= 1) of the network's
    dtype, or (``owner`` None, the classic API) one ``(input_size, 1)`` column, whose output is
    then a column too. None otherwise: the caller takes its general path, which converts, checks
    and explains. This is the shortest way from ``predict`` to the C++ forward, for single samples,
    where Python's own work is a large part of the time. With an ``owner`` (``Sequential.predict``),
    outputs come with every layer's ``training`` set to False, as ``predict`` leaves them."""
    # The common case first: a remembered plan without a prefix, checked and run in one native call.
    memo = _remembered(owner, layers, owner is not None) if layers else None
    if memo is not None and not memo[3][0].prefix and enabled():
        p, runner = memo[3]
        outputs = runner.predict_if_current(
            layers, memo[2][0], memo[2][1], x, owner is None and p.columns_survive, owner is not None
        )
        if outputs is not None:
            return outputs
    if type(x) is not np.ndarray or x.ndim != 2 or not x.flags.c_contiguous or not x.size:
        return None
    planned = predictor(owner, layers, allow_prefix=owner is not None)
    if planned is None:
        return None
    p, runner = planned
    if p.prefix or x.dtype != p.dtype:
        return None
    if owner is None and x.shape == (p.input_size, 1) and p.columns_survive:
        return runner.predict(x.reshape(1, p.input_size)).reshape(p.output_size, 1)
    if x.shape[1] != p.input_size:
        return None
    outputs = runner.predict(x)
    if owner is not None:
        owner._set_training(False)
    return outputs


def input_rows(p: Plan, x: np.ndarray, batched: bool = True) -> Optional[tuple[np.ndarray, tuple[int, ...]]]:
    """``x`` (samples on the first axis) as engine rows ``(n, input_size)`` plus the shape of one
    output sample as the Python path would give it; None when the layout is not one the engine
    reproduces exactly."""
    shape = x.shape
    if x.ndim < 2 or (not batched and p.prefix):
        return None
    sample = shape[1:]
    for layer in p.prefix:
        if type(layer) is Flatten:
            sample = (math.prod(sample),)
        else:
            if shape == layer.input_shape or sample != layer.input_shape:
                return None
            sample = layer.output_shape
    if sample == (p.input_size,):
        out_sample: tuple[int, ...] = (p.output_size,)
    elif sample == (p.input_size, 1) and p.columns_survive:
        out_sample = (p.output_size, 1)
    else:
        return None
    rows = np.ascontiguousarray(x).reshape(len(x), p.input_size)
    return rows, out_sample


def loss_name(loss_fn: Any) -> Optional[str]:
    """The engine's name for a loss object, or None for a loss it does not run."""
    kind = type(loss_fn)  # exact types: a subclass may compute something else
    if kind in (losses_module.MSE, losses_module.MAE, losses_module.BinaryCrossEntropy):
        return loss_fn._kernel
    if kind is losses_module.CrossEntropy:
        return "cross_entropy"
    return None


def engine_targets(loss: str, targets: np.ndarray, p: Plan, out_sample: tuple[int, ...]) -> Optional[np.ndarray]:
    """Targets in the engine's layout, or None when the Python path must run (it then raises the
    same error it always did, e.g. for a shape mismatch or an out-of-range label)."""
    n = len(targets)
    if loss == "cross_entropy":
        if out_sample != (p.output_size,):
            return None
        if targets.ndim == 1 and targets.dtype == np.int64:
            if n and (targets.min() < 0 or targets.max() >= p.output_size):
                return None
            return np.ascontiguousarray(targets)
        if targets.shape == (n, p.output_size) and targets.dtype == p.dtype:
            return np.ascontiguousarray(targets)
        return None
    if targets.shape != (n,) + out_sample or targets.dtype != p.dtype:
        return None
    return np.ascontiguousarray(targets).reshape(n, p.output_size)


_OPTIMIZERS = {optim.SGD: "sgd", optim.Adam: "adam", optim.AdamW: "adamw", optim.RMSprop: "rmsprop"}


def optimizer_spec(opt: Any) -> Optional[tuple[str, dict[str, Any]]]:
    name = _OPTIMIZERS.get(type(opt))
    if name is None:
        return None
    hyper: dict[str, Any] = {"lr": opt.lr, "weight_decay": opt.weight_decay}
    if name == "sgd":
        hyper.update(momentum=opt.momentum, nesterov=opt.nesterov)
    elif name in ("adam", "adamw"):
        hyper.update(beta1=opt.betas[0], beta2=opt.betas[1], eps=opt.eps)
    else:
        hyper.update(alpha=opt.alpha, eps=opt.eps, momentum=opt.momentum, centered=opt.centered)
    return name, hyper


class OptimizerState:
    """The optimizer's own per-parameter state arrays and step counts, lent to the engine.

    Slots are created as ``Optimizer.step`` would create them; ``finish`` writes the step counts
    back and drops slots that were created but never stepped (as if the Python loop had run)."""

    def __init__(self, opt: optim.Optimizer, params: list[np.ndarray], where: str) -> None:
        self.opt = opt
        self.new_ids = [id(p) for p in params if id(p) not in opt._state]
        self.slots = [opt._slot(p, where) for p in params]
        self.arrays = [slot.arrays for slot in self.slots]
        self.steps = np.array([slot.steps for slot in self.slots], dtype=np.int64)

    def finish(self, batches: int) -> None:
        """Write back the step counts after ``batches`` more steps (may be called per chunk)."""
        for slot, steps in zip(self.slots, self.steps):
            slot.steps = int(steps)
        self.opt.iterations += batches
        for key, slot in zip([id(s.param) for s in self.slots], self.slots):
            if key in self.new_ids and slot.steps == 0 and self.opt._state.get(key) is slot:
                del self.opt._state[key]


def parameters_of(p: Plan) -> list[np.ndarray]:
    return [array for s in p.spec for array in s[:2]]


class Data(NamedTuple):
    """One data set ready for the engine: rows, targets in the engine's layout, the loss name."""

    engine: Any
    plan: Plan
    loss: str
    x: np.ndarray
    y: np.ndarray
    out_sample: tuple[int, ...]
    classification: bool
    sparse: bool  # train through the inputs' nonzeros (see sparse_input)


def prepare(owner: Any, layers: list[Any], loss_fn: Any, inputs: np.ndarray, targets: np.ndarray,
            training: bool) -> Optional[Data]:
    """Everything the engine needs to train or evaluate ``layers`` on inputs/targets as
    ``Sequential`` prepared them, or None when the Python path must run."""
    p = plan(layers)
    if p is None or (training and p.shares_memory):
        return None
    name = loss_name(loss_fn)
    rows = input_rows(p, inputs) if name is not None else None
    if rows is None or rows[0].dtype != p.dtype:
        return None
    x_rows, out_sample = rows
    y = engine_targets(name, targets, p, out_sample)
    engine = engine_for(owner, p) if y is not None else None
    if engine is None:
        return None
    classification = name in ("cross_entropy", "binary_cross_entropy", "binary_cross_entropy_logits")
    return Data(engine, p, name, x_rows, y, out_sample, classification, training and sparse_input(x_rows))


def logs_of(result: dict[str, Any], samples: int, classification: bool) -> dict[str, float]:
    """The epoch logs as ``Sequential``'s meter computes them."""
    logs = {"loss": result["loss_sum"] / max(samples, 1)}
    if classification:
        logs["accuracy"] = result["correct"] / max(result["counted"], 1)
    return logs


def evaluate(data: Data, batch_size: int) -> dict[str, float]:
    result = data.engine.run_epoch(
        data.x, data.y, None, batch_size, data.loss, count_accuracy=data.classification
    )
    return logs_of(result, len(data.x), data.classification)
