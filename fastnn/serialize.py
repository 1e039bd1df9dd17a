"""The model file format: one .npz holding the architecture (JSON bytes), the weights, the
optimizer state and a sha256 digest of every entry. Read with a bounded npz reader (no pickle,
sizes checked before anything is allocated). This module reads and writes bytes and plain data:
it never builds a model (fastnn.model does, from what read_model_file returns). Checkpoints
(fastnn/train/checkpoint.py) are model files with extra entries."""
import hashlib
import json
import os
import stat
import struct
import zipfile
import zlib

import numpy as np

from .atomic import atomic_write
from .errors import ModelFileError, shown

def write_model(path, model, extra_arrays=None, extra_config=None):
    """Write `model` (its config, flat params and optimizer state; and `extra_arrays`, and
    `extra_config` keys in its JSON) to `path`, atomically."""
    config = model.get_config()
    config.update(extra_config or {})
    arrays = dict(extra_arrays or {})
    if model.input_shape is not None:
        arrays["params"] = model.params
        if model.optimizer is not None:
            scalars = {}
            for key, value in model.optimizer.state_dict().items():
                if isinstance(value, np.ndarray):
                    arrays["optimizer." + key] = value
                else:
                    scalars[key] = value
            config["optimizer_state"] = scalars
    arrays["architecture"] = np.frombuffer(json.dumps(config).encode(), dtype=np.uint8)
    arrays[DIGEST] = np.frombuffer(_digest(arrays), dtype=np.uint8)
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def read_model_file(path, what="fastnn model"):
    """(config, arrays) of a model file: its parsed architecture JSON and its other entries
    (params, optimizer.*, ...); ModelFileError for anything that is not such a file."""
    path = os.fspath(path)
    arrays = read_npz(path, what=what)
    entry = arrays.pop("architecture", None)
    if entry is None:
        raise ModelFileError(f"{path}: not a {what} file (no architecture entry)")
    try:
        config = json.loads(entry.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{path}: corrupt architecture entry: {shown(str(exc))}") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: the architecture entry is not a JSON object")
    return config, arrays


def optimizer_state(config, arrays):
    """The optimizer state a model file holds: scalars from its config, arrays from its entries."""
    state = config.get("optimizer_state") or {}
    if not isinstance(state, dict):
        raise ModelFileError(f"optimizer_state must be a JSON object, got {shown(state)}")
    state = dict(state)
    state.update({k[len("optimizer."):]: v for k, v in arrays.items() if k.startswith("optimizer.")})
    return state


DIGEST = "sha256"
# What zipfile and the npy header parser raise on damaged input (a flipped flag bit can even
# ask for a password: RuntimeError; a flipped method field: NotImplementedError).
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError,
                NotImplementedError, RuntimeError, struct.error, OverflowError, SyntaxError)

# Bounds of read_npz (each one an argument). A model or checkpoint that a 512 MB machine can
# train is far below them; anything above is refused before it is allocated.
MAX_BYTES = 256 * 2**20              # all entries together, uncompressed
MAX_ENTRIES = 256                    # a checkpoint has about a dozen
MAX_ARCHITECTURE_BYTES = 4 * 2**20   # the JSON architecture (a few KB for hundreds of layers)
MAX_NAME_CHARS = 256                 # one entry's name
_CHUNK = 2**20                       # entries are read in pieces of this size
_EOCD = struct.Struct("<4s4H2LH")    # zip's end of central directory record
_EOCD_SIGNATURE, _ZIP64_LOCATOR = b"PK\x05\x06", b"PK\x06\x07"
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # what np.savez(_compressed) writes


def _digest(arrays):
    """sha256 over every entry except the digest itself: name, dtype, shape, then the bytes."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        if name != DIGEST:
            a = np.ascontiguousarray(arrays[name])
            h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
            h.update(a.reshape(-1).view(np.uint8).data if a.size else b"")
    return h.digest()


def _open_regular(path, max_file_bytes):
    """A binary file object on `path`, refused unless it is a regular file of at most
    `max_file_bytes`. O_NONBLOCK: opening a FIFO must not wait for a writer."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a device, FIFO or socket"
            raise ValueError(f"{kind}, not a regular file")
        if st.st_size > max_file_bytes:
            raise ValueError(f"the file has {st.st_size} bytes, more than the {max_file_bytes} "
                             f"this reader accepts (raise max_bytes to read it)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_directory(f, max_entries, max_directory_bytes):
    """Refuse, from the end record alone, a zip whose central directory (which zipfile reads
    whole, one object per entry) is larger than the bounds. Zip64 end records, written only for
    archives of 65535 entries or 4 GiB, are beyond the bounds anyway and are refused."""
    size = f.seek(0, os.SEEK_END)
    tail_start = max(0, size - _EOCD.size - 65535)  # the record, then a comment of <= 64 KiB
    f.seek(tail_start)
    tail = f.read()
    at = tail.rfind(_EOCD_SIGNATURE)
    if at < 0 or len(tail) - at < _EOCD.size:
        raise zipfile.BadZipFile("no zip end-of-directory record")
    _, _, _, _, entries, directory_bytes, _, _ = _EOCD.unpack_from(tail, at)
    if at >= 20 and tail[at - 20:at - 16] == _ZIP64_LOCATOR or entries == 0xFFFF:
        raise ValueError("a zip64 archive (more than 65535 entries or 4 GiB): beyond the bounds")
    if entries > max_entries or directory_bytes > max_directory_bytes:
        raise ValueError(f"the zip directory lists {entries} entries in {directory_bytes} bytes; "
                         f"at most {max_entries} entries are read")
    f.seek(0)


def _read_entry(zf, info, max_bytes):
    """One .npy entry of at most `max_bytes` data bytes. The npy header's size is checked
    against the bound and the zip directory before anything is allocated (np.load would
    allocate whatever the header claims: 10^12 elements); the data is then read in chunks into
    that buffer and must end exactly there, whatever the directory says."""
    if info.compress_type not in _ZIP_METHODS:  # bzip2/lzma decompress without an output bound
        raise ValueError(f"entry {shown(info.filename)}: compression method "
                         f"{info.compress_type} is not read (only stored or deflated)")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"npy version {version}")
        if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
            # model files and data sets hold numbers: no objects, strings, dates or records
            raise ValueError(f"entry {shown(info.filename)} holds {dtype}, not numbers")
        count = 1
        for dim in shape:
            count *= dim
        nbytes = count * dtype.itemsize  # Python ints: no overflow
        if nbytes > max_bytes:
            raise ValueError(f"entry {shown(info.filename)}: {shape} {dtype} is {nbytes} bytes, "
                             f"more than the {max_bytes} left within this reader's bounds")
        if nbytes != info.file_size - f.tell():
            raise ValueError(f"entry {shown(info.filename)}: header says {shape} {dtype} ({nbytes} "
                             f"bytes), the zip entry holds {info.file_size - f.tell()}")
        data = _read_exactly(f, nbytes, info.filename)
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def _read_exactly(f, nbytes, name):
    """`nbytes` bytes of `f` in chunks, then its end (where zipfile checks the CRC-32)."""
    data = bytearray(nbytes)
    view, filled = memoryview(data), 0
    while filled < nbytes:
        got = f.readinto(view[filled:filled + _CHUNK])
        if not got:
            raise ValueError(f"entry {shown(name)}: short read ({filled} of {nbytes} bytes)")
        filled += got
    if f.read(1):
        raise ValueError(f"entry {shown(name)}: more data than its header declares")
    return data


def read_npz(path, what="fastnn model", max_bytes=MAX_BYTES, max_entries=MAX_ENTRIES,
             max_architecture_bytes=MAX_ARCHITECTURE_BYTES):
    """{name: array} of an npz written by save_model, digest verified; ModelFileError otherwise.

    Memory stays bounded whatever the file holds: only regular files are read (a device, FIFO
    or directory is refused at once, without blocking), of at most about `max_bytes`; at most
    `max_entries` entries, whose uncompressed data together stay within `max_bytes` (the
    "architecture" entry within `max_architecture_bytes`), each refused before allocation when
    its header asks for more, and read in chunks that stop at its declared size. Peak memory is
    about the data returned plus one chunk."""
    path = os.fspath(path)
    for name, bound in (("max_bytes", max_bytes), ("max_entries", max_entries),
                        ("max_architecture_bytes", max_architecture_bytes)):
        if isinstance(bound, bool) or not isinstance(bound, int) or bound < 1:
            raise ValueError(f"read_npz: {name} must be a positive int, got {bound!r}")
    overhead = max_entries * (1024 + 2 * MAX_NAME_CHARS) + 65536  # headers, directory, comment
    try:
        with _open_regular(path, max_bytes + max_bytes // 64 + overhead) as f:
            _check_directory(f, max_entries, max_entries * (1024 + MAX_NAME_CHARS))
            with zipfile.ZipFile(f) as zf:
                arrays = _read_entries(zf, max_bytes, max_architecture_bytes)
    except FileNotFoundError:
        raise
    except _READ_ERRORS as exc:
        raise ModelFileError(f"{path}: not a readable {what} file "
                             f"({type(exc).__name__}: {shown(str(exc))})") from None
    if DIGEST in arrays:
        if arrays.pop(DIGEST).tobytes() != _digest(arrays):
            raise ModelFileError(f"{path}: corrupt {what} file: sha256 digest mismatch")
    return arrays


def _read_entries(zf, max_bytes, max_architecture_bytes):
    arrays, left = {}, max_bytes
    for info in zf.infolist():
        name = info.filename[:-4]
        if not info.filename.endswith(".npy") or len(name) > MAX_NAME_CHARS or name in arrays:
            raise ValueError(f"unexpected entry {shown(info.filename)}")
        bound = min(left, max_architecture_bytes) if name == "architecture" else left
        arrays[name] = _read_entry(zf, info, bound)
        left -= arrays[name].nbytes
    return arrays
