"""Datasets: MNIST (find, download, bundled subset) and two toy 2-D problems.

MNIST is returned as `Mnist(train=Split(x, y), test=Split(x, y))`, named tuples that unpack as
`(x_train, y_train), (x_test, y_test) = mnist()`; x is uint8 (N, 28, 28), y is int64 (N,).

Where `mnist()` looks, in order: `path=`, `$FASTNN_DATA`, the cache folder
(`$XDG_CACHE_HOME/fastnn/mnist`, default `~/.cache/fastnn/mnist`), then (download=True) it
downloads the four canonical .gz files into the cache, each checked against its canonical md5.
"""
import gzip
import hashlib
import http.client
import os
import struct
import time
import urllib.error
import urllib.request
import zlib
from typing import NamedTuple

import numpy as np

from .atomic import atomic_write
from .data import idx

__all__ = ["Split", "Mnist", "FileSpec", "DatasetNotFound", "DownloadError", "MNIST_MANIFEST",
           "MNIST_MIRRORS", "SUBSET_DIR", "SUBSET_PREFIX", "SUBSET_NOTICE", "mnist", "mnist_subset",
           "mnist_or_subset", "mnist_cache_dir", "mnist_search_dirs", "download_mnist",
           "download_file", "spiral", "two_class_grid"]


class Split(NamedTuple):
    x: np.ndarray  # uint8 (N, 28, 28)
    y: np.ndarray  # int64 (N,)


class Mnist(NamedTuple):
    train: Split
    test: Split


class DatasetNotFound(FileNotFoundError):
    """No usable copy of a dataset was found (or could be downloaded); the message says where
    it looked and how to fix it."""


class DownloadError(OSError):
    """A download failed (HTTP error, network error, truncated body or checksum mismatch).
    Nothing is left behind that a later run would trust."""


class FileSpec(NamedTuple):
    shape: tuple  # of the decompressed IDX array
    md5: str      # of the decompressed IDX bytes (for verify=True on any copy)
    gz_md5: str   # of the canonical .gz download (checked on every download)


# The canonical files (http://yann.lecun.com/exdb/mnist/). Tests inject their own manifest.
MNIST_MANIFEST = {
    "train-images-idx3-ubyte": FileSpec((60000, 28, 28), "6bbc9ace898e44ae57da46a324031adb",
                                        "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train-labels-idx1-ubyte": FileSpec((60000,), "a25bea736e30d166cdddb491f175f624",
                                        "d53e105ee54ea40749a09fcbcd1e9432"),
    "t10k-images-idx3-ubyte": FileSpec((10000, 28, 28), "2646ac647ad5339dbf082846283269ea",
                                       "9fb629c4189551a2d022fa330f9573f3"),
    "t10k-labels-idx1-ubyte": FileSpec((10000,), "27ae3e4e09519cfbb04c329615203637",
                                       "ec29112dd5afa0611ce80d1b7f02629c"),
}
# yann.lecun.com often answers 403 to scripts; these mirrors serve the same canonical .gz bytes.
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/")
SUBSET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "datasets_data")
SUBSET_PREFIX = "subset-"  # the bundled files are subset-<canonical name>.gz
SUBSET_NOTICE = ("full MNIST not found; using the bundled subset (3,000 train / 1,000 test "
                 "images). For the full set set FASTNN_DATA to a folder with the four MNIST "
                 "IDX files, or run fastnn.datasets.mnist() once to download it.")


# ---------------------------------------------------------------------------------------------
# Finding a copy


def mnist_cache_dir():
    """`$XDG_CACHE_HOME/fastnn/mnist` when XDG_CACHE_HOME is an absolute path (XDG spec),
    else `~/.cache/fastnn/mnist`."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastnn", "mnist")


def mnist_search_dirs(path=None):
    """[(where, folder or None)] in search order; None means "not set"."""
    env = os.environ.get("FASTNN_DATA") or None
    dirs = [("$FASTNN_DATA", os.path.expanduser(env) if env else None),
            ("cache", mnist_cache_dir())]
    if path is not None:
        dirs.insert(0, ("path=", os.path.expanduser(os.fspath(path))))
    return dirs


def _cheap_shape(path):
    """The IDX shape of `path` after checking the size its header implies against the file
    size (raw: done by IdxReader) or the gzip trailer's ISIZE (gz), without decompressing."""
    with idx.IdxReader(path) as reader:
        compressed, shape = reader.compressed, reader.shape
        size = reader.header_size + reader.data_bytes
    if compressed:
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            isize = struct.unpack("<I", f.read(4))[0]  # uncompressed size mod 2**32
        if isize != size % 2**32:
            raise idx.IdxError(f"{path}: gzip trailer says {isize} bytes uncompressed, the header "
                               f"{shape} needs {size} (truncated or corrupt)")
    return shape


def _check_folder(folder, manifest, verify):
    """{name: file path} when `folder` holds every file of `manifest` with the right shape and
    size (and, verify=True, the md5 of its decompressed bytes); else raise idx.IdxError /
    FileNotFoundError naming the bad files. Without verify it reads headers only."""
    if not os.path.isdir(folder):
        raise FileNotFoundError("no such folder")
    files, problems = {}, []
    for name, spec in manifest.items():
        try:
            found = idx.find_idx(folder, name)
        except FileNotFoundError:
            problems.append(f"{name}[.gz] missing")
            continue
        try:
            shape = _cheap_shape(found)
            if shape != tuple(spec.shape):
                raise idx.IdxError(f"shape {shape}, expected {tuple(spec.shape)}")
            if verify and _md5(found) != spec.md5:
                raise idx.IdxError("md5 of the decompressed bytes does not match")
        except (idx.IdxError, OSError, EOFError, zlib.error) as e:
            problems.append(f"{os.path.basename(found)}: {e}")
            continue
        files[name] = found
    if problems:
        raise idx.IdxError("; ".join(problems))
    return files


def _md5(path):
    """md5 of the decompressed bytes."""
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    h = hashlib.md5()
    with (gzip.open if gz else open)(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _load(files):
    def pair(images, labels):
        return Split(*idx.read_labeled(files[images], files[labels]))
    return Mnist(pair("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                 pair("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))


# ---------------------------------------------------------------------------------------------
# Downloading


def download_file(url, dest, md5, timeout=30.0, max_seconds=None):
    """Download `url` to `dest` if its md5 is `md5`, atomically (fastnn.atomic: temp file in
    dest's folder, fsync, os.replace). On any failure (or Ctrl-C) the temp file is removed and
    `dest` is untouched. `timeout` bounds each connect/read wait in seconds; `max_seconds`
    (default 20 * timeout) bounds the whole transfer, so a server dripping bytes cannot hang it."""
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    allowed = 20 * timeout if max_seconds is None else max_seconds
    deadline = time.monotonic() + allowed
    with atomic_write(dest) as f:
        os.fchmod(f.fileno(), 0o644)  # mkstemp makes 0600
        h, got = hashlib.md5(), 0
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                length = resp.headers.get("Content-Length")
                while chunk := resp.read(1 << 16):
                    f.write(chunk)
                    h.update(chunk)
                    got += len(chunk)
                    if time.monotonic() > deadline:
                        raise DownloadError(f"{url}: too slow: {got} bytes in the "
                                            f"{allowed:g} s allowed")
        except DownloadError:
            raise
        except urllib.error.HTTPError as e:
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
        except urllib.error.URLError as e:
            raise DownloadError(f"{url}: connection failed ({e.reason})") from e
        except (http.client.HTTPException, OSError) as e:  # reset, timeout, IncompleteRead
            raise DownloadError(f"{url}: connection failed after {got} bytes "
                                f"({type(e).__name__}: {e})") from e
        # http.client returns a short body without raising, so count the bytes ourselves.
        if length is not None and got != int(length):
            raise DownloadError(f"{url}: truncated: got {got} of {length} bytes")
        if h.hexdigest() != md5:
            raise DownloadError(f"{url}: checksum mismatch: md5 {h.hexdigest()}, expected {md5}")
    return dest


def download_mnist(folder=None, url=None, timeout=30.0, manifest=None, names=None):
    """Download the MNIST .gz files (all, or `names`) into `folder` (default: the cache).

    `url` is a base URL (the file names are appended); default `$FASTNN_MNIST_URL`, else the
    mirrors in MNIST_MIRRORS tried in turn. Raises DownloadError with every mirror's failure.
    """
    manifest = MNIST_MANIFEST if manifest is None else manifest
    folder = folder or mnist_cache_dir()
    url = url or os.environ.get("FASTNN_MNIST_URL")
    bases = [url] if url else list(MNIST_MIRRORS)
    for name in names or manifest:
        errors = []
        for base in bases:
            try:
                download_file(base.rstrip("/") + "/" + name + ".gz",
                              os.path.join(folder, name + ".gz"), manifest[name].gz_md5, timeout)
                break
            except DownloadError as e:
                errors.append(str(e))
        else:
            raise DownloadError("; ".join(errors))
    return folder


# ---------------------------------------------------------------------------------------------
# Public loaders


def mnist(path=None, download=True, verify=False, url=None, timeout=30.0, manifest=None):
    """Full MNIST as `Mnist(train=Split(x, y), test=Split(x, y))`.

    Looks in `path`, `$FASTNN_DATA`, then the cache folder (see `mnist_cache_dir`); a folder is
    used when it holds the four IDX files (.gz or raw) with the right headers (verify=True also
    checks the md5 of every file's decompressed bytes). Else, with download=True, downloads the
    missing files into the cache (md5-checked; base URL `url` or `$FASTNN_MNIST_URL`).
    Raises DatasetNotFound naming every place it looked and how to fix it.
    `manifest` ({name: FileSpec}) replaces the canonical shapes/md5s (for tests).
    """
    manifest = MNIST_MANIFEST if manifest is None else manifest
    looked = []
    for where, folder in mnist_search_dirs(path):
        if folder is None:
            looked.append(f"{where}: not set")
            continue
        try:
            return _load(_check_folder(folder, manifest, verify))
        except (idx.IdxError, OSError) as e:
            looked.append(f"{where} {folder}: {e}")
    failure, cause = "download=False", None
    if download:
        cache = mnist_cache_dir()
        # Fetch only what the cache lacks or has broken; the rest was checked when it came.
        missing = [n for n in manifest if not _usable(cache, n, manifest)]
        try:
            download_mnist(cache, url, timeout, manifest, missing)
            return _load(_check_folder(cache, manifest, verify))
        except (DownloadError, idx.IdxError, OSError) as e:
            failure, cause = f"download failed: {e}", e
    raise DatasetNotFound(_not_found_message(looked, failure, manifest)) from cause


def _usable(folder, name, manifest):
    try:
        _check_folder(folder, {name: manifest[name]}, verify=False)
        return True
    except (idx.IdxError, OSError):
        return False


def _not_found_message(looked, failure, manifest):
    names = ", ".join(n + ".gz" for n in manifest)
    return ("MNIST not found. Looked in:\n  - " + "\n  - ".join(looked) + f"\n  - {failure}\n"
            f"To fix: set FASTNN_DATA to a folder holding {names} (raw or .gz), "
            "or pass mnist(path=...), or allow the download (download=True, network needed, "
            "base URL overridable with FASTNN_MNIST_URL), "
            "or use the bundled subset: fastnn.datasets.mnist_subset().")


def mnist_subset():
    """The bundled stratified MNIST subset (3,000 train = 300 per digit, 1,000 test = 100 per
    digit; see fastnn/datasets_data/README.md), in the same format as `mnist()`."""
    return _load({name: idx.find_idx(SUBSET_DIR, SUBSET_PREFIX + name) for name in MNIST_MANIFEST})


def mnist_or_subset(path=None, verify=False, manifest=None):
    """(data, full): full MNIST when it can be had without downloading (full=True), else the
    bundled subset (full=False; callers should tell the user, e.g. print SUBSET_NOTICE)."""
    try:
        return mnist(path, download=False, verify=verify, manifest=manifest), True
    except DatasetNotFound:
        return mnist_subset(), False


# ---------------------------------------------------------------------------------------------
# Toy 2-D problems


def spiral(n_per_class=100, classes=3, noise=0.2, seed=None):
    """The CS231n spiral: `classes` interleaved arms of `n_per_class` points each.

    Arm j has radius 0..1 and angle 4j..4(j+1) radians plus N(0, noise) jitter, as in
    https://cs231n.github.io/neural-networks-case-study/. Returns x float32 (N, 2) in about
    [-1, 1]^2 and y int64 (N,), N = n_per_class * classes, in class order (shuffle to train).
    """
    if n_per_class < 1 or classes < 1:
        raise ValueError(f"spiral: n_per_class and classes must be >= 1, "
                         f"got {n_per_class} and {classes}")
    rng = np.random.default_rng(seed)
    r = np.tile(np.linspace(0.0, 1.0, n_per_class), classes)
    y = np.repeat(np.arange(classes, dtype=np.int64), n_per_class)
    t = 4.0 * y + np.tile(np.linspace(0.0, 4.0, n_per_class), classes)
    t += rng.standard_normal(t.shape) * noise
    x = np.stack([r * np.sin(t), r * np.cos(t)], axis=1).astype(np.float32)
    return x, y


def _two_class_label(x, boundary):
    if boundary == "sine":  # above one period of a sine wave across the area
        return x[:, 1] > 5.0 + 2.0 * np.sin(x[:, 0] * (2 * np.pi / 10.0))
    if boundary == "circle":  # inside a circle of half the area around the centre
        return np.hypot(x[:, 0] - 5.0, x[:, 1] - 5.0) < np.sqrt(50.0 / np.pi)
    raise ValueError(f"two_class_grid: boundary must be 'sine' or 'circle', got {boundary!r}")


def two_class_grid(n=400, seed=None, boundary="sine", margin=0.0):
    """Points uniform on the 10x10 square [0, 10]^2, split by a curved boundary.

    boundary="sine": y = 1 above x1 = 5 + 2 sin(2 pi x0 / 10); "circle": y = 1 inside the circle
    of area 50 around (5, 5). Both classes cover half the area; the sample is exactly balanced
    (n // 2 of class 0, the rest class 1), shuffled. margin > 0 drops points closer than about
    `margin` to the boundary (a separable gap). Returns x float32 (n, 2), y int64 (n,).
    """
    if n < 2:
        raise ValueError(f"two_class_grid: n must be >= 2, got {n}")
    rng = np.random.default_rng(seed)
    want = (n // 2, n - n // 2)
    keep = ([], [])
    have = [0, 0]
    while have[0] < want[0] or have[1] < want[1]:
        x = rng.uniform(0.0, 10.0, size=(2 * n, 2))
        y = _two_class_label(x, boundary)
        if margin > 0:
            # A point is in the gap when a move of margin/2 or margin (8 directions) flips it.
            ok = np.ones(len(x), bool)
            for a in np.arange(8) * (np.pi / 4):
                for r in (0.5 * margin, margin):
                    ok &= _two_class_label(x + r * np.array([np.cos(a), np.sin(a)]), boundary) == y
            x, y = x[ok], y[ok]
        for c in (0, 1):
            take = x[y == c][: want[c] - have[c]]
            keep[c].append(take)
            have[c] += len(take)
    x = np.concatenate(keep[0] + keep[1]).astype(np.float32)
    y = np.repeat(np.array([0, 1], dtype=np.int64), want)
    order = rng.permutation(n)
    return x[order], y[order]
