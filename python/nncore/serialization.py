"""Model files: a list of layers saved as one standard ``.safetensors`` file, loaded without
running any code.

Layout of a file written by ``save_layers``:

- every parameter is a tensor named ``"layers.{i}.{name}"`` (``name`` from ``state_dict()``),
  float32 (``F32``) or float64 (``F64``), little-endian, as safetensors stores them;
- the safetensors ``__metadata__`` (str -> str) holds ``format`` (``"nncore"``),
  ``format_version`` (``"1"``), ``dtype`` (``"float32"``, ``"float64"``, ``"mixed"`` or
  ``"none"`` for a network without parameters), ``architecture`` (a JSON list of
  ``{"type": registered name, "config": get_config()}``), ``nncore_version``, any
  ``extra_metadata`` of the caller, and ``sha256``.

``sha256`` covers every other metadata entry and every tensor's name, dtype, shape and bytes, in a
canonical order (see ``_checksum``). safetensors does not checksum data, so without it a flipped
bit in a weight would load silently; covering the metadata too means a damaged architecture (say
a LeakyReLU slope) cannot load silently either.

Loading parses and validates the whole file before building any layer, and only builds classes
registered with ``@nncore.register_layer``: no pickle, no eval, no import by name.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Union

import numpy as np
import safetensors.numpy

from ._files import atomic_write, file_path, writable_target
from .layer import LAYER_TYPES, Layer, registered_name

__all__ = ["FORMAT_VERSION", "ModelFileError", "load_layers", "read_metadata", "save_layers"]

PathLike = Union[str, "os.PathLike[str]"]

FORMAT_NAME = "nncore"
FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
RESERVED_METADATA = (
    "format",
    "format_version",
    "dtype",
    "architecture",
    "nncore_version",
    "sha256",
)

# safetensors dtype codes of the two float types nncore computes in.
_DTYPE_CODES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64"}
_CODE_DTYPES = {code: dtype.newbyteorder("<") for dtype, code in _DTYPE_CODES.items()}
# safetensors itself refuses headers beyond 100 MB; a larger length is corruption, not a model.
_MAX_HEADER_BYTES = 100_000_000
_LENGTH_PREFIX_BYTES = 8


class ModelFileError(ValueError):
    """A model file that cannot be loaded: missing, truncated, corrupted, of another format or
    version, or describing layers this installation cannot build. The message names the file and
    what is wrong with it."""


class _MissingModelFileError(ModelFileError, FileNotFoundError):
    """A model file that does not exist: catchable as ModelFileError and as FileNotFoundError."""


# ----------------------------------------------------------------------------------------------
# Saving


def save_layers(
    layers: Sequence[Layer], path: PathLike, *, extra_metadata: dict[str, str] | None = None
) -> None:
    """Save ``layers`` (a network: a list of layers) to the ``.safetensors`` file ``path``.

    Every layer's exact class must be registered with ``@nncore.register_layer``, its
    ``get_config()`` must be JSON-serialisable and its ``state_dict()`` must hold float32 or
    float64 numpy arrays. All of this is checked before anything is written (TypeError or
    ValueError naming the layer); a missing parent directory is a FileNotFoundError.
    ``extra_metadata`` adds str -> str entries to the file's metadata (the keys
    ``format``, ``format_version``, ``dtype``, ``architecture``, ``nncore_version`` and
    ``sha256`` are nncore's own).

    The write is atomic: the file is written to a temporary file in the same directory, flushed,
    fsynced and renamed over ``path``; if anything fails, a previous file at ``path`` is intact.
    """
    target = file_path(path, "save_layers")
    writable_target(target, "save_layers")  # a bad path fails before the model is serialised
    layers = _as_layer_list(layers)
    architecture, tensors = _describe_layers(layers)
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "dtype": _network_dtype(tensors.values()),
        "architecture": json.dumps(architecture, allow_nan=False),
        "nncore_version": _nncore_version(),
    }
    metadata.update(_check_extra_metadata(extra_metadata))
    metadata["sha256"] = _checksum(
        metadata, ((name, _dtype_code(a), a.shape, a) for name, a in tensors.items())
    )
    blob = safetensors.numpy.save(tensors, metadata=metadata)
    # Read our own bytes back with the loader's checks, and rebuild nncore's own layers from them
    # as load_layers would (their from_config draws nothing), so a file that could not be loaded
    # (e.g. a Dense whose weights were replaced by an array of another shape or dtype) is never
    # written. A user's layer is not rebuilt here (its constructor may have side effects), but
    # when it keeps Layer.from_config, its config must fit its constructor's parameters.
    parsed = _parse_model_bytes(blob, str(target))
    try:
        for index, (layer, entry) in enumerate(zip(layers, parsed.architecture)):
            if type(layer).__module__.startswith("nncore."):
                _build_layer(index, entry, parsed.tensors, target)
            else:
                _check_config_fits(index, layer, entry["config"], target)
    except ModelFileError as error:
        raise ValueError(f"save_layers: nothing written, the file would not load back: {error}") from error
    with atomic_write(target, where="save_layers") as stream:
        stream.write(blob)


def _check_config_fits(index: int, layer: Layer, config: dict[str, Any], target: Path) -> None:
    """ModelFileError unless ``type(layer)(**config)`` would bind, when the layer is built that way
    on loading (its class keeps ``Layer.from_config``); the constructor itself is not run."""
    layer_class = type(layer)
    if getattr(layer_class.from_config, "__func__", None) is not Layer.from_config.__func__:
        return
    try:
        signature = inspect.signature(layer_class)
    except (TypeError, ValueError):  # no signature to check against (e.g. a C-implemented __init__)
        return
    try:
        signature.bind(**config)
    except TypeError as error:
        raise ModelFileError(
            f"{target}: layer {index} ({layer_class.__name__}) cannot be built from its get_config() "
            f"{config!r}: {error}"
        ) from None


def _as_layer_list(layers: Any) -> list[Layer]:
    if isinstance(layers, Layer):
        raise TypeError(
            "save_layers: expected a sequence of layers (a network), got a single "
            f"{type(layers).__name__}; pass [layer]"
        )
    try:
        return list(layers)
    except TypeError:
        raise TypeError(
            f"save_layers: expected a sequence of layers, got {type(layers).__name__}"
        ) from None


def _describe_layers(layers: list[Layer]) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """The architecture entries and the named little-endian tensors; raises before any I/O."""
    architecture: list[dict[str, Any]] = []
    tensors: dict[str, np.ndarray] = {}
    for index, layer in enumerate(layers):
        where = f"save_layers: layer {index} ({type(layer).__name__})"
        type_name = registered_name(layer)
        if type_name is None:
            raise TypeError(
                f"{where} cannot be saved: its class {type(layer).__module__}."
                f"{type(layer).__qualname__} is not a registered layer type. Decorate the class "
                "with @nncore.register_layer, make get_config() return its constructor arguments "
                "(JSON values) and state_dict() its parameters, so it can be rebuilt on load. "
                "(A plain Activation(f, f') holds Python functions and cannot be saved; use a "
                "native activation such as nncore.Tanh or a registered layer.)"
            )
        config = layer.get_config()
        if not isinstance(config, dict) or not all(isinstance(key, str) for key in config):
            raise TypeError(
                f"{where}: get_config() must return a dict with str keys, got {config!r}"
            )
        try:
            config_json = json.dumps(config, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"{where}: get_config() returned {config!r}, which is not JSON-serialisable "
                f"({error}); use numbers, strings, lists, dicts and None"
            ) from None
        # Store what JSON gives back (tuples become lists) so the file, the checksum and the
        # loaded config agree.
        architecture.append({"type": type_name, "config": json.loads(config_json)})
        state = layer.state_dict()
        if not isinstance(state, dict):
            raise TypeError(f"{where}: state_dict() must return a dict, got {type(state).__name__}")
        for name, array in state.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"{where}: state_dict() keys must be non-empty str, got {name!r}")
            if not isinstance(array, np.ndarray) or _dtype_code(array) is None:
                kind = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
                raise TypeError(
                    f"{where}: parameter {name!r} must be a float32 or float64 numpy array, "
                    f"got {kind}"
                )
            little_endian = array.dtype.newbyteorder("<")
            # (np.ascontiguousarray would turn a 0-d parameter into shape (1,).)
            tensors[f"layers.{index}.{name}"] = np.asarray(array, dtype=little_endian, order="C")
    return architecture, tensors


def _dtype_code(array: np.ndarray) -> str | None:
    """ "F32"/"F64" for float32/float64 in either byte order, else None."""
    return _DTYPE_CODES.get(array.dtype.newbyteorder("="))


def _network_dtype(arrays: Iterable[np.ndarray]) -> str:
    names = {np.dtype(a.dtype).name for a in arrays}
    if not names:
        return "none"
    return names.pop() if len(names) == 1 else "mixed"


def _nncore_version() -> str:
    from . import __version__  # the package has finished importing by the time anyone saves

    return __version__


def _check_extra_metadata(extra: dict[str, str] | None) -> dict[str, str]:
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise TypeError(f"save_layers: extra_metadata must be a dict, got {type(extra).__name__}")
    for key, value in extra.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"save_layers: extra_metadata must map str to str, got {key!r}: {value!r}"
            )
        if key in RESERVED_METADATA:
            raise ValueError(
                f"save_layers: extra_metadata key {key!r} is reserved by nncore "
                f"(reserved: {', '.join(RESERVED_METADATA)})"
            )
    return dict(extra)


# ----------------------------------------------------------------------------------------------
# The checksum


def _checksum(
    metadata: dict[str, str], tensors: Iterable[tuple[str, str, Sequence[int], Any]]
) -> str:
    """sha256 over the metadata (without ``sha256``) and the tensors, in sorted order.

    ``tensors`` yields ``(name, dtype code, shape, little-endian bytes or array)``. Every string
    and byte run is preceded by its length, so no two different contents hash the same stream.
    """
    digest = hashlib.sha256()

    def add(data: bytes | memoryview) -> None:
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    for key in sorted(k for k in metadata if k != "sha256"):
        add(key.encode())
        add(metadata[key].encode())
    for name, code, shape, data in sorted(tensors, key=lambda entry: entry[0]):
        add(name.encode())
        add(code.encode())
        add(json.dumps([int(d) for d in shape]).encode())
        # Flattened to bytes through numpy: memoryview.cast refuses 0-d and zero-size arrays.
        add(memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8)))
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# Loading


def load_layers(path: PathLike) -> list[Layer]:
    """Load the layers saved by ``save_layers`` from ``path``, with their parameters.

    Each layer is rebuilt with ``LAYER_TYPES[type].from_config(config)`` and receives its
    parameters through ``load_state_dict`` (copies that the layer owns). The whole file is
    validated first; any problem raises ModelFileError naming the file and the problem. A file
    that does not exist raises ModelFileError too, which is also a FileNotFoundError.
    """
    source = file_path(path, "load_layers")
    parsed = _parse_model_bytes(_read_file(source), str(source))
    layers = []
    for index, entry in enumerate(parsed.architecture):
        layers.append(_build_layer(index, entry, parsed.tensors, source))
    expected = {
        f"layers.{i}.{name}" for i, layer in enumerate(layers) for name in layer.state_dict()
    }
    extra = sorted(set(parsed.tensors) - expected)
    if extra:
        raise ModelFileError(
            f"{source}: the file has tensors that no layer of its architecture uses: "
            f"{', '.join(extra)}"
        )
    return layers


def read_metadata(path: PathLike) -> dict[str, str]:
    """The metadata of the model file ``path`` (str -> str), after validating the whole file
    (structure, format, version, checksum, architecture JSON) but without building layers.
    Raises ModelFileError as ``load_layers`` does."""
    source = file_path(path, "read_metadata")
    return dict(_parse_model_bytes(_read_file(source), str(source)).metadata)


class _ParsedModel(NamedTuple):
    metadata: dict[str, str]
    architecture: list[dict[str, Any]]
    tensors: dict[str, np.ndarray]  # read-only views of the file's bytes


def _read_file(source: Path) -> bytes:
    try:
        return source.read_bytes()
    except FileNotFoundError:
        raise _MissingModelFileError(f"{source}: no such model file") from None
    except OSError as error:
        raise ModelFileError(f"{source}: cannot read the model file ({error})") from error


def _parse_model_bytes(blob: bytes, source: str) -> _ParsedModel:
    """Validate everything about a model file short of building its layers."""
    header, data = _split_safetensors(blob, source)
    metadata = _check_metadata(header.pop("__metadata__", None), source)
    views = _tensor_views(header, data, source)
    recorded = metadata["sha256"]
    actual = _checksum(metadata, ((name, _dtype_code(v), v.shape, v) for name, v in views.items()))
    if actual != recorded:
        raise ModelFileError(
            f"{source}: the checksum does not match (recorded sha256 {recorded}, computed "
            f"{actual}): the file is corrupted or was modified after saving"
        )
    declared = metadata["dtype"]
    if declared != _network_dtype(views.values()):
        raise ModelFileError(
            f"{source}: the metadata says dtype {declared!r} but the tensors are "
            f"{_network_dtype(views.values())!r}"
        )
    return _ParsedModel(metadata, _check_architecture(metadata["architecture"], source), views)


def _split_safetensors(blob: bytes, source: str) -> tuple[dict[str, Any], memoryview]:
    """The header (a JSON object) and the data section of a safetensors file."""
    not_safetensors = "is not a safetensors model file"
    if not blob:
        raise ModelFileError(f"{source}: the file is empty; it {not_safetensors}")
    if len(blob) < _LENGTH_PREFIX_BYTES + 2:
        raise ModelFileError(
            f"{source}: the file is too short ({len(blob)} bytes) to be a safetensors file"
        )
    header_length = int.from_bytes(blob[:_LENGTH_PREFIX_BYTES], "little")
    available = len(blob) - _LENGTH_PREFIX_BYTES
    if header_length < 2 or header_length > _MAX_HEADER_BYTES or header_length > available:
        raise ModelFileError(
            f"{source}: the header length {header_length} is impossible for a file of "
            f"{len(blob)} bytes: the file is truncated, corrupted, or {not_safetensors}"
        )
    raw_header = blob[_LENGTH_PREFIX_BYTES : _LENGTH_PREFIX_BYTES + header_length]
    try:
        header = json.loads(raw_header.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ModelFileError(
            f"{source}: the header is not valid JSON ({error}): the file is corrupted or "
            f"{not_safetensors}"
        ) from None
    if not isinstance(header, dict):
        raise ModelFileError(
            f"{source}: the header is a JSON {type(header).__name__}, not an object; "
            f"the file {not_safetensors}"
        )
    return header, memoryview(blob)[_LENGTH_PREFIX_BYTES + header_length :]


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads hook: a repeated key is an error (plain json keeps the last one silently, so
    two readers could disagree about what the file holds)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _check_metadata(metadata: Any, source: str) -> dict[str, str]:
    if metadata is None:
        raise ModelFileError(
            f"{source}: the safetensors file has no metadata, so it is not an nncore model file "
            "(it may hold bare tensors saved by another tool)"
        )
    if not isinstance(metadata, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in metadata.items()
    ):
        raise ModelFileError(f"{source}: the metadata must map str to str")
    file_format = metadata.get("format")
    if file_format != FORMAT_NAME:
        raise ModelFileError(
            f"{source}: the metadata format is {file_format!r}, not {FORMAT_NAME!r}: this is "
            "not an nncore model file"
        )
    version_text = metadata.get("format_version")
    supported = ", ".join(str(v) for v in SUPPORTED_FORMAT_VERSIONS)
    if version_text is None or not version_text.isdigit() or not version_text.isascii():
        raise ModelFileError(
            f"{source}: format_version must be a whole number, got {version_text!r} "
            f"(this nncore reads versions {supported})"
        )
    if int(version_text) not in SUPPORTED_FORMAT_VERSIONS:
        raise ModelFileError(
            f"{source}: format_version {int(version_text)} is not supported; this nncore "
            f"({_nncore_version()}) reads versions {supported}. A newer nncore wrote the file: "
            "upgrade nncore to load it."
        )
    missing = [key for key in RESERVED_METADATA if key not in metadata]
    if missing:
        raise ModelFileError(f"{source}: the metadata lacks {', '.join(missing)}")
    return metadata


def _tensor_views(header: dict[str, Any], data: memoryview, source: str) -> dict[str, np.ndarray]:
    """Read-only arrays over the data section, after checking that the tensors tile it exactly."""
    entries = []
    for name, entry in header.items():
        where = f"{source}: tensor {name!r}"
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise ModelFileError(
                f"{where}: expected an object with dtype, shape and data_offsets, got {entry!r}"
            )
        code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if code not in _CODE_DTYPES:
            raise ModelFileError(f"{where}: dtype {code!r} is not one nncore saves (F32 or F64)")
        if not _is_int_list(shape) or any(d < 0 for d in shape):
            raise ModelFileError(
                f"{where}: shape must be a list of non-negative ints, got {shape!r}"
            )
        if not _is_int_list(offsets) or len(offsets) != 2 or not 0 <= offsets[0] <= offsets[1]:
            raise ModelFileError(f"{where}: data_offsets must be [begin, end], got {offsets!r}")
        dtype = _CODE_DTYPES[code]
        expected_bytes = math.prod(shape) * dtype.itemsize
        if offsets[1] - offsets[0] != expected_bytes:
            raise ModelFileError(
                f"{where}: shape {shape} of {code} needs {expected_bytes} bytes, but data_offsets "
                f"{offsets} span {offsets[1] - offsets[0]}"
            )
        entries.append((offsets[0], offsets[1], name, dtype, tuple(shape)))
    entries.sort()
    position = 0
    for begin, end, name, _, _ in entries:
        if begin != position:
            raise ModelFileError(
                f"{source}: tensor {name!r} starts at byte {begin} of the data, expected "
                f"{position} (tensors must be stored back to back)"
            )
        position = end
    if position != len(data):
        state = "is truncated" if position > len(data) else "has unexpected bytes after the data"
        raise ModelFileError(
            f"{source}: the file {state}: its header describes {position} bytes of tensor data, "
            f"the file holds {len(data)}"
        )
    return {
        name: np.frombuffer(data[begin:end], dtype=dtype).reshape(shape)
        for begin, end, name, dtype, shape in entries
    }


def _is_int_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    )


def _check_architecture(text: str, source: str) -> list[dict[str, Any]]:
    try:
        architecture = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ModelFileError(f"{source}: the architecture is not valid JSON ({error})") from None
    if not isinstance(architecture, list):
        raise ModelFileError(
            f"{source}: the architecture must be a JSON list of layers, got "
            f"{type(architecture).__name__}"
        )
    for index, entry in enumerate(architecture):
        if (
            not isinstance(entry, dict)
            or set(entry) != {"type", "config"}
            or not isinstance(entry["type"], str)
            or not isinstance(entry["config"], dict)
        ):
            raise ModelFileError(
                f"{source}: architecture entry {index} must be "
                f'{{"type": name, "config": {{...}}}}, got {entry!r}'
            )
    return architecture


def _build_layer(
    index: int, entry: dict[str, Any], tensors: dict[str, np.ndarray], source: Path
) -> Layer:
    type_name, config = entry["type"], entry["config"]
    where = f"{source}: layer {index} ({type_name})"
    layer_class = LAYER_TYPES.get(type_name)
    if layer_class is None:
        raise ModelFileError(
            f"{where}: unknown layer type {type_name!r}. A user-defined layer must be registered "
            "with @nncore.register_layer (by importing the module that defines it) before "
            f"loading; registered types: {', '.join(sorted(LAYER_TYPES))}"
        )
    try:
        layer = layer_class.from_config(config)
    except Exception as error:  # whatever the class objects to, the file's config is at fault
        raise ModelFileError(
            f"{where}: cannot be built from the config {config!r}: {type(error).__name__}: {error}"
        ) from error
    own = layer.state_dict()
    prefix = f"layers.{index}."
    stored = {name[len(prefix) :] for name in tensors if name.startswith(prefix)}
    # A name may itself contain dots; only exact names of this layer's state count.
    missing = sorted(set(own) - stored)
    if missing:
        raise ModelFileError(
            f"{where}: the file lacks the parameters {', '.join(prefix + m for m in missing)}"
        )
    state = {}
    for name, target in own.items():
        stored_array = tensors[prefix + name]
        if stored_array.shape != np.shape(target) or stored_array.dtype != np.asarray(target).dtype:
            raise ModelFileError(
                f"{where}: parameter {name!r} is stored with shape {stored_array.shape} and dtype "
                f"{stored_array.dtype.name}, but the layer built from its config needs shape "
                f"{np.shape(target)} and dtype {np.asarray(target).dtype.name}"
            )
        # A copy in native byte order that the layer owns (writable, C-contiguous), not a view of
        # the file's bytes.
        state[name] = np.array(stored_array, dtype=stored_array.dtype.newbyteorder("="), order="C")
    try:
        layer.load_state_dict(state)
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{where}: load_state_dict refused the parameters: {error}") from error
    return layer
