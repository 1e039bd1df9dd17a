"""fastnn.datasets: where MNIST is looked for, downloads against a local server (good, bad
checksum, truncated, HTTP 500, reset, stalled, Ctrl-C), the bundled subset, the toy sets."""
import contextlib
import gzip
import hashlib
import http.server
import os
import socket
import struct
import threading
import urllib.request

import numpy as np
import pytest

from fastnn import datasets
from fastnn.data import idx
from fastnn.datasets import DatasetNotFound, DownloadError, FileSpec

NAMES = list(datasets.MNIST_MANIFEST)  # train-images, train-labels, t10k-images, t10k-labels


def synthetic(n_train=20, n_test=10, seed=0):
    """{name: array} of a tiny MNIST look-alike."""
    rng = np.random.default_rng(seed)
    return {NAMES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            NAMES[1]: (np.arange(n_train) % 10).astype(np.uint8),
            NAMES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            NAMES[3]: (np.arange(n_test) % 10).astype(np.uint8)}


def write_set(folder, arrays, gz=True):
    """Write `arrays` as IDX files into `folder`; return (manifest, {name: .gz bytes})."""
    os.makedirs(folder, exist_ok=True)
    manifest, blobs = {}, {}
    for name, arr in arrays.items():
        path = os.path.join(folder, name)
        idx.write_idx(path, arr)  # raw
        with open(path, "rb") as f:
            raw = f.read()
        blob = gzip.compress(raw, mtime=0)
        if gz:
            os.unlink(path)
            with open(path + ".gz", "wb") as f:
                f.write(blob)
        manifest[name] = FileSpec(arr.shape, hashlib.md5(raw).hexdigest(),
                                  hashlib.md5(blob).hexdigest())
        blobs[name] = blob
    return manifest, blobs


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Isolated HOME / XDG_CACHE_HOME / FASTNN_DATA / FASTNN_MNIST_URL."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    monkeypatch.delenv("FASTNN_MNIST_URL", raising=False)
    return tmp_path


def cache_dir(env):
    return env / "xdg" / "fastnn" / "mnist"


# ---------------------------------------------------------------------------------------------
# Search order and the error message


def test_cache_dir_follows_xdg_then_home(env, monkeypatch):
    assert datasets.mnist_cache_dir() == str(cache_dir(env))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # XDG spec: must be absolute
    assert datasets.mnist_cache_dir() == str(env / "home" / ".cache" / "fastnn" / "mnist")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert datasets.mnist_cache_dir() == str(env / "home" / ".cache" / "fastnn" / "mnist")


def test_search_order_path_then_env_then_cache(env, monkeypatch):
    # Three copies that differ in their number of training images: 20, 30, 40.
    sets = {n: synthetic(n_train=n, seed=n) for n in (20, 30, 40)}
    manifests = {}
    for n, folder in ((20, env / "arg"), (30, env / "envdir"), (40, cache_dir(env))):
        manifests[n], _ = write_set(folder, sets[n])
    monkeypatch.setenv("FASTNN_DATA", str(env / "envdir"))

    def loaded(path, n):
        (x, y), (xt, yt) = datasets.mnist(path, download=False, manifest=manifests[n])
        np.testing.assert_array_equal(x, sets[n][NAMES[0]])
        assert x.dtype == np.uint8 and x.shape == (n, 28, 28)
        assert y.dtype == np.int64 and xt.shape == (10, 28, 28) and yt.dtype == np.int64

    # A manifest only matches its own copy, so each call shows which folder was taken.
    loaded(env / "arg", 20)
    loaded(env / "nowhere", 30)  # path= missing -> FASTNN_DATA
    monkeypatch.delenv("FASTNN_DATA")
    loaded(None, 40)  # -> cache
    # Same data in all three: path= wins over FASTNN_DATA, which wins over the cache.
    same = synthetic(seed=7)
    for folder in (env / "p", env / "e", cache_dir(env)):
        manifest, _ = write_set(folder, same)
    monkeypatch.setenv("FASTNN_DATA", str(env / "e"))
    calls = []
    real = datasets._check_folder
    monkeypatch.setattr(datasets, "_check_folder",
                        lambda folder, *a: calls.append(str(folder)) or real(folder, *a))
    datasets.mnist(env / "p", download=False, manifest=manifest)
    assert calls == [str(env / "p")]
    calls.clear()
    datasets.mnist(download=False, manifest=manifest)
    assert calls == [str(env / "e")]


def test_raw_files_are_found_too(env):
    arrays = synthetic()
    manifest, _ = write_set(env / "raw", arrays, gz=False)
    (x, y), _ = datasets.mnist(env / "raw", download=False, manifest=manifest, verify=True)
    np.testing.assert_array_equal(y, arrays[NAMES[1]])


def test_not_found_message_names_every_place_and_the_fixes(env, monkeypatch):
    monkeypatch.setenv("FASTNN_DATA", str(env / "from-env"))
    with pytest.raises(DatasetNotFound) as e:
        datasets.mnist(env / "from-arg", download=False)
    msg = str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    for place in (env / "from-arg", env / "from-env", cache_dir(env)):
        assert str(place) in msg
    for fix in ("set FASTNN_DATA", "path=", "mnist_subset()", "download=False"):
        assert fix in msg
    monkeypatch.delenv("FASTNN_DATA")
    with pytest.raises(DatasetNotFound, match=r"\$FASTNN_DATA: not set"):
        datasets.mnist(download=False)


def test_broken_folder_is_skipped_with_its_reason(env, monkeypatch):
    arrays = synthetic()
    manifest, _ = write_set(env / "bad", arrays)
    with open(env / "bad" / (NAMES[2] + ".gz"), "wb") as f:  # a header promising 10 images
        f.write(gzip.compress(struct.pack(">I3i", 0x0803, 10, 28, 28) + b"\0" * 100))
    manifest_good, _ = write_set(env / "good", arrays)
    monkeypatch.setenv("FASTNN_DATA", str(env / "good"))
    (x, _), _ = datasets.mnist(env / "bad", download=False, manifest=manifest)  # -> FASTNN_DATA
    assert x.shape == (20, 28, 28)
    monkeypatch.delenv("FASTNN_DATA")
    with pytest.raises(DatasetNotFound, match=NAMES[2]):
        datasets.mnist(env / "bad", download=False, manifest=manifest)


def test_verify_checks_md5_of_the_data(env):
    arrays = synthetic()
    manifest, _ = write_set(env / "d", arrays)
    arrays[NAMES[0]][3, 4, 5] ^= 1  # same header, different pixels
    write_set(env / "d", {NAMES[0]: arrays[NAMES[0]]})
    datasets.mnist(env / "d", download=False, manifest=manifest)  # the cheap check passes
    with pytest.raises(DatasetNotFound, match="md5"):
        datasets.mnist(env / "d", download=False, manifest=manifest, verify=True)


# ---------------------------------------------------------------------------------------------
# Downloads from a local server


class Handler(http.server.BaseHTTPRequestHandler):
    """GET /<mode>/<name>.gz. `blobs` {file: bytes}; modes break only t10k-images (the third
    file), so the first two arrive and the failure happens mid-way through the set."""
    blobs = {}
    requests = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        mode, fname = self.path.strip("/").split("/")
        Handler.requests.append(self.path)
        body = self.blobs.get(fname)
        if body is None:
            self.send_error(404)
            return
        if fname.startswith("t10k-images"):
            if mode == "error500":
                self.send_error(500, "boom")
                return
            if mode == "checksum":
                body = body[:-1] + bytes([body[-1] ^ 1])
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if fname.startswith("t10k-images") and mode in ("truncated", "reset", "stall"):
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if mode == "reset":  # RST instead of FIN: the client sees ECONNRESET
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
            elif mode == "stall":
                threading.Event().wait(1.5)  # longer than the client's timeout
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    Handler.requests = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def remote(tmp_path):
    """Synthetic files served by the local server: (arrays, manifest)."""
    arrays = synthetic(seed=3)
    manifest, blobs = write_set(tmp_path / "served", arrays)
    Handler.blobs = {n + ".gz": b for n, b in blobs.items()}
    return arrays, manifest


def test_download_good(env, server, remote, monkeypatch):
    arrays, manifest = remote
    monkeypatch.setenv("FASTNN_MNIST_URL", server + "/good")  # the env var as the base URL
    (x, y), (xt, yt) = datasets.mnist(manifest=manifest, verify=True)
    np.testing.assert_array_equal(x, arrays[NAMES[0]])
    np.testing.assert_array_equal(yt, arrays[NAMES[3]])
    assert sorted(os.listdir(cache_dir(env))) == sorted(n + ".gz" for n in NAMES)
    # The next call finds the cache and does not download again.
    n = len(Handler.requests)
    datasets.mnist(manifest=manifest)
    assert len(Handler.requests) == n


@pytest.mark.parametrize("mode, words", [("checksum", "checksum mismatch"),
                                         ("truncated", "truncated"),
                                         ("error500", "HTTP 500"),
                                         # the RST may land before or after the bytes sent
                                         ("reset", "connection failed|truncated"),
                                         ("stall", "connection failed")])
def test_download_failure_leaves_nothing_to_trust(env, server, remote, mode, words):
    arrays, manifest = remote
    with pytest.raises(DatasetNotFound, match=words) as e:
        datasets.mnist(url=f"{server}/{mode}", manifest=manifest, timeout=0.5)
    assert isinstance(e.value.__cause__, DownloadError)
    assert "download failed" in str(e.value) and "mnist_subset()" in str(e.value)
    # The two files before the failure are complete and verified; the failed one left nothing.
    assert sorted(os.listdir(cache_dir(env))) == sorted(n + ".gz" for n in NAMES[:2])
    # A later good run fetches only what is missing and loads.
    Handler.requests = []
    (x, _), (xt, _) = datasets.mnist(url=f"{server}/good", manifest=manifest)
    np.testing.assert_array_equal(xt, arrays[NAMES[2]])
    assert sorted(r.split("/")[-1] for r in Handler.requests) == sorted(n + ".gz" for n in NAMES[2:])
    assert sorted(os.listdir(cache_dir(env))) == sorted(n + ".gz" for n in NAMES)


def test_offline_raises_not_found_with_the_reason(env, remote):
    _, manifest = remote
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DatasetNotFound, match="connection failed") as e:
        datasets.mnist(url=f"http://127.0.0.1:{port}", manifest=manifest, timeout=2)
    assert str(cache_dir(env)) in str(e.value)
    assert not cache_dir(env).exists() or os.listdir(cache_dir(env)) == []


def test_download_total_time_is_bounded(env, server, remote, tmp_path):
    Handler.blobs["slow.gz"] = b"x" * 300_000  # in 64 KiB reads: the deadline passes mid-way
    with pytest.raises(DownloadError, match="too slow"):
        datasets.download_file(f"{server}/good/slow.gz", tmp_path / "dl" / "slow.gz", "0" * 32,
                               timeout=5, max_seconds=0)
    assert os.listdir(tmp_path / "dl") == []


def test_download_interrupted_by_ctrl_c(env, remote, monkeypatch, tmp_path):
    _, manifest = remote

    class Response:
        headers = {"Content-Length": "1000"}

        def __init__(self):
            self.calls = 0

        def read(self, n):
            self.calls += 1
            if self.calls > 1:
                raise KeyboardInterrupt
            return b"x" * 100

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response())
    dest = tmp_path / "dl" / "f.gz"
    with pytest.raises(KeyboardInterrupt):
        datasets.download_file("http://example.invalid/f.gz", dest, "0" * 32)
    assert os.listdir(tmp_path / "dl") == []


def test_corrupt_cache_file_is_replaced(env, server, remote):
    arrays, manifest = remote
    datasets.mnist(url=f"{server}/good", manifest=manifest)
    with open(cache_dir(env) / (NAMES[3] + ".gz"), "wb") as f:
        f.write(b"not gzip")
    Handler.requests = []
    (_, _), (_, yt) = datasets.mnist(url=f"{server}/good", manifest=manifest)
    np.testing.assert_array_equal(yt, arrays[NAMES[3]])
    assert [r.split("/")[-1] for r in Handler.requests] == [NAMES[3] + ".gz"]


# ---------------------------------------------------------------------------------------------
# Bundled subset


def test_subset_shapes_and_strata():
    (x, y), (xt, yt) = datasets.mnist_subset()
    assert x.shape == (3000, 28, 28) and x.dtype == np.uint8
    assert xt.shape == (1000, 28, 28) and xt.dtype == np.uint8
    assert y.dtype == np.int64 and yt.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y, minlength=10), [300] * 10)
    np.testing.assert_array_equal(np.bincount(yt, minlength=10), [100] * 10)
    assert y.min() == 0 and y.max() == 9 and x.max() > 200  # real digits, not blank


def test_subset_readme_has_attribution_and_current_md5s():
    with open(os.path.join(datasets.SUBSET_DIR, "README.md")) as f:
        readme = f.read()
    for words in ("CC BY-SA 3.0", "LeCun", "Cortes", "Burges", "make_mnist_subset.py"):
        assert words in readme
    for name in NAMES:
        with open(os.path.join(datasets.SUBSET_DIR, datasets.SUBSET_PREFIX + name + ".gz"), "rb") as f:
            blob = f.read()
        row = f"| {datasets.SUBSET_PREFIX}{name}.gz | "
        assert hashlib.md5(blob).hexdigest() in readme.split(row)[1].split("\n")[0]
        assert hashlib.md5(gzip.decompress(blob)).hexdigest() in readme


def test_subset_is_not_taken_for_full_mnist(env, monkeypatch):
    monkeypatch.setenv("FASTNN_DATA", datasets.SUBSET_DIR)
    with pytest.raises(DatasetNotFound, match=datasets.SUBSET_DIR):
        datasets.mnist(download=False)


def test_mnist_or_subset(env, monkeypatch):
    data, full = datasets.mnist_or_subset()
    assert full is False and data.train.x.shape == (3000, 28, 28)
    manifest, _ = write_set(env / "full", synthetic())
    data, full = datasets.mnist_or_subset(env / "full", manifest=manifest)
    assert full is True and data.train.x.shape == (20, 28, 28)


# ---------------------------------------------------------------------------------------------
# Toy 2-D sets


@pytest.mark.parametrize("n, k", [(100, 3), (7, 5)])
def test_spiral(n, k):
    x, y = datasets.spiral(n_per_class=n, classes=k, seed=1)
    assert x.shape == (n * k, 2) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [n] * k)
    assert np.abs(x).max() <= 1.0 + 1e-6
    x2, y2 = datasets.spiral(n_per_class=n, classes=k, seed=1)
    np.testing.assert_array_equal(x, x2)
    assert not np.array_equal(x, datasets.spiral(n_per_class=n, classes=k, seed=2)[0])
    clean, _ = datasets.spiral(n_per_class=n, classes=k, noise=0.0)
    np.testing.assert_allclose(np.hypot(*clean.T), np.tile(np.linspace(0, 1, n), k), atol=1e-6)


@pytest.mark.parametrize("boundary", ["sine", "circle"])
def test_two_class_grid(boundary):
    x, y = datasets.two_class_grid(n=301, seed=5, boundary=boundary)
    assert x.shape == (301, 2) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() >= 0 and x.max() <= 10
    np.testing.assert_array_equal(np.bincount(y), [150, 151])
    np.testing.assert_array_equal(y, datasets._two_class_label(x.astype(np.float64), boundary))
    x2, y2 = datasets.two_class_grid(n=301, seed=5, boundary=boundary)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, datasets.two_class_grid(n=301, seed=6, boundary=boundary)[0])
    xm, ym = datasets.two_class_grid(n=200, seed=5, boundary=boundary, margin=0.3)
    for a in np.arange(8) * (np.pi / 4):  # no point within the gap
        d = 0.15 * np.array([np.cos(a), np.sin(a)])
        np.testing.assert_array_equal(datasets._two_class_label(xm + d, boundary), ym)


def test_toy_errors():
    with pytest.raises(ValueError, match="boundary"):
        datasets.two_class_grid(boundary="square")
    with pytest.raises(ValueError, match="n_per_class"):
        datasets.spiral(n_per_class=0)
