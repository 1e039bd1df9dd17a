"""Save/load: one .npz file holding the architecture (JSON bytes) and the weights, plus the
optimizer state. Loaded with allow_pickle=False and rebuilt from a whitelist of classes."""
import json
import os
import zipfile

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


def save_model(model, path):
    config = model_config(model)
    arrays = {}
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
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def load(path):
    """Rebuild a model saved by `model.save(path)`; raises ModelFileError for anything else."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise ModelFileError(f"{path}: not a readable fastnn model file ({type(exc).__name__}: {exc})") from None
    if "architecture" not in arrays:
        raise ModelFileError(f"{path}: not a fastnn model file (no architecture entry)")
    try:
        config = json.loads(arrays.pop("architecture").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: corrupt architecture entry: {exc}") from None
    model = model_from_config(config, where=path)
    if model.input_shape is None:
        return model
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
    return model
