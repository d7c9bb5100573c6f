"""Datasets: an IDX reader, MNIST from local files, and a small digits set shipped with nncore.

``read_idx`` reads the IDX format MNIST is distributed in (gzipped or not). ``load_mnist`` finds
the four MNIST files in a directory (nothing is downloaded). ``load_digits`` loads 7000 real
MNIST digits packaged inside nncore, so examples and tests run offline.
"""

from __future__ import annotations

import gzip
import os
import zlib
from importlib import resources
from pathlib import Path
from typing import IO, Optional, Union

import numpy as np

__all__ = ["read_idx", "load_mnist", "load_digits", "MNIST_FILES"]

PathLike = Union[str, "os.PathLike[str]"]
Split = tuple[np.ndarray, np.ndarray]

# IDX type codes: the element type, stored big-endian.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 22  # bytes per read when filling the array

# The four files of MNIST, by split and part; each may also end in ".gz".
MNIST_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def _read_exactly(stream: IO[bytes], size: int, path: PathLike, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise ValueError(
            f"read_idx: {os.fspath(path)} is truncated: expected {size} bytes of {what}, "
            f"got {len(data)}"
        )
    return data


def _read_payload(stream: IO[bytes], array: np.ndarray, path: PathLike) -> None:
    """Fill ``array`` from the stream in chunks (no copy), then require end of file."""
    buffer = memoryview(array.reshape(-1)).cast("B")
    filled = 0
    while filled < len(buffer):
        got = stream.readinto(buffer[filled : filled + _CHUNK])  # type: ignore[attr-defined]
        if not got:
            raise ValueError(
                f"read_idx: {os.fspath(path)} is truncated: the header {array.shape} of "
                f"{array.dtype.name} promises {len(buffer)} data bytes, the file has {filled}"
            )
        filled += got
    if stream.read(1):
        raise ValueError(
            f"read_idx: {os.fspath(path)} has data after the {len(buffer)} bytes its header "
            f"{array.shape} promises (corrupt file, or not the file it claims to be)"
        )


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (the format MNIST is distributed in) into a numpy array.

    The file may be gzip-compressed (recognised by its content, the bytes 1f 8b, as every ``.gz``
    file starts) or plain. The header is checked: two zero bytes, a type code (0x08 uint8,
    0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64; stored big-endian), the number
    of dimensions and the sizes, after which the data must fill the file exactly. The array is
    returned in native byte order, writable, with the shape of the header.

    Raises FileNotFoundError if the file does not exist and ValueError, naming the file, if it is
    not a valid IDX file (wrong magic number, unknown type code, truncated, trailing data, or a
    corrupt gzip stream).
    """
    path = Path(os.fspath(path))
    with open(path, "rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        try:
            file_size = None if compressed else os.fstat(raw.fileno()).st_size
            return _read_idx_stream(stream, path, file_size)
        except (EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise ValueError(f"read_idx: {path} is not a valid gzip file ({error})") from None
        finally:
            if compressed:
                stream.close()


def _read_idx_stream(stream: IO[bytes], path: Path, file_size: Optional[int]) -> np.ndarray:
    magic = _read_exactly(stream, 4, path, "IDX magic number")
    if magic[0] != 0 or magic[1] != 0:
        raise ValueError(
            f"read_idx: {path} is not an IDX file: its magic number {magic.hex(' ')} does not "
            "start with two zero bytes"
        )
    type_code, ndim = magic[2], magic[3]
    if type_code not in _IDX_DTYPES:
        known = ", ".join(f"0x{code:02X} ({dtype.name})" for code, dtype in _IDX_DTYPES.items())
        raise ValueError(
            f"read_idx: {path} has unknown IDX type code 0x{type_code:02X}; known: {known}"
        )
    if ndim == 0:
        raise ValueError(f"read_idx: {path} declares 0 dimensions; an IDX file has at least 1")
    sizes = _read_exactly(stream, 4 * ndim, path, "dimensions")
    shape = tuple(int(d) for d in np.frombuffer(sizes, ">u4"))
    dtype = _IDX_DTYPES[type_code]
    payload = int(np.prod(shape, dtype=object)) * dtype.itemsize
    header = 4 + 4 * ndim
    if file_size is not None and file_size != header + payload:
        state = "is truncated" if file_size < header + payload else "has trailing data"
        raise ValueError(
            f"read_idx: {path} {state}: its header promises {shape} of {dtype.name} "
            f"({header + payload} bytes with the header), the file has {file_size} bytes"
        )
    try:
        array = np.empty(shape, dtype=dtype)
    except (MemoryError, ValueError):
        raise ValueError(
            f"read_idx: {path} has an implausible header: shape {shape} of {dtype.name} "
            f"({payload} bytes)"
        ) from None
    _read_payload(stream, array, path)
    if not dtype.isnative:  # big-endian data on a little-endian machine: swap in place
        array = array.byteswap(inplace=True).view(dtype.newbyteorder())
    return array


def _find(directory: Path, name: str) -> Optional[Path]:
    for candidate in (directory / name, directory / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def load_mnist(path: Optional[PathLike] = None) -> tuple[Split, Split]:
    """Load MNIST from local IDX files: ``((x_train, y_train), (x_test, y_test))``.

    Images are uint8 arrays ``(N, 28, 28)`` (60000 and 10000 in the real set), labels uint8
    ``(N,)`` with values 0..9. The four files (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
    possibly ending in ``.gz``) are looked for in ``path``, or if it is not given in the directory
    named by the ``NNCORE_DATA`` environment variable; in either case also in its ``mnist``
    subdirectory. Nothing is downloaded.

    Raises FileNotFoundError naming the expected files and where they were looked for, and
    ValueError if a file is corrupt or images and labels do not match.
    """
    if path is not None:
        root, origin = Path(os.fspath(path)).expanduser(), "the path argument"
    elif os.environ.get("NNCORE_DATA"):
        root, origin = Path(os.environ["NNCORE_DATA"]).expanduser(), "NNCORE_DATA"
    else:
        raise FileNotFoundError(
            "load_mnist: no data directory given; pass load_mnist(path) or set the NNCORE_DATA "
            "environment variable to the directory holding "
            + ", ".join(MNIST_FILES.values())
            + " (each optionally gzipped, .gz). nncore does not download them; "
            "nncore.datasets.load_digits() gives a small MNIST subset shipped with nncore."
        )

    searched = [root, root / "mnist"]
    for directory in searched:
        files = {key: _find(directory, name) for key, name in MNIST_FILES.items()}
        if all(files.values()):
            break
    else:
        partial = ""
        for directory in searched:
            found = [name for name in MNIST_FILES.values() if _find(directory, name)]
            if found:
                partial = f" ({directory} has only {', '.join(found)})"
                break
        raise FileNotFoundError(
            "load_mnist: could not find the MNIST files "
            + ", ".join(MNIST_FILES.values())
            + f" (each optionally ending in .gz) in {searched[0]} or {searched[1]} (from {origin})"
            + partial
            + "; get the four IDX files of the MNIST database and put them in one of these "
            "directories."
        )

    splits = []
    for split in ("train", "test"):
        image_file, label_file = files[(split, "images")], files[(split, "labels")]
        assert image_file is not None and label_file is not None
        images, labels = read_idx(image_file), read_idx(label_file)
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise ValueError(
                f"load_mnist: {image_file} should hold uint8 images of shape (N, 28, 28), "
                f"got {images.dtype} {images.shape}"
            )
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise ValueError(
                f"load_mnist: {label_file} should hold uint8 labels of shape (N,), "
                f"got {labels.dtype} {labels.shape}"
            )
        if len(images) != len(labels):
            raise ValueError(
                f"load_mnist: {image_file} has {len(images)} images but {label_file} has "
                f"{len(labels)} labels"
            )
        if labels.size and labels.max() > 9:
            raise ValueError(f"load_mnist: {label_file} has a label {labels.max()} > 9")
        splits.append((images, labels))
    return splits[0], splits[1]


def load_digits() -> tuple[Split, Split]:
    """A small real handwritten-digits set shipped inside nncore (no files or network needed).

    ``((x_train, y_train), (x_test, y_test))``: 6000 training images drawn from the MNIST
    training set and 1000 test images from the MNIST test set (600 and 100 of each digit, fixed
    seeded choice, see ``tools/make_digits.py`` in the repository), uint8 images ``(N, 28, 28)``
    with values 0..255 and uint8 labels ``(N,)`` with values 0..9.
    """
    resource = resources.files("nncore").joinpath("data").joinpath("digits.npz")
    with resource.open("rb") as handle, np.load(handle) as archive:
        arrays = {key: archive[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
