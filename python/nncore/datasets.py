"""Datasets: an IDX reader, MNIST from local files, and a small digits set shipped with nncore.

``read_idx`` reads the IDX format MNIST is distributed in (gzipped or not). ``load_mnist`` finds
the four MNIST files in a directory or nncore's cache, downloading them (sha256-verified) into the
cache if needed. ``load_digits`` loads 7000 real MNIST digits packaged inside nncore, so examples
and tests run offline.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import urllib.request
import zlib
from importlib import resources
from pathlib import Path
from typing import IO, Union

import numpy as np

from ._files import atomic_write, file_path

__all__ = [
    "DOWNLOAD_TIMEOUT",
    "MNIST_DOWNLOADS",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "load_digits",
    "load_mnist",
    "read_idx",
]

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
    path = file_path(path, "read_idx")
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


def _read_idx_stream(stream: IO[bytes], path: Path, file_size: int | None) -> np.ndarray:
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


# Where MNIST is downloaded from, in order. Each serves the four files gzipped under these names.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
# sha256 and size in bytes of the standard gzipped files. A download is kept only if its sha256
# matches; the size caps how much is read from a misbehaving server.
MNIST_DOWNLOADS = {
    "train-images-idx3-ubyte": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        9_912_422,
    ),
    "train-labels-idx1-ubyte": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        28_881,
    ),
    "t10k-images-idx3-ubyte": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        1_648_877,
    ),
    "t10k-labels-idx1-ubyte": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        4_542,
    ),
}
# Seconds a connection or a single read may stall before that mirror counts as failed.
DOWNLOAD_TIMEOUT = 30.0


def _find(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _find_all(directories: list[Path]) -> dict[tuple[str, str], Path] | None:
    """The four MNIST files from the first directory that has all of them."""
    for directory in directories:
        files = {key: _find(directory, name) for key, name in MNIST_FILES.items()}
        if all(files.values()):
            return files  # type: ignore[return-value]
    return None


def _mnist_cache_dir() -> Path:
    """``$NNCORE_CACHE/mnist``, else ``$XDG_CACHE_HOME/nncore/mnist``, else
    ``~/.cache/nncore/mnist``."""
    if os.environ.get("NNCORE_CACHE"):
        return Path(os.environ["NNCORE_CACHE"]).expanduser() / "mnist"
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore a relative path
        return Path(xdg) / "nncore" / "mnist"
    try:
        return Path.home() / ".cache" / "nncore" / "mnist"
    except RuntimeError:  # no home directory to be found
        raise FileNotFoundError(
            "load_mnist: cannot determine a cache directory (no home directory); set "
            "NNCORE_CACHE, or NNCORE_DATA to a directory holding the MNIST files"
        ) from None


def _file_list() -> str:
    return ", ".join(MNIST_FILES.values()) + " (each optionally gzipped, ending in .gz)"


def _partial_note(directories: list[Path]) -> str:
    for directory in directories:
        found = [name for name in MNIST_FILES.values() if _find(directory, name)]
        if found:
            return f" ({directory} has only {', '.join(found)})"
    return ""


def load_mnist(path: PathLike | None = None, *, download: bool = True) -> tuple[Split, Split]:
    """Load MNIST: ``((x_train, y_train), (x_test, y_test))``, downloading it once if needed.

    Images are uint8 arrays ``(N, 28, 28)`` (60000 and 10000 in the real set), labels uint8
    ``(N,)`` with values 0..9. The four IDX files (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
    possibly ending in ``.gz``) are looked for:

    - if ``path`` is given: in ``path`` and ``path/mnist`` only. This is your directory, so
      nothing is ever downloaded into it and ``download`` does not apply; missing files are a
      FileNotFoundError.
    - otherwise: in ``$NNCORE_DATA`` and ``$NNCORE_DATA/mnist`` (if the variable is set), then in
      the cache directory: ``$NNCORE_CACHE/mnist``, else ``$XDG_CACHE_HOME/nncore/mnist``, else
      ``~/.cache/nncore/mnist``. If no directory has all four and ``download`` is true, the
      missing files are downloaded into the cache directory from ``MNIST_MIRRORS`` in order
      (``DOWNLOAD_TIMEOUT`` seconds per stalled connection or read), each written to a
      temporary file there and moved into place only if its sha256 matches
      ``MNIST_DOWNLOADS``; a mismatching file is deleted and the next mirror is tried.

    Raises FileNotFoundError when the files are not found and cannot be downloaded; its message
    lists where it looked, every URL tried and why it failed, and how to provide the files by
    hand. Raises ValueError if a file is corrupt or images and labels do not match.
    """
    if path is not None:
        root = file_path(path, "load_mnist").expanduser()
        searched = [root, root / "mnist"]
        files = _find_all(searched)
        if files is None:
            raise FileNotFoundError(
                f"load_mnist: could not find the MNIST files {_file_list()} in {root} or "
                f"{root / 'mnist'} (from the path argument){_partial_note(searched)}. Put the four "
                "IDX files of the MNIST database in one of these directories, or call "
                "load_mnist() without a path to use (and if needed download into) nncore's cache "
                f"directory {_mnist_cache_dir()}."
            )
        return _read_mnist(files)

    searched = []
    if os.environ.get("NNCORE_DATA"):
        data = Path(os.environ["NNCORE_DATA"]).expanduser()
        searched += [data, data / "mnist"]
    cache = _mnist_cache_dir()
    searched.append(cache)
    files = _find_all(searched)
    if files is None:
        where = ", ".join(str(d) for d in searched)
        how_to_fix = (
            "To provide the files by hand, put the four IDX files of the MNIST database "
            "(for example from " + " or ".join(MNIST_MIRRORS) + ") in one directory and call "
            "load_mnist('that/directory') or set NNCORE_DATA to it."
        )
        if not download:
            raise FileNotFoundError(
                f"load_mnist: could not find the MNIST files {_file_list()} in {where}"
                f"{_partial_note(searched)}, and download=False, so nothing was downloaded. "
                f"Call load_mnist() to download them into {cache}. {how_to_fix}"
            )
        files = _download_mnist(cache, where, how_to_fix)
    return _read_mnist(files)


class _RejectedDownload(Exception):
    """A mirror answered, but not with the expected file."""


def _download_mnist(cache: Path, searched: str, how_to_fix: str) -> dict[tuple[str, str], Path]:
    failures: list[str] = []
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        failures.append(f"creating the cache directory {cache}: {error}")
    else:
        missing = [name for name in MNIST_FILES.values() if _find(cache, name) is None]
        for position, name in enumerate(missing):
            if not _download_one(cache, name, failures):
                # The other files would most likely fail the same way; report this one now.
                if position + 1 < len(missing):
                    untried = ", ".join(missing[position + 1 :])
                    failures.append(f"(stopped there; not tried: {untried})")
                break
    files = _find_all([cache])
    if files is None:
        raise FileNotFoundError(
            f"load_mnist: could not find the MNIST files {_file_list()} in {searched}, and "
            f"could not download them into {cache}:\n"
            + "".join(f"  - {failure}\n" for failure in failures)
            + "Check the network connection (and HTTPS_PROXY if you need a proxy). "
            + how_to_fix
        )
    return files


def _download_one(cache: Path, name: str, failures: list[str]) -> bool:
    """Try each mirror for ``name``.gz until one delivers the expected bytes; record failures."""
    expected_sha256, expected_size = MNIST_DOWNLOADS[name]
    destination = cache / (name + ".gz")
    for mirror in MNIST_MIRRORS:
        url = mirror.rstrip("/") + "/" + destination.name
        print(f"nncore: downloading {url}", file=sys.stderr)
        try:
            _fetch_verified(url, destination, expected_sha256, expected_size)
            return True
        except (OSError, http.client.HTTPException, ValueError, _RejectedDownload) as error:
            # URLError, HTTPError, timeouts and refused connections are all OSErrors.
            failures.append(f"{url}: {type(error).__name__}: {error}")
    return False


def _fetch_verified(url: str, destination: Path, expected_sha256: str, expected_size: int) -> None:
    digest = hashlib.sha256()
    received = 0
    # Raising inside the block discards the partial download; the destination appears only
    # once its sha256 has been checked.
    with (
        atomic_write(destination, suffix=".part", where="load_mnist") as out,
        urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response,
    ):
        while chunk := response.read(1 << 16):
            received += len(chunk)
            if received > expected_size:
                raise _RejectedDownload(
                    f"the server sent more than the {expected_size} bytes of the MNIST file"
                )
            digest.update(chunk)
            out.write(chunk)
        if digest.hexdigest() != expected_sha256:
            raise _RejectedDownload(
                f"sha256 mismatch: expected {expected_sha256}, got {digest.hexdigest()} "
                f"({received} bytes); the file was discarded"
            )


def _read_mnist(files: dict[tuple[str, str], Path]) -> tuple[Split, Split]:
    splits = []
    for split in ("train", "test"):
        image_file, label_file = files[(split, "images")], files[(split, "labels")]
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
