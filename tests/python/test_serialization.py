"""Model files (nncore.serialization): bit-exact round trips through standard safetensors files,
refusal of layers that cannot be rebuilt, atomic writes, and one error type (ModelFileError) for
every damaged or foreign file."""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path

import nncore
import numpy as np
import pytest
import safetensors.numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nncore import Activation, Dense, Layer, LeakyReLU, ReLU, Reshape, Sigmoid, Softmax, Tanh
from nncore.serialization import (
    FORMAT_VERSION,
    ModelFileError,
    load_layers,
    read_metadata,
    save_layers,
)
from safetensors import safe_open


@nncore.register_layer(name="test_serialization.Affine")
class Affine(Layer):
    """A user layer: y = x * scale + shift per feature, parameters through ``parameters()`` (so
    the default state_dict names them "0" and "1"), and a nested JSON config."""

    def __init__(self, features: int, label: str = "", options: dict | None = None) -> None:
        super().__init__()
        if not isinstance(features, int) or features <= 0:
            raise ValueError(f"Affine: features must be a positive int, got {features!r}")
        self.features, self.label, self.options = features, label, options or {}
        self.scale = np.ones(features, dtype=np.float64)
        self.shift = np.zeros(features, dtype=np.float64)
        self._gradients = (np.zeros_like(self.scale), np.zeros_like(self.shift))

    def forward(self, input):
        self.input = np.asarray(input, dtype=np.float64)
        self.output = self.input * self.scale + self.shift
        return self.output

    def parameters(self):
        return [(self.scale, self._gradients[0]), (self.shift, self._gradients[1])]

    def get_config(self):
        return {"features": self.features, "label": self.label, "options": self.options}


class Unregistered(Layer):
    def forward(self, input):
        return input


class DenseSubclass(Dense):
    """Subclasses of a registered class are not registered themselves."""


class ConfigOf(Layer):
    """A registered layer whose config is whatever the test gives it."""

    def __init__(self) -> None:
        super().__init__()
        self.config: object = {}
        self.state: dict = {}

    def get_config(self):
        return self.config

    def state_dict(self):
        return self.state


nncore.register_layer(ConfigOf, name="test_serialization.ConfigOf")


class MisnamedConfig(Layer):
    """A registered layer whose get_config() does not match its constructor's parameters."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_config(self):
        return {"width": self.size}


nncore.register_layer(MisnamedConfig, name="test_serialization.MisnamedConfig")


def make_network(seed: int = 0) -> list[Layer]:
    nncore.seed(seed)
    affine = Affine(5, label="user layer", options={"nested": [1, 2.5, None, "x"]})
    rng = np.random.default_rng(seed)
    affine.scale[:] = rng.uniform(-2, 2, 5)
    affine.shift[:] = rng.uniform(-1, 1, 5)
    network = [
        Dense(6, 8),
        Tanh(),
        Dense(8, 8),
        Sigmoid(),
        Dense(8, 10, dtype=np.float64),
        ReLU(),
        Reshape((10,), (2, 5)),
        Reshape((2, 5), (10,)),
        Dense(10, 5, dtype=np.float64),
        LeakyReLU(0.2),
        affine,
        Softmax(),
    ]
    for layer in network:
        if isinstance(layer, Dense):  # non-zero biases, so they are really compared
            layer.bias[:] = rng.uniform(-1, 1, layer.bias.shape)
    return network


def all_parameters(network):
    return {
        f"{i}.{name}": array
        for i, layer in enumerate(network)
        for name, array in layer.state_dict().items()
    }


def assert_bit_identical(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    unsigned = np.uint32 if a.dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(a.view(unsigned), b.view(unsigned))


@pytest.fixture
def model_file(tmp_path) -> Path:
    path = tmp_path / "model.safetensors"
    save_layers(make_network(), path)
    return path


# ----------------------------------------------------------------------------------------------
# Round trips


def test_round_trip_is_bit_exact_and_predicts_identically(tmp_path):
    network = make_network()
    path = tmp_path / "model.safetensors"
    save_layers(network, path)
    loaded = load_layers(path)

    assert [type(layer) for layer in loaded] == [type(layer) for layer in network]
    assert [layer.get_config() for layer in loaded] == [layer.get_config() for layer in network]
    original, restored = all_parameters(network), all_parameters(loaded)
    assert original.keys() == restored.keys()
    for name in original:
        assert_bit_identical(original[name], restored[name])
    x = np.random.default_rng(1).uniform(-3, 3, (7, 6)).astype(np.float32)
    np.testing.assert_array_equal(
        nncore.predict(network, x), nncore.predict(loaded, x), strict=True
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values_round_trip_bit_exact(tmp_path, dtype):
    info = np.finfo(dtype)
    unsigned = np.uint32 if dtype == np.float32 else np.uint64
    # A NaN with a payload and a negative NaN: their bits must survive too.
    nan_payload = np.array([0x7FC00123 if dtype == np.float32 else 0x7FF8000000000123], unsigned)
    negative_nan = np.array([0xFFC00000 if dtype == np.float32 else 0xFFF8000000000000], unsigned)
    special = np.concatenate(
        [
            np.array(
                [
                    np.nan,
                    np.inf,
                    -np.inf,
                    -0.0,
                    0.0,
                    info.tiny,
                    -info.tiny,
                    info.smallest_subnormal,
                    -info.smallest_subnormal,
                    info.tiny / 3,
                    info.max,
                    info.min,
                    info.eps,
                    1.0,
                    -1.0,
                ],
                dtype=dtype,
            ),
            nan_payload.view(dtype),
            negative_nan.view(dtype),
        ]
    )
    layer = Dense(special.size, 3, dtype=dtype)
    layer.weights[:] = special
    layer.bias[:] = special[:3]
    save_layers([layer], tmp_path / "special.safetensors")
    (loaded,) = load_layers(tmp_path / "special.safetensors")
    assert_bit_identical(layer.weights, loaded.weights)
    assert_bit_identical(layer.bias, loaded.bias)


def test_loaded_parameters_are_owned_writable_contiguous_and_trainable(model_file):
    loaded = load_layers(model_file)
    for layer in loaded:
        for array in layer.state_dict().values():
            assert array.flags.writeable and array.flags.c_contiguous
            # Owned: its own memory, or (Dense parameters, placed on 64-byte boundaries) a view of a
            # private buffer just large enough for that alignment, never of the file's bytes.
            owner = array if array.flags.owndata else array.base
            assert owner.flags.owndata and owner.base is None and owner.nbytes <= array.nbytes + 64
            assert array.dtype.isnative
    dense = loaded[0]
    before = dense.weights.copy()
    x = np.ones((2, 6), dtype=np.float32)
    dense.backward(np.ones_like(dense.forward(x)), 0.1)
    assert not np.array_equal(before, dense.weights)


def test_file_is_standard_safetensors_with_the_documented_metadata(model_file):
    network = make_network()
    tensors = safetensors.numpy.load_file(model_file)
    expected_names = {
        f"layers.{i}.{name}" for i, layer in enumerate(network) for name in layer.state_dict()
    }
    assert set(tensors) == expected_names
    assert "layers.10.0" in tensors and "layers.10.1" in tensors  # the default state_dict names
    for name, array in tensors.items():
        index, _, key = name[len("layers.") :].partition(".")
        assert_bit_identical(array, network[int(index)].state_dict()[key])

    with safe_open(model_file, framework="np") as handle:
        metadata = handle.metadata()
        assert set(handle.keys()) == expected_names
        assert_bit_identical(handle.get_tensor("layers.0.weights"), network[0].weights)
    assert metadata["format"] == "nncore"
    assert metadata["format_version"] == str(FORMAT_VERSION) == "1"
    assert metadata["dtype"] == "mixed"
    assert metadata["nncore_version"] == nncore.__version__
    assert len(metadata["sha256"]) == 64
    architecture = json.loads(metadata["architecture"])
    assert [entry["type"] for entry in architecture] == [
        "Dense",
        "Tanh",
        "Dense",
        "Sigmoid",
        "Dense",
        "ReLU",
        "Reshape",
        "Reshape",
        "Dense",
        "LeakyReLU",
        "test_serialization.Affine",
        "Softmax",
    ]
    assert architecture[9]["config"] == {"negative_slope": 0.2}
    assert read_metadata(model_file) == metadata


def test_network_dtype_and_extra_metadata(tmp_path):
    path = tmp_path / "m.safetensors"
    save_layers([Dense(2, 2), Tanh()], path, extra_metadata={"author": "me", "epochs": "3"})
    metadata = read_metadata(path)
    assert metadata["dtype"] == "float32"
    assert metadata["author"] == "me" and metadata["epochs"] == "3"
    save_layers([Dense(2, 2, dtype=np.float64)], path)
    assert read_metadata(path)["dtype"] == "float64"
    save_layers([Tanh(), Softmax()], path)
    assert read_metadata(path)["dtype"] == "none"
    assert [type(layer) for layer in load_layers(path)] == [Tanh, Softmax]
    save_layers([], path)
    assert load_layers(path) == []


def test_saving_over_an_existing_file_replaces_it(tmp_path):
    path = tmp_path / "m.safetensors"
    save_layers([Dense(2, 3)], path)
    save_layers([Dense(4, 1), Sigmoid()], path)
    loaded = load_layers(path)
    assert loaded[0].weights.shape == (1, 4) and isinstance(loaded[1], Sigmoid)
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_loading_does_not_consume_the_random_generator(model_file):
    nncore.seed(0)
    expected = Dense(4, 4).weights.copy(), nncore._random.generator().random(8)
    nncore.seed(0)
    load_layers(model_file)
    read_metadata(model_file)
    got = Dense(4, 4).weights.copy(), nncore._random.generator().random(8)
    np.testing.assert_array_equal(expected[0], got[0])
    np.testing.assert_array_equal(expected[1], got[1])


# ----------------------------------------------------------------------------------------------
# Refused on save: nothing is written


def _assert_nothing_written(directory: Path, existing: dict[str, bytes]) -> None:
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == existing


@pytest.mark.parametrize(
    "bad_layer, pattern",
    [
        (Unregistered(), r"layer 1 \(Unregistered\).*register_layer.*get_config.*state_dict"),
        (
            Activation(np.tanh, lambda x: 1 - np.tanh(x) ** 2),
            r"layer 1 \(Activation\).*register_layer",
        ),
        (DenseSubclass(2, 2), r"layer 1 \(DenseSubclass\).*not a registered layer type"),
        ("not a layer", r"layer 1 \(str\).*register_layer"),
    ],
)
def test_unregistered_layers_are_refused_and_nothing_is_written(tmp_path, bad_layer, pattern):
    path = tmp_path / "model.safetensors"
    with pytest.raises(TypeError, match=pattern):
        save_layers([Dense(2, 2), bad_layer], path)
    _assert_nothing_written(tmp_path, {})
    save_layers([Dense(2, 2)], path)
    old = path.read_bytes()
    with pytest.raises(TypeError):
        save_layers([Dense(2, 2), bad_layer], path)
    _assert_nothing_written(tmp_path, {"model.safetensors": old})


@pytest.mark.parametrize(
    "config, state, error, pattern",
    [
        ({"value": np.float32(1.5)}, {}, TypeError, "not JSON-serialisable"),
        ({"value": {1, 2}}, {}, TypeError, "not JSON-serialisable"),
        ({"value": float("nan")}, {}, TypeError, "not JSON-serialisable"),
        ({"value": lambda: 0}, {}, TypeError, "not JSON-serialisable"),
        ({1: "int key"}, {}, TypeError, "str keys"),
        (["not", "a", "dict"], {}, TypeError, "dict"),
        ({}, {"w": np.arange(3)}, TypeError, "float32 or float64"),
        ({}, {"w": np.ones(3, np.float16)}, TypeError, "float32 or float64"),
        ({}, {"w": [1.0, 2.0]}, TypeError, "float32 or float64"),
        ({}, {"": np.ones(3)}, TypeError, "non-empty str"),
    ],
)
def test_unsaveable_config_or_state_is_refused_naming_the_layer(
    tmp_path, config, state, error, pattern
):
    layer = ConfigOf()
    layer.config, layer.state = config, state
    with pytest.raises(error, match=rf"layer 2 \(ConfigOf\).*{pattern}"):
        save_layers([Tanh(), Tanh(), layer], tmp_path / "m.safetensors")
    _assert_nothing_written(tmp_path, {})


@nncore.register_layer(name="test_serialization.Parameters")
class Parameters(Layer):
    """A user layer holding any parameters, described by its config: {name: [dtype, shape]}."""

    def __init__(self, shapes: dict[str, list]) -> None:
        super().__init__()
        self.shapes = shapes
        self.state = {name: np.zeros(shape, dtype) for name, (dtype, shape) in shapes.items()}

    def get_config(self):
        return {"shapes": self.shapes}

    def state_dict(self):
        return self.state


def assert_parameters_round_trip(layer: Parameters, path: Path) -> None:
    save_layers([layer, Tanh()], path)
    loaded, _ = load_layers(path)
    assert loaded.state.keys() == layer.state.keys()
    for name, array in layer.state.items():
        assert_bit_identical(loaded.state[name], array)


def test_scalar_empty_and_dotted_parameters_round_trip(tmp_path):
    """0-d and zero-size tensors are valid safetensors; a dot inside a parameter name is kept."""
    layer = Parameters(
        {
            "scalar": ["float64", []],
            "empty": ["float64", [0, 3]],
            "empty32": ["float32", [2, 1, 0]],
            "block.weight": ["float64", [2, 3]],
        }
    )
    layer.state["scalar"][()] = -0.0
    layer.state["block.weight"][:] = np.arange(6.0).reshape(2, 3)
    assert_parameters_round_trip(layer, tmp_path / "m.safetensors")
    names = set(safetensors.numpy.load_file(tmp_path / "m.safetensors"))
    assert names == {f"layers.0.{n}" for n in layer.state}


def test_non_native_byte_order_is_saved_as_its_values(tmp_path):
    layer = Dense(2, 2, dtype=np.float64)
    layer.weights = np.arange(4, dtype=">f8").reshape(2, 2)
    save_layers([layer], tmp_path / "m.safetensors")
    np.testing.assert_array_equal(
        safetensors.numpy.load_file(tmp_path / "m.safetensors")["layers.0.weights"], [[0.0, 1.0], [2.0, 3.0]]
    )
    np.testing.assert_array_equal(load_layers(tmp_path / "m.safetensors")[0].weights, [[0.0, 1.0], [2.0, 3.0]])


@pytest.mark.parametrize(
    "replace, pattern",
    [
        (lambda d: setattr(d, "weights", np.zeros((3, 4))), r"'weights' is stored with shape \(3, 4\) and dtype float64.*needs shape \(3, 4\) and dtype float32"),
        (lambda d: setattr(d, "weights", np.zeros((4, 3), np.float32)), r"'weights' is stored with shape \(4, 3\).*needs shape \(3, 4\)"),
        (lambda d: setattr(d, "config", None) or setattr(d, "get_config", lambda: {"input_size": 4, "output_size": 2}), r"needs shape \(2, 4\)"),
    ],
)
def test_a_model_that_would_not_load_back_is_not_saved(tmp_path, replace, pattern):
    # e.g. weights replaced by what np.load or numpy arithmetic gave: refused before any write, so
    # the good file saved earlier stays.
    path = tmp_path / "m.safetensors"
    nncore.seed(1)
    network = [Dense(4, 3), Tanh()]
    save_layers(network, path)
    good = path.read_bytes()
    replace(network[0])
    with pytest.raises(ValueError, match="nothing written, the file would not load back: .*" + pattern):
        save_layers(network, path)
    _assert_nothing_written(tmp_path, {"m.safetensors": good})


@pytest.mark.parametrize(
    "extra, error",
    [
        ({"format": "x"}, ValueError),
        ({"sha256": "x"}, ValueError),
        ({"n": 1}, TypeError),
        ("x", TypeError),
    ],
)
def test_bad_extra_metadata_is_refused(tmp_path, extra, error):
    with pytest.raises(error):
        save_layers([Dense(2, 2)], tmp_path / "m.safetensors", extra_metadata=extra)
    _assert_nothing_written(tmp_path, {})


def test_a_single_layer_instead_of_a_list_is_refused(tmp_path):
    with pytest.raises(TypeError, match=r"pass \[layer\]"):
        save_layers(Dense(2, 2), tmp_path / "m.safetensors")


def test_missing_parent_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_layers([Dense(2, 2)], tmp_path / "no" / "such" / "m.safetensors")
    _assert_nothing_written(tmp_path, {})


# ----------------------------------------------------------------------------------------------
# Atomic writes


@pytest.mark.parametrize("failing", ["replace", "fsync", "fsync-interrupt", "chmod"])
def test_failed_save_leaves_the_old_file_intact_and_no_temporary_file(
    tmp_path, monkeypatch, failing
):
    path = tmp_path / "model.safetensors"
    save_layers(make_network(0), path)
    old = path.read_bytes()

    def fail(*args, **kwargs):
        if failing == "fsync-interrupt":
            raise KeyboardInterrupt  # a Ctrl-C half-way through the save
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(os, failing.partition("-")[0], fail)
    with pytest.raises((OSError, KeyboardInterrupt)):
        save_layers(make_network(1), path)
    monkeypatch.undo()
    _assert_nothing_written(tmp_path, {"model.safetensors": old})
    load_layers(path)


# ----------------------------------------------------------------------------------------------
# Damaged and foreign files: always ModelFileError


def _split(path: Path) -> tuple[dict, bytes]:
    blob = path.read_bytes()
    length = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + length]), blob[8 + length :]


def _join(path: Path, header: dict, data: bytes) -> None:
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def _resign(header: dict, data: bytes) -> None:
    """Recompute the checksum, as someone deliberately crafting a file would, so that the check
    after the checksum is what has to catch the problem."""
    from nncore.serialization import _checksum

    tensors = []
    for name, entry in header.items():
        if name != "__metadata__":
            begin, end = entry["data_offsets"]
            dtype = {"F32": "<f4", "F64": "<f8"}.get(entry["dtype"], "u1")
            tensors.append(
                (name, entry["dtype"], entry["shape"], np.frombuffer(data[begin:end], dtype))
            )
    header["__metadata__"]["sha256"] = _checksum(header["__metadata__"], tensors)


def _tamper(path: Path, edit, resign: bool) -> None:
    header, data = _split(path)
    new_data = edit(header, data)  # edits change the header in place; some also return new data
    if isinstance(new_data, bytes):
        data = new_data
    if resign:
        _resign(header, data)
    _join(path, header, data)


def _assert_rejected(
    path: Path, pattern: str | None = None, *, found_without_layers: bool = True
) -> ModelFileError:
    """load_layers raises ModelFileError naming the file; so does read_metadata unless the
    problem only shows when the layers are built."""
    with pytest.raises(ModelFileError, match=pattern) as caught:
        load_layers(path)
    assert str(path) in str(caught.value)
    if found_without_layers:
        with pytest.raises(ModelFileError, match=pattern):
            read_metadata(path)
    else:
        read_metadata(path)
    return caught.value


def test_a_resigned_unchanged_file_still_loads(model_file):
    """The tampering helpers themselves are sound: re-signing an unchanged file changes nothing."""
    _tamper(model_file, lambda header, data: None, resign=True)
    load_layers(model_file)


def test_truncation_at_every_offset_is_rejected(model_file):
    blob = model_file.read_bytes()
    header_end = 8 + int.from_bytes(blob[:8], "little")
    assert header_end < len(blob) - 100  # the cuts below land in the header and in the data
    for size in range(len(blob)):
        model_file.write_bytes(blob[:size])
        with pytest.raises(ModelFileError, match="empty|too short|truncated|header length|JSON"):
            load_layers(model_file)


def test_appended_bytes_are_rejected(model_file):
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    _assert_rejected(model_file, "unexpected bytes after the data")


def test_every_single_byte_flip_is_rejected(model_file):
    """A flip anywhere (length prefix, header JSON, metadata, tensor data) never loads."""
    blob = model_file.read_bytes()
    for position in range(len(blob)):
        damaged = bytearray(blob)
        damaged[position] ^= 1 << (position % 8)
        model_file.write_bytes(damaged)
        with pytest.raises(ModelFileError):
            load_layers(model_file)


def test_flipped_data_byte_is_reported_as_a_checksum_mismatch(model_file):
    blob = bytearray(model_file.read_bytes())
    blob[-5] ^= 0x10
    model_file.write_bytes(blob)
    _assert_rejected(model_file, "checksum does not match")


def test_flipped_metadata_byte_is_reported_as_a_checksum_mismatch(model_file):
    """A change to a config value that still parses (a LeakyReLU slope) is caught as well."""
    _tamper(
        model_file,
        lambda header, data: header["__metadata__"].update(
            architecture=header["__metadata__"]["architecture"].replace(
                '"negative_slope": 0.2', '"negative_slope": 0.3'
            )
        ),
        resign=False,
    )
    _assert_rejected(model_file, "checksum does not match")


@pytest.mark.parametrize("version", ["2", "0", "999", "1.0", "", "one", "\u0661"])
def test_unsupported_format_version(model_file, version):
    _tamper(
        model_file,
        lambda header, data: header["__metadata__"].update(format_version=version),
        resign=True,
    )
    error = _assert_rejected(model_file, "format_version")
    assert "1" in str(error).split("format_version", 1)[1]  # names the supported version


def test_missing_format_version(model_file):
    _tamper(
        model_file, lambda header, data: header["__metadata__"].pop("format_version"), resign=True
    )
    _assert_rejected(model_file, "format_version")


@pytest.mark.parametrize("key", ["architecture", "dtype", "nncore_version", "sha256"])
def test_missing_metadata_entry(model_file, key):
    _tamper(
        model_file, lambda header, data: header["__metadata__"].pop(key), resign=key != "sha256"
    )
    _assert_rejected(model_file, f"lacks {key}")


def test_declared_dtype_must_match_the_tensors(model_file):
    _tamper(
        model_file, lambda header, data: header["__metadata__"].update(dtype="float32"), resign=True
    )
    _assert_rejected(model_file, "dtype")


def _edit_architecture(change):
    def edit(header, data):
        architecture = json.loads(header["__metadata__"]["architecture"])
        change(architecture)
        header["__metadata__"]["architecture"] = json.dumps(architecture)

    return edit


@pytest.mark.parametrize(
    "change, pattern",
    [
        (lambda a: a[0]["config"].update(input_size=-3), "layer 0 \\(Dense\\).*cannot be built"),
        (lambda a: a[0]["config"].update(input_size="six"), "layer 0 \\(Dense\\).*cannot be built"),
        (lambda a: a[0]["config"].update(dtype="int8"), "layer 0 \\(Dense\\).*cannot be built"),
        (lambda a: a[0]["config"].update(unexpected=1), "layer 0 \\(Dense\\).*cannot be built"),
        (
            lambda a: a[9]["config"].update(negative_slope=-1),
            "layer 9 \\(LeakyReLU\\).*cannot be built",
        ),
        (
            lambda a: a[6]["config"].update(output_shape=[3, 5]),
            "layer 6 \\(Reshape\\).*cannot be built",
        ),
        (lambda a: a[10]["config"].update(features=0), "layer 10 .*Affine.*cannot be built"),
        (lambda a: a[1]["config"].update(x=1), "layer 1 \\(Tanh\\).*cannot be built"),
        (
            lambda a: a[0]["config"].update(output_size=9),
            "layer 0 \\(Dense\\).*shape \\(8, 6\\).*\\(9, 6\\)",
        ),
        (lambda a: a[4]["config"].update(dtype="float32"), "layer 4 \\(Dense\\).*float64.*float32"),
        (
            lambda a: a[1].update(type="NoSuchLayer"),
            "unknown layer type 'NoSuchLayer'.*register_layer",
        ),
        (lambda a: a[1].update(type="Activation"), "unknown layer type 'Activation'"),
        (lambda a: a[1].update(type="__import__"), "unknown layer type"),
        (lambda a: a[1].pop("config"), "architecture entry 1"),
        (lambda a: a[1].update(config=[1]), "architecture entry 1"),
        (lambda a: a[1].update(type=7), "architecture entry 1"),
        (lambda a: a.append("Dense"), "architecture entry 12"),
        (lambda a: a.pop(0), "layer 1 \\(Dense\\).*lacks the parameters layers.1.bias"),
        (lambda a: a.pop(10), "no layer of its architecture uses: layers.10.0, layers.10.1"),
    ],
)
def test_invalid_architecture_is_rejected(model_file, change, pattern):
    original = model_file.read_bytes()
    _tamper(model_file, _edit_architecture(change), resign=False)
    _assert_rejected(model_file, "checksum does not match")
    model_file.write_bytes(original)
    _tamper(model_file, _edit_architecture(change), resign=True)
    _assert_rejected(model_file, pattern, found_without_layers="architecture entry" in pattern)


@pytest.mark.parametrize("text", ["not json", '{"type": "Dense"}', "[1, 2", "null", "[" * 100_000])
def test_architecture_that_is_not_a_json_list(model_file, text):
    _tamper(
        model_file,
        lambda header, data: header["__metadata__"].update(architecture=text),
        resign=True,
    )
    _assert_rejected(model_file, "architecture")


def _rename(old, new):
    def edit(header, data):
        header[new] = header.pop(old)

    return edit


def _reshape(name, shape):
    def edit(header, data):
        header[name]["shape"] = shape

    return edit


def _append_tensor(name):
    def edit(header, data):
        header[name] = {"dtype": "F32", "shape": [2], "data_offsets": [len(data), len(data) + 8]}
        return data + np.array([1.0, 2.0], "<f4").tobytes()

    return edit


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (_rename("layers.0.bias", "layers.0.bias2"), "layer 0 \\(Dense\\).*lacks.*layers.0.bias"),
        (_rename("layers.0.bias", "layers.1.bias"), "lacks.*layers.0.bias"),
        (_rename("layers.10.0", "layers.10.scale"), "lacks.*layers.10.0"),
        (_reshape("layers.0.weights", [6, 8]), "parameter 'weights'.*shape \\(6, 8\\).*\\(8, 6\\)"),
        (_reshape("layers.0.weights", [48]), "parameter 'weights'.*shape \\(48,\\)"),
        (_reshape("layers.0.bias", [1, 8]), "parameter 'bias'.*shape \\(1, 8\\)"),
        (_append_tensor("layers.1.extra"), "no layer of its architecture uses: layers.1.extra"),
        (_append_tensor("something.else"), "no layer of its architecture uses: something.else"),
    ],
)
def test_tensor_names_and_shapes_must_match_the_layers(model_file, edit, pattern):
    """Renamed tensors and shapes changed consistently with their offsets (a valid safetensors
    file): the checksum catches it, and without the checksum the comparison with the layers does."""
    original = model_file.read_bytes()
    _tamper(model_file, edit, resign=False)
    _assert_rejected(model_file, "checksum does not match")
    model_file.write_bytes(original)
    _tamper(model_file, edit, resign=True)
    _assert_rejected(model_file, pattern, found_without_layers=False)


def _set_entry(name, **fields):
    def edit(header, data):
        header[name].update(fields)

    return edit


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (_set_entry("layers.4.bias", dtype="F16"), "dtype 'F16'"),
        (_set_entry("layers.4.bias", dtype="F32"), "needs 40 bytes"),
        (_set_entry("layers.4.bias", shape=[-10]), "non-negative ints"),
        (_set_entry("layers.4.bias", shape=[10.0]), "non-negative ints"),
        (_set_entry("layers.4.bias", shape=[True] * 10), "non-negative ints"),
        (_set_entry("layers.4.bias", shape="10"), "non-negative ints"),
        (_set_entry("layers.4.bias", data_offsets=[5]), "data_offsets"),
        (_set_entry("layers.4.bias", data_offsets=[10, 5]), "data_offsets"),
        (_set_entry("layers.4.bias", extra=1), "expected an object"),
        (lambda header, data: header.update({"x": 5}), "expected an object"),
        (lambda header, data: header.update(__metadata__={"format": 1}), "str to str"),
        (lambda header, data: header.update(__metadata__=[]), "str to str"),
        (lambda header, data: header.pop("__metadata__"), "no metadata"),
        (lambda header, data: header["__metadata__"].update(format="pt"), "format is 'pt'"),
        (lambda header, data: header["__metadata__"].pop("format"), "format is None"),
    ],
)
def test_malformed_safetensors_header(model_file, edit, pattern):
    _tamper(model_file, edit, resign=False)
    _assert_rejected(model_file, pattern)


def test_overlapping_and_gapped_tensors_are_rejected(model_file):
    header, data = _split(model_file)
    begin, end = header["layers.0.bias"]["data_offsets"]
    header["layers.0.bias"]["data_offsets"] = [begin + 4, end + 4]
    _join(model_file, header, data)
    _assert_rejected(model_file, "back to back|truncated")


def test_duplicate_keys_in_the_header_are_rejected(model_file):
    header, data = _split(model_file)
    text = json.dumps(header).encode()
    # The same tensor once more, pointing at other bytes: which one would a reader take?
    text = (
        text[:-1] + b', "layers.0.bias": ' + json.dumps(header["layers.0.weights"]).encode() + b"}"
    )
    model_file.write_bytes(len(text).to_bytes(8, "little") + text + data)
    _assert_rejected(model_file, "duplicate key")


@pytest.mark.parametrize(
    "content, pattern",
    [
        (b"", "empty"),
        (b"\x05", "too short"),
        (b"\x02\0\0\0\0\0\0\0{}"[:9], "too short"),
        ((10**12).to_bytes(8, "little") + b"{}", "header length"),
        ((2**64 - 1).to_bytes(8, "little") + b"{}" * 4, "header length"),
        ((0).to_bytes(8, "little") + b"{}", "header length"),
        ((4).to_bytes(8, "little") + b"\xff\xfe{}", "not valid JSON"),
        ((4).to_bytes(8, "little") + b"[1,2]"[:4], "not valid JSON"),
        ((2).to_bytes(8, "little") + b"[]", "JSON list, not an object"),
        ((2).to_bytes(8, "little") + b"{}", "no metadata"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "header length"),
        (b"PK\x03\x04" + b"\0" * 64, "header length"),  # a zip (torch.save's format)
        (pickle.dumps({"weights": np.ones((3, 3))}), None),
        (b"# a text file\nweights = [1, 2, 3]\n", "header length"),
    ],
)
def test_foreign_and_garbage_files(tmp_path, content, pattern):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    _assert_rejected(path, pattern)


def test_random_garbage_is_rejected(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "garbage.safetensors"
    for size in [1, 7, 8, 9, 16, 100, 1000, 100_000]:
        for plausible_length in [False, True]:
            garbage = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
            if plausible_length and size > 8:  # a header length that fits: the JSON parse must fail
                garbage = (size - 8).to_bytes(8, "little") + garbage[8:]
            path.write_bytes(garbage)
            _assert_rejected(path)


def test_safetensors_file_of_another_tool(tmp_path):
    path = tmp_path / "other.safetensors"
    safetensors.numpy.save_file({"weight": np.ones((2, 2), np.float32)}, path)
    _assert_rejected(path, "no metadata")
    safetensors.numpy.save_file({"weight": np.ones(2, np.float32)}, path, metadata={"format": "pt"})
    _assert_rejected(path, "not an nncore model file")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file") as caught:
        load_layers(tmp_path / "absent.safetensors")
    assert isinstance(caught.value, FileNotFoundError)  # catchable either way
    with pytest.raises(FileNotFoundError):
        read_metadata(tmp_path / "absent.safetensors")
    with pytest.raises(ModelFileError, match="cannot read"):
        load_layers(tmp_path)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(
        st.tuples(
            st.sampled_from(["set", "insert", "delete"]), st.integers(0, 10**9), st.integers(0, 255)
        ),
        min_size=1,
        max_size=4,
    )
)
def test_random_damage_never_loads_differently_or_raises_another_error(model_file, edits):
    """Whatever happens to the bytes, loading gives either the original network or ModelFileError."""
    original = model_file.read_bytes()
    damaged = bytearray(original)
    for kind, position, value in edits:
        position %= len(damaged) + 1
        if kind == "insert":
            damaged.insert(position, value)
        elif damaged and position < len(damaged):
            if kind == "set":
                damaged[position] = value
            else:
                del damaged[position]
    path = model_file.with_name("damaged.safetensors")
    path.write_bytes(damaged)
    try:
        loaded = load_layers(path)
    except ModelFileError:
        assert bytes(damaged) != original
        return
    expected = all_parameters(load_layers(model_file))
    got = all_parameters(loaded)
    assert expected.keys() == got.keys()
    for name in expected:
        assert_bit_identical(expected[name], got[name])


def test_new_file_gets_the_umask_mode_and_a_replaced_file_keeps_its_mode(tmp_path):
    path = tmp_path / "m.safetensors"
    previous = os.umask(0o027)
    try:
        save_layers([Dense(2, 2)], path)
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o640
    path.chmod(0o600)
    save_layers([Dense(3, 3)], path)
    assert path.stat().st_mode & 0o777 == 0o600


class _WritesMarker:
    """Unpickling this object would create a file: loading must never get that far."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_a_malicious_pickle_is_rejected_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps(_WritesMarker(marker)))
    _assert_rejected(path)
    assert not marker.exists()


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["float32", "float64"]),
            st.lists(st.integers(0, 4), min_size=0, max_size=3),
            st.integers(0, 2**32 - 1),
        ),
        min_size=0,
        max_size=4,
    )
)
def test_any_float_parameters_round_trip_bit_exact(tmp_path_factory, specs):
    """Random shapes (0-d, empty included) and random bit patterns (every NaN payload, subnormals,
    infinities) survive save and load unchanged."""
    layer = Parameters({f"p{i}": [dtype, shape] for i, (dtype, shape, _) in enumerate(specs)})
    for i, (dtype, shape, seed) in enumerate(specs):
        unsigned = np.uint32 if dtype == "float32" else np.uint64
        bits = np.random.default_rng(seed).integers(0, np.iinfo(unsigned).max, shape, unsigned)
        layer.state[f"p{i}"][...] = bits.view(dtype)
    assert_parameters_round_trip(layer, tmp_path_factory.mktemp("prop") / "m.safetensors")


def test_concurrent_saves_leave_one_complete_file(tmp_path):
    """Threads saving different networks to one path: the file is always one of them, whole."""
    import threading

    path = tmp_path / "model.safetensors"
    networks = [[Dense(3, 3 + i)] for i in range(8)]
    barrier = threading.Barrier(len(networks))
    errors = []

    def save(network):
        barrier.wait()
        try:
            for _ in range(5):
                save_layers(network, path)
                load_layers(path)  # readers never see a partial file
        except (OSError, ValueError, TypeError) as error:  # threads would otherwise lose it
            errors.append(error)

    threads = [threading.Thread(target=save, args=(network,)) for network in networks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    (loaded,) = load_layers(path)
    match = [n[0] for n in networks if n[0].weights.shape == loaded.weights.shape]
    assert len(match) == 1
    assert_bit_identical(loaded.weights, match[0].weights)
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_a_file_rewritten_by_another_safetensors_writer_still_loads(model_file, tmp_path):
    """Nothing depends on nncore's own byte layout: the same tensors and metadata written by
    safetensors.numpy.save_file (its own tensor order and header padding) load identically."""
    with safe_open(model_file, framework="np") as handle:
        metadata = handle.metadata()
    tensors = safetensors.numpy.load_file(model_file)
    rewritten = tmp_path / "rewritten.safetensors"
    safetensors.numpy.save_file(dict(reversed(list(tensors.items()))), rewritten, metadata=metadata)
    original, loaded = (
        all_parameters(load_layers(model_file)),
        all_parameters(load_layers(rewritten)),
    )
    assert original.keys() == loaded.keys()
    for name in original:
        assert_bit_identical(original[name], loaded[name])


# ----------------------------------------------------------------------------------------------
# Where a save lands, and what it refuses to replace


def test_a_file_name_near_the_length_limit_saves(tmp_path):
    path = tmp_path / ("a" * 240 + ".safetensors")  # 252 bytes, which a plain open() accepts
    save_layers([Dense(2, 2)], path)
    assert len(load_layers(path)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_save_through_a_symbolic_link_writes_the_linked_file(tmp_path):
    real = tmp_path / "real.safetensors"
    save_layers(make_network(0), real)
    link = tmp_path / "link.safetensors"
    link.symlink_to(real)
    save_layers(make_network(1), link)
    assert link.is_symlink() and os.readlink(link) == str(real)
    expected = all_parameters(make_network(1))
    loaded = all_parameters(load_layers(real))
    assert loaded.keys() == expected.keys()
    for name in expected:
        assert_bit_identical(loaded[name], expected[name])


def test_something_that_is_not_a_regular_file_is_not_replaced(tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with pytest.raises(ValueError, match="not a regular file"):
        save_layers([Dense(2, 2)], pipe)
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]


def test_a_file_the_caller_may_not_write_is_not_replaced(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    save_layers([Dense(2, 2)], path)
    old = path.read_bytes()
    # (os.access, because the suite may run as root, who may write a 0o444 file, as open() would.)
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    with pytest.raises(PermissionError, match="read-only"):
        save_layers([Dense(3, 3)], path)
    monkeypatch.undo()
    _assert_nothing_written(tmp_path, {"m.safetensors": old})


def test_a_user_layer_whose_config_does_not_fit_its_constructor_is_not_saved(tmp_path):
    path = tmp_path / "m.safetensors"
    save_layers([Dense(2, 2)], path)
    old = path.read_bytes()
    with pytest.raises(ValueError, match=r"would not load back.*MisnamedConfig.*'width'"):
        save_layers([Dense(2, 2), MisnamedConfig(2)], path)
    _assert_nothing_written(tmp_path, {"m.safetensors": old})


def test_a_file_without_layers_is_no_model(tmp_path):
    path = tmp_path / "empty.safetensors"
    save_layers([], path)
    assert load_layers(path) == []
    with pytest.raises(nncore.ModelFileError, match="empty.safetensors: the file holds no layers"):
        nncore.load(path)


def test_paths_may_be_bytes_and_other_objects_are_refused(tmp_path):
    path = os.fsencode(tmp_path / "m.safetensors")
    save_layers([Dense(2, 2)], path)
    assert len(load_layers(path)) == 1 and read_metadata(path)["dtype"] == "float32"
    assert len(nncore.load(path).layers) == 1
    for name, call in (
        ("save_layers", lambda p: save_layers([Dense(2, 2)], p)),
        ("load_layers", load_layers),
        ("read_metadata", read_metadata),
        ("nncore.load", nncore.load),
    ):
        with pytest.raises(TypeError, match=f"{name}: expected a file path .*got int"):
            call(3)
