"""The model file format: one .npz holding the architecture (JSON bytes), the weights, the
optimizer state and a sha256 digest of every entry. Read with a bounded npz reader (no pickle,
sizes checked before anything is allocated). This module reads and writes bytes and plain data:
it never builds a model (fastnn.model does, from what read_model_file returns). Checkpoints
(fastnn/train/checkpoint.py) are model files with extra entries."""
import hashlib
import json
import os
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


def _digest(arrays):
    """sha256 over every entry except the digest itself: name, dtype, shape, then the bytes."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        if name != DIGEST:
            a = np.ascontiguousarray(arrays[name])
            h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
            h.update(a.data if a.size else b"")
    return h.digest()


def _read_entry(zf, info, path):
    """One .npy entry, refusing before allocation a header whose size disagrees with the zip
    directory (np.load would allocate whatever the header claims: 10^12 elements)."""
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"npy version {version}")
        if dtype.hasobject:
            raise ValueError(f"entry {info.filename} holds Python objects (dtype {dtype})")
        count = 1
        for dim in shape:
            count *= dim
        nbytes = count * dtype.itemsize
        if nbytes != info.file_size - f.tell():
            raise ValueError(f"entry {info.filename}: header says {shape} {dtype} ({nbytes} bytes), "
                             f"the zip entry holds {info.file_size - f.tell()}")
        data = f.read(nbytes)  # reading to the end makes zipfile check the entry's CRC-32
        if len(data) != nbytes or f.read(1):
            raise ValueError(f"entry {info.filename}: short read")
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def read_npz(path, what="fastnn model"):
    """{name: array} of an npz written by save_model, digest verified; ModelFileError otherwise."""
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as zf:
            arrays = {}
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"unexpected entry {info.filename!r}")
                arrays[info.filename[:-4]] = _read_entry(zf, info, path)
    except FileNotFoundError:
        raise
    except _READ_ERRORS as exc:
        raise ModelFileError(f"{path}: not a readable {what} file ({type(exc).__name__}: {exc})") from None
    if DIGEST in arrays:
        if arrays.pop(DIGEST).tobytes() != _digest(arrays):
            raise ModelFileError(f"{path}: corrupt {what} file: sha256 digest mismatch")
    return arrays
