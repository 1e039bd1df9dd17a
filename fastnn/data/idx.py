"""IDX files (the MNIST format): read whole or in chunks, write atomically, validate everything.

Layout: two zero bytes, a type code, the number of dims, then each dim as a big-endian int32,
then the data, big-endian, C order. Files may be gzip-compressed (detected by the magic bytes,
not the name). Every problem raises IdxError naming the file and the byte offset.
"""
import gzip
import math
import os
import zlib

import numpy as np

from ..atomic import atomic_write

TYPE_CODES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
CODES_BY_KIND = {(np.dtype(t).kind, np.dtype(t).itemsize): code for code, t in TYPE_CODES.items()}
GZIP_MAGIC = b"\x1f\x8b"
MNIST_NAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
               "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


class IdxError(ValueError):
    """A malformed, truncated or inconsistent IDX file (the message names file and offset)."""


def _open(path):
    """(binary file object, compressed?) for a raw or gzip IDX file."""
    f = open(path, "rb")
    magic = f.read(2)
    f.seek(0)
    if magic == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=f, mode="rb"), True
    return f, False


def _read_exact(f, count, path, offset, what):
    data = f.read(count)
    if len(data) != count:
        raise IdxError(f"{path}: truncated at byte {offset + len(data)}: expected {count} bytes of {what}")
    return data


class IdxReader:
    """Chunked reader: `shape`, `dtype`, `len()`, `read(start, count, out=None)`, `iter_chunks(n)`.

    Holds only the chunk being read; for gzip files, reads stream the decompression forward
    (a backward `read` restarts it). Use as a context manager or call close().
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._file, self.compressed = _open(self.path)
        try:
            self._parse_header()
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:  # EOFError, zlib.error: fuzzing
            self.close()
            raise IdxError(f"{self.path}: corrupt gzip data in the header: {exc}") from None
        except BaseException:
            self.close()
            raise

    def _parse_header(self):
        head = _read_exact(self._file, 4, self.path, 0, "header")
        if head[0] != 0 or head[1] != 0:
            raise IdxError(f"{self.path}: bad magic at byte 0: {head.hex()} (an IDX file starts "
                           f"with two zero bytes)")
        if head[2] not in TYPE_CODES:
            raise IdxError(f"{self.path}: unknown IDX type code 0x{head[2]:02x} at byte 2")
        ndim = head[3]
        if ndim == 0:
            raise IdxError(f"{self.path}: zero dimensions at byte 3")
        dims = np.frombuffer(_read_exact(self._file, 4 * ndim, self.path, 4, "dims"), ">u4")
        self.shape = tuple(int(d) for d in dims)
        self.file_dtype = TYPE_CODES[head[2]]
        self.dtype = self.file_dtype.newbyteorder("=")
        self.header_size = 4 + 4 * ndim
        self.record_shape = self.shape[1:]
        # math.prod on Python ints: np.prod in int64 wraps silently for 255 huge dims.
        self.record_bytes = math.prod(self.record_shape) * self.file_dtype.itemsize
        self.data_bytes = self.shape[0] * self.record_bytes
        if not self.compressed:
            # Raw files: check the length before anything is allocated (a header may claim 10^12).
            size = os.fstat(self._file.fileno()).st_size
            if size != self.header_size + self.data_bytes:
                kind = "truncated" if size < self.header_size + self.data_bytes else "has trailing bytes"
                raise IdxError(f"{self.path}: {kind}: header at byte 4 says {self.shape} "
                               f"({self.header_size + self.data_bytes} bytes), file has {size}")
        else:
            # gzip: the size is unknown until decompressed, but deflate expands at most 1032:1, so
            # a header claiming more than that is refused before read() allocates it.
            size = os.fstat(self._file.fileobj.fileno()).st_size
            if self.header_size + self.data_bytes > 1032 * size + 1024:
                raise IdxError(f"{self.path}: corrupt: header at byte 4 says {self.shape} "
                               f"({self.header_size + self.data_bytes} bytes), more than {size} "
                               f"gzip bytes can hold")
        self._position = 0  # records consumed so far

    def __len__(self):
        return self.shape[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Close the file (also at the end of a `with`)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _seek_record(self, start):
        if start != self._position:
            if self.compressed and start < self._position:
                self._file.seek(0)  # gzip seeks backward by re-reading from the start
            self._file.seek(self.header_size + start * self.record_bytes)
            self._position = start

    def read(self, start, count, out=None):
        """Records [start, start + count) as an array (into `out` when given, no allocation)."""
        if start < 0 or count < 0 or start + count > len(self):
            raise IndexError(f"{self.path}: records [{start}, {start + count}) outside [0, {len(self)})")
        shape = (count,) + self.record_shape
        if out is None:
            out = np.empty(shape, self.dtype)
        elif out.shape != shape or out.dtype != self.dtype or not out.flags.c_contiguous:
            raise ValueError(f"read: out must be C-contiguous {self.dtype} {shape}, got {out.dtype} {out.shape}")
        view = memoryview(out.reshape(-1).view(np.uint8))
        offset = self.header_size + start * self.record_bytes
        filled = 0
        try:
            self._seek_record(start)  # in the try: a gzip seek decompresses, and may fail
            while filled < len(view):
                got = self._file.readinto(view[filled:])
                if not got:
                    raise IdxError(f"{self.path}: truncated at byte {offset + filled}: expected "
                                   f"{len(view) - filled} more bytes of records")
                filled += got
        except (gzip.BadGzipFile, EOFError, OSError, zlib.error) as exc:
            raise IdxError(f"{self.path}: corrupt data near byte {offset + filled}: {exc}") from None
        self._position = start + count
        if self.file_dtype.byteorder == ">":
            out.byteswap(inplace=True)
        return out

    def iter_chunks(self, chunk_records):
        """Yield consecutive record arrays of at most `chunk_records` (one reused buffer)."""
        buffer = np.empty((min(chunk_records, len(self)),) + self.record_shape, self.dtype)
        for start in range(0, len(self), chunk_records):
            count = min(chunk_records, len(self) - start)
            yield self.read(start, count, out=buffer[:count])

    def check_end(self):
        """For gzip files: raise IdxError if bytes follow the last record."""
        try:  # found by fuzzing: a damaged gzip tail raised BadGzipFile/EOFError from here
            self._seek_record(len(self))
            extra = self._file.read(1)
        except (gzip.BadGzipFile, EOFError, OSError, zlib.error) as exc:
            raise IdxError(f"{self.path}: corrupt gzip data after the last record: {exc}") from None
        if extra:
            raise IdxError(f"{self.path}: trailing bytes after byte {self.header_size + self.data_bytes}")


def read_idx(path):
    """The whole file as an array (native byte order), after checking its length."""
    with IdxReader(path) as reader:
        data = reader.read(0, len(reader))
        reader.check_end()
    return data


def read_labeled(images_path, labels_path, num_classes=10):
    """(images, labels int64) after checking the counts agree and every label < num_classes."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if labels.ndim != 1:
        raise IdxError(f"{labels_path}: labels must be 1-D, header at byte 4 says {labels.shape}")
    if len(labels) != len(images):
        raise IdxError(f"{labels_path}: {len(labels)} labels (header at byte 4) but "
                       f"{images_path} has {len(images)} images")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        at = bad[0]
        raise IdxError(f"{labels_path}: label {labels[at]} at byte {8 + at * labels.itemsize} (record {at}) is outside "
                       f"[0, {num_classes})")
    return images, labels.astype(np.int64)


def write_idx(path, array, compress=None):
    """Write `array` as IDX (gzip when compress=True or the path ends in .gz), atomically."""
    array = np.ascontiguousarray(array)
    code = CODES_BY_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if code is None or array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"write_idx: cannot store dtype {array.dtype} with {array.ndim} dims in IDX")
    if compress is None:
        compress = os.fspath(path).endswith(".gz")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    body = array.astype(TYPE_CODES[code], copy=False).tobytes()
    with atomic_write(path, "wb") as f:
        if compress:
            with gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
                gz.write(header)
                gz.write(body)
        else:
            f.write(header)
            f.write(body)


def find_idx(folder, name):
    """`folder/name` or `folder/name.gz`, whichever exists (raw first)."""
    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{folder}: neither {name} nor {name}.gz")


def mnist_files(folder, prefix=""):
    """{'train_images', 'train_labels', 'test_images', 'test_labels'} -> paths in `folder`
    (canonical MNIST names after `prefix`, raw or .gz); FileNotFoundError listing every missing one."""
    found, missing = {}, []
    for key, name in MNIST_NAMES.items():
        try:
            found[key] = find_idx(folder, prefix + name)
        except FileNotFoundError:
            missing.append(prefix + name + "[.gz]")
    if missing:
        raise FileNotFoundError(f"{folder}: missing MNIST files: {', '.join(missing)}")
    return found
