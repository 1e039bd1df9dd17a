"""Save/load: one .npz file holding the architecture (JSON bytes) and the weights, plus the
optimizer state and a sha256 digest of every entry. Read with a bounded npz reader (no pickle,
sizes checked against the zip directory before anything is allocated) and rebuilt from a
whitelist of classes. Checkpoints (fastnn/checkpoint.py) are model files with extra entries."""
import hashlib
import json
import os
import struct
import zipfile
import zlib

import numpy as np

from .atomic import atomic_write
from .layers import LAYERS
from .losses import LOSSES
from .optim import OPTIMIZERS

FORMAT = "fastnn.model"
VERSION = 1


class ModelFileError(ValueError):
    """A file that is not a fastnn model, or is truncated or corrupt."""


def model_config(model):
    return {
        "format": FORMAT, "version": VERSION, "dtype": model.dtype.name,
        "input_shape": None if model.input_shape is None else list(model.input_shape),
        "seed": model.seed,
        "layers": [{"class": type(layer).__name__, "config": layer.get_config()} for layer in model.layers],
        "loss": None if model.loss is None else {"class": type(model.loss).__name__,
                                                  "config": model.loss.get_config()},
        "optimizer": None if model.optimizer is None else {"class": type(model.optimizer).__name__,
                                                            "config": model.optimizer.get_config()},
        "global_step": getattr(model, "global_step", 0),
    }


def _instance(kind, registry, spec, where):
    if not isinstance(spec, dict) or spec.get("class") not in registry:
        raise ModelFileError(f"{where}: unknown {kind} {spec!r}; known: {sorted(registry)}")
    try:
        return registry[spec["class"]](**spec.get("config", {}))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{where}: bad {kind} config {spec!r}: {exc}") from None


def model_from_config(config, dtype=None, where="config"):
    from .model import Sequential
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelFileError(f"{where}: not a fastnn model (format is {config.get('format') if isinstance(config, dict) else None!r})")
    if config.get("version") != VERSION:
        raise ModelFileError(f"{where}: model format version {config.get('version')!r} is not "
                             f"supported (this fastnn reads version {VERSION})")
    layers = [_instance("layer", LAYERS, spec, where) for spec in config.get("layers", [])]
    loss = None if config.get("loss") is None else _instance("loss", LOSSES, config["loss"], where)
    optimizer = None if config.get("optimizer") is None else \
        _instance("optimizer", OPTIMIZERS, config["optimizer"], where)
    try:
        model = Sequential(layers, loss=loss, optimizer=optimizer, input_shape=config.get("input_shape"),
                           dtype=dtype or config.get("dtype", "float32"), seed=config.get("seed"))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{where}: the saved architecture does not build: {exc}") from None
    model.global_step = int(config.get("global_step", 0))
    return model


def save_model(model, path, extra_arrays=None, extra_config=None):
    """Write the model (and `extra_arrays`, and `extra_config` keys in its JSON) atomically."""
    config = model_config(model)
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


def load(path):
    """Rebuild a model saved by `model.save(path)` (or a checkpoint); raises ModelFileError
    for anything else."""
    return model_from_arrays(read_npz(path), os.fspath(path))[0]


def model_from_arrays(arrays, path):
    """(model, its JSON config) from read_npz's arrays (consumes the model's entries)."""
    if "architecture" not in arrays:
        raise ModelFileError(f"{path}: not a fastnn model file (no architecture entry)")
    try:
        config = json.loads(arrays.pop("architecture").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{path}: corrupt architecture entry: {exc}") from None
    try:
        model = model_from_config(config, where=path)
    except ModelFileError:
        raise
    except (TypeError, ValueError, AttributeError) as exc:  # a well-formed JSON of the wrong shape
        raise ModelFileError(f"{path}: bad architecture: {type(exc).__name__}: {exc}") from None
    if model.input_shape is None:
        return model, config
    params = arrays.pop("params", None)
    if params is None or params.shape != model.params.shape:
        raise ModelFileError(f"{path}: weights have shape {None if params is None else params.shape}, "
                             f"the architecture needs {model.params.shape}")
    model.params[...] = params
    if model.optimizer is not None:
        state = dict(config.get("optimizer_state") or {})
        state.update({k[len("optimizer."):]: v for k, v in arrays.items() if k.startswith("optimizer.")})
        if state:
            try:
                model.optimizer.load_state_dict(state)
            except (ValueError, KeyError, TypeError) as exc:
                raise ModelFileError(f"{path}: optimizer state does not fit: {exc}") from None
    return model, config
