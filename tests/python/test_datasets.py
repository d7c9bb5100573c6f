"""nncore.datasets: the IDX reader on files the tests write, load_mnist's search order and its
download (from HTTP servers on localhost: the tests never use the internet), and the real MNIST
files when they are present."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import socket
import threading
import urllib.request
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from conftest import mnist_dir
from conftest import read_idx as reference_read_idx
from nncore import datasets
from nncore.datasets import MNIST_FILES, load_digits, load_mnist, read_idx

TYPE_CODES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.int16,
    0x0C: np.int32,
    0x0D: np.float32,
    0x0E: np.float64,
}


def idx_bytes(array: np.ndarray, type_code: int | None = None) -> bytes:
    """An IDX file, written from the format's definition: 0, 0, type code, ndim, big-endian
    uint32 sizes, big-endian data."""
    if type_code is None:
        type_code = {np.dtype(v): k for k, v in TYPE_CODES.items()}[array.dtype]
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path: Path, content: bytes, compress: bool = False) -> Path:
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


# ----------------------------------------------------------------------------------------------
# read_idx


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("type_code", sorted(TYPE_CODES), ids=lambda c: f"0x{c:02X}")
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4), (0, 28, 28), (1, 1, 1, 2)])
def test_read_idx_every_type_code(tmp_path, compress, type_code, shape):
    dtype = np.dtype(TYPE_CODES[type_code])
    rng = np.random.default_rng(type_code)
    if dtype.kind == "f":
        values = rng.normal(0, 1e3, shape).astype(dtype)
        if values.size >= 3:
            values.flat[:3] = [np.nan, -np.inf, -0.0]
    else:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, shape, endpoint=True, dtype=dtype)
    path = write(tmp_path / "data.idx", idx_bytes(values), compress)
    got = read_idx(path)
    assert got.shape == shape and got.dtype == dtype and got.dtype.isnative
    assert got.flags.writeable
    np.testing.assert_array_equal(got, values, strict=True)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_read_idx_truncated_files(tmp_path, compress):
    content = idx_bytes(np.arange(24, dtype=np.int16).reshape(2, 3, 4))
    for size in range(len(content)):  # inside the magic, the sizes and the data
        path = write(tmp_path / f"cut{size}.idx", content[:size], compress)
        with pytest.raises(ValueError, match="truncated") as caught:
            read_idx(path)
        assert str(path) in str(caught.value)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_read_idx_trailing_data(tmp_path, compress):
    path = write(tmp_path / "x.idx", idx_bytes(np.arange(6, dtype=np.uint8)) + b"\0", compress)
    with pytest.raises(ValueError, match="trailing data|data after"):
        read_idx(path)


@pytest.mark.parametrize(
    "header, pattern",
    [
        (b"\x01\x00\x08\x01", "magic number"),
        (b"\x00\x00\x07\x01", "unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"PK\x03\x04", "magic number"),
    ],
)
def test_read_idx_bad_headers(tmp_path, header, pattern):
    path = write(tmp_path / "x.idx", header + (1).to_bytes(4, "big") + b"\x05")
    with pytest.raises(ValueError, match=pattern):
        read_idx(path)


def test_read_idx_corrupt_gzip_and_missing_file(tmp_path):
    compressed = gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8)))
    (tmp_path / "cut.gz").write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(ValueError, match="gzip|truncated"):
        read_idx(tmp_path / "cut.gz")
    damaged = bytearray(compressed)
    damaged[12] ^= 0xFF
    (tmp_path / "flipped.gz").write_bytes(damaged)
    with pytest.raises(ValueError):
        read_idx(tmp_path / "flipped.gz")
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "absent.idx")


def test_read_idx_implausible_sizes(tmp_path):
    header = bytes([0, 0, 0x0E, 3]) + b"\xff\xff\xff\xff" * 3
    with pytest.raises(ValueError, match="truncated|implausible"):
        read_idx(write(tmp_path / "huge.idx", header, compress=True))


# ----------------------------------------------------------------------------------------------
# A small MNIST-shaped set the tests write, and the environment load_mnist reads


def small_mnist(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = {"train": 12, "t10k": 5}
    arrays = {}
    for (split, part), name in MNIST_FILES.items():
        n = sizes["train" if split == "train" else "t10k"]
        if part == "images":
            arrays[name] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        else:
            arrays[name] = rng.integers(0, 10, n, dtype=np.uint8)
    return arrays


def write_mnist(directory: Path, arrays: dict[str, np.ndarray], compress: bool = True) -> dict:
    """Write the four files; returns {name: (sha256, size)} of what was written, for
    datasets.MNIST_DOWNLOADS."""
    directory.mkdir(parents=True, exist_ok=True)
    checksums = {}
    for name, array in arrays.items():
        target = directory / (name + ".gz" if compress else name)
        content = gzip.compress(idx_bytes(array), mtime=0) if compress else idx_bytes(array)
        target.write_bytes(content)
        checksums[name] = (hashlib.sha256(content).hexdigest(), len(content))
    return checksums


def assert_is_mnist(result, arrays: dict[str, np.ndarray]) -> None:
    (x_train, y_train), (x_test, y_test) = result
    np.testing.assert_array_equal(x_train, arrays["train-images-idx3-ubyte"], strict=True)
    np.testing.assert_array_equal(y_train, arrays["train-labels-idx1-ubyte"], strict=True)
    np.testing.assert_array_equal(x_test, arrays["t10k-images-idx3-ubyte"], strict=True)
    np.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte"], strict=True)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty nncore cache in tmp_path, no NNCORE_DATA, and no internet: any URL outside the
    test's own servers fails the test."""
    monkeypatch.delenv("NNCORE_DATA", raising=False)
    monkeypatch.setenv("NNCORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", ("http://mirror.invalid/never-used/",))
    real_urlopen = urllib.request.urlopen

    def local_only(url, *args, **kwargs):
        assert str(url).startswith("http://127.0.0.1:"), f"the test tried to open {url}"
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", local_only)
    return tmp_path / "cache" / "mnist"


def forbid_network(monkeypatch) -> None:
    def no_network(url, *args, **kwargs):
        raise AssertionError(f"load_mnist opened {url} though it should not download")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """An HTTP server on localhost serving tmp_path/www; yields (base URL, request log, served directory)."""
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []
    handler = type("Handler", (QuietHandler,), {"requests": requests})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests, root
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def closed_port_url() -> str:
    """A localhost URL on which nothing listens (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def cache_listing(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


GZ_NAMES = sorted(name + ".gz" for name in MNIST_FILES.values())


# ----------------------------------------------------------------------------------------------
# load_mnist: local directories


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("subdirectory", ["", "mnist"])
def test_load_mnist_from_an_explicit_directory(
    tmp_path, cache, monkeypatch, compress, subdirectory
):
    arrays = small_mnist()
    write_mnist(tmp_path / "data" / subdirectory, arrays, compress)
    forbid_network(monkeypatch)
    assert_is_mnist(load_mnist(tmp_path / "data"), arrays)
    assert_is_mnist(load_mnist(str(tmp_path / "data"), download=False), arrays)


def test_an_explicit_directory_without_the_files_is_never_downloaded_into(
    tmp_path, cache, monkeypatch
):
    directory = tmp_path / "mine"
    directory.mkdir()
    write_mnist(directory, {"train-images-idx3-ubyte": small_mnist()["train-images-idx3-ubyte"]})
    before = sorted(p.name for p in directory.iterdir())
    forbid_network(monkeypatch)
    with pytest.raises(FileNotFoundError) as caught:
        load_mnist(directory)  # download=True by default, yet nothing is fetched
    message = str(caught.value)
    assert str(directory) in message and "train-labels-idx1-ubyte" in message
    assert "has only train-images-idx3-ubyte" in message
    assert "load_mnist() without a path" in message
    assert sorted(p.name for p in directory.iterdir()) == before
    assert cache_listing(cache) == []


def test_nncore_data_is_searched_before_the_cache(tmp_path, cache, monkeypatch):
    data_arrays, cache_arrays = small_mnist(1), small_mnist(2)
    write_mnist(tmp_path / "data" / "mnist", data_arrays)
    write_mnist(cache, cache_arrays)
    forbid_network(monkeypatch)
    assert_is_mnist(load_mnist(), cache_arrays)
    monkeypatch.setenv("NNCORE_DATA", str(tmp_path / "data"))
    assert_is_mnist(load_mnist(), data_arrays)


def test_nncore_data_without_the_files_falls_back_to_the_cache(tmp_path, cache, monkeypatch):
    arrays = small_mnist()
    write_mnist(cache, arrays)
    monkeypatch.setenv("NNCORE_DATA", str(tmp_path / "empty"))
    forbid_network(monkeypatch)
    assert_is_mnist(load_mnist(download=False), arrays)


def test_cache_directory_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NNCORE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert datasets._mnist_cache_dir() == tmp_path / "home" / ".cache" / "nncore" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    assert datasets._mnist_cache_dir() == tmp_path / "home" / ".cache" / "nncore" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets._mnist_cache_dir() == tmp_path / "xdg" / "nncore" / "mnist"
    monkeypatch.setenv("NNCORE_CACHE", str(tmp_path / "nc"))
    assert datasets._mnist_cache_dir() == tmp_path / "nc" / "mnist"


def test_download_false_is_a_clear_error_without_network(cache, monkeypatch):
    forbid_network(monkeypatch)
    with pytest.raises(FileNotFoundError) as caught:
        load_mnist(download=False)
    message = str(caught.value)
    assert "download=False" in message and str(cache) in message
    assert "NNCORE_DATA" in message and "t10k-labels-idx1-ubyte" in message
    assert cache_listing(cache) == []


@pytest.mark.parametrize(
    "name, change, pattern",
    [
        ("train-images-idx3-ubyte", lambda a: a[:, :27], r"shape \(N, 28, 28\)"),
        ("train-labels-idx1-ubyte", lambda a: a[:-1], "12 images but .* 11 labels"),
        ("t10k-labels-idx1-ubyte", lambda a: a + 10, "label .* > 9"),
        ("t10k-labels-idx1-ubyte", lambda a: a.astype(np.int32), "uint8 labels"),
    ],
)
def test_load_mnist_rejects_inconsistent_files(tmp_path, name, change, pattern):
    arrays = small_mnist()
    arrays[name] = change(arrays[name])
    write_mnist(tmp_path, arrays)
    with pytest.raises(ValueError, match=pattern):
        load_mnist(tmp_path)


# ----------------------------------------------------------------------------------------------
# load_mnist: downloads from localhost mirrors


def serve(root: Path, mirror: str, arrays: dict[str, np.ndarray]) -> dict:
    return write_mnist(root / mirror, arrays)


def use_mirrors(monkeypatch, downloads: dict | None, *mirrors: str) -> None:
    """Point load_mnist at these mirrors and (if given) these expected sha256 values and sizes."""
    if downloads is not None:
        monkeypatch.setattr(datasets, "MNIST_DOWNLOADS", downloads)
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", mirrors)


def test_download_success_verifies_and_caches(cache, server, monkeypatch):
    base, requests, root = server
    arrays = small_mnist()
    use_mirrors(monkeypatch, serve(root, "m1", arrays), f"{base}/m1/")
    assert_is_mnist(load_mnist(), arrays)
    assert cache_listing(cache) == GZ_NAMES  # no temporary files left behind
    assert sorted(requests) == sorted(f"/m1/{name}" for name in GZ_NAMES)

    forbid_network(monkeypatch)  # the second call reads the cache
    assert_is_mnist(load_mnist(), arrays)


def test_only_missing_files_are_downloaded(cache, server, monkeypatch):
    base, requests, root = server
    arrays = small_mnist()
    use_mirrors(monkeypatch, serve(root, "m1", arrays), f"{base}/m1")  # no trailing slash
    write_mnist(
        cache, {k: arrays[k] for k in ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]}
    )
    assert_is_mnist(load_mnist(), arrays)
    assert sorted(requests) == ["/m1/t10k-images-idx3-ubyte.gz", "/m1/train-labels-idx1-ubyte.gz"]


@pytest.mark.parametrize("first_mirror", ["missing files (404)", "closed port", "port 0"])
def test_first_mirror_failing_then_second_succeeding(cache, server, monkeypatch, first_mirror):
    base, _requests, root = server
    arrays = small_mnist()
    downloads = serve(root, "good", arrays)
    (root / "empty").mkdir()
    failing = {
        "missing files (404)": f"{base}/empty/",
        "closed port": closed_port_url(),
        "port 0": "http://127.0.0.1:0/",
    }[first_mirror]
    use_mirrors(monkeypatch, downloads, failing, f"{base}/good/")
    assert_is_mnist(load_mnist(), arrays)
    assert cache_listing(cache) == GZ_NAMES


def test_sha256_mismatch_is_never_accepted(cache, server, monkeypatch):
    base, _requests, root = server
    arrays = small_mnist()
    expected = serve(root, "good", arrays)
    tampered = dict(arrays)
    tampered["train-labels-idx1-ubyte"] = (arrays["train-labels-idx1-ubyte"] + 1) % 10
    serve(root, "evil", tampered)
    use_mirrors(monkeypatch, expected, f"{base}/evil/")
    with pytest.raises(FileNotFoundError) as caught:
        load_mnist()
    message = str(caught.value)
    assert "sha256 mismatch" in message and "train-labels-idx1-ubyte.gz" in message
    # The images (which matched) were kept; the tampered labels never reached the cache.
    assert cache_listing(cache) == ["train-images-idx3-ubyte.gz"]

    use_mirrors(monkeypatch, None, f"{base}/evil/", f"{base}/good/")
    assert_is_mnist(load_mnist(), arrays)
    assert cache_listing(cache) == GZ_NAMES


def test_a_server_sending_too_much_is_cut_off(cache, server, monkeypatch):
    base, _requests, root = server
    arrays = small_mnist()
    checksums = serve(root, "m1", arrays)
    name = "train-images-idx3-ubyte"
    checksums[name] = (checksums[name][0], checksums[name][1] - 1)
    use_mirrors(monkeypatch, checksums, f"{base}/m1/")
    with pytest.raises(FileNotFoundError, match="more than the"):
        load_mnist()
    assert cache_listing(cache) == []


def test_a_stalled_server_times_out(cache, monkeypatch):
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        use_mirrors(monkeypatch, None, url)
        monkeypatch.setattr(datasets, "DOWNLOAD_TIMEOUT", 0.2)
        with pytest.raises(FileNotFoundError, match="timed out"):
            load_mnist()
    assert cache_listing(cache) == []


def test_all_mirrors_failing_is_a_clear_error(cache, server, monkeypatch):
    base, _requests, root = server
    (root / "empty").mkdir()
    dead = closed_port_url()
    use_mirrors(monkeypatch, None, f"{base}/empty/", dead)
    with pytest.raises(FileNotFoundError) as caught:
        load_mnist()
    message = str(caught.value)
    assert str(cache) in message  # where it looked
    assert f"{base}/empty/train-images-idx3-ubyte.gz: HTTPError" in message  # what it tried
    assert f"{dead}train-images-idx3-ubyte.gz: URLError" in message
    assert "NNCORE_DATA" in message and "load_mnist('that/directory')" in message  # the fix
    assert (
        "not tried: train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"
        in message
    )
    assert cache_listing(cache) == []


def test_an_unusable_cache_directory_is_a_clear_error(tmp_path, cache, monkeypatch):
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv("NNCORE_CACHE", str(tmp_path / "file"))
    forbid_network(monkeypatch)
    with pytest.raises(FileNotFoundError, match="creating the cache directory"):
        load_mnist()


# ----------------------------------------------------------------------------------------------
# The real data


def test_load_digits():
    (x_train, y_train), (x_test, y_test) = load_digits()
    assert x_train.shape == (6000, 28, 28) and x_test.shape == (1000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.uint8
    assert np.bincount(y_train).tolist() == [600] * 10
    assert np.bincount(y_test).tolist() == [100] * 10


def test_real_mnist_files_when_present(monkeypatch):
    directory = mnist_dir()
    if not all((directory / f"{name}.gz").is_file() for name in MNIST_FILES.values()):
        pytest.skip(f"MNIST not found in {directory}; set NNCORE_DATA to run this test")
    forbid_network(monkeypatch)
    (x_train, y_train), (x_test, y_test) = load_mnist(directory)
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    assert y_train[:5].tolist() == [5, 0, 4, 1, 9] and y_test[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    np.testing.assert_array_equal(
        x_test, reference_read_idx(directory / "t10k-images-idx3-ubyte.gz"), strict=False
    )


def test_paths_may_be_bytes_and_other_objects_are_refused(tmp_path):
    path = tmp_path / "labels.idx"
    path.write_bytes(bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 8, 9]))
    assert read_idx(bytes(path)).tolist() == [7, 8, 9]
    with pytest.raises(TypeError, match="read_idx: expected a file path .*got int"):
        read_idx(3)
    with pytest.raises(TypeError, match="load_mnist: expected a file path .*got list"):
        load_mnist([])
