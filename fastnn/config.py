"""The one schema of a model's config: what `model.get_config()` returns, what model files and
checkpoints store, and what `fastnn train --config FILE` reads. One validator (`parse_model`)
whose errors name the key, what it held and what was expected.

    {"format": "fastnn.model", "version": 1, "dtype": "float32", "input_shape": [784],
     "seed": 0,
     "layers": [{"class": "Dense", "config": {"units": 50, "activation": "relu"}}, ...],
     "loss": {"class": "SoftmaxCrossEntropy", "config": {}},
     "optimizer": {"class": "SGD", "config": {"lr": 0.1}}}

Model files add "optimizer_state"; checkpoints add "training" (see fastnn.model and
fastnn.train). A run file (`fastnn train --config FILE`, `fastnn config --model NAME`) adds "fit",
the training settings, checked by `parse_fit`:

     "fit": {"epochs": 16, "batch_size": 100, "shuffle": true, "seed": 0,
             "data": "mnist", "stop_below_loss": null}

"data" is "mnist", "spiral" or "twoclass" (the built-in sets) or null (give --data: an MNIST
folder or an .npz file); "stop_below_loss" stops as soon as a step's loss is below it.
"""
import numpy as np

from .errors import ConfigError, shown
from .layers import LAYERS
from .losses import LOSSES
from .optim import OPTIMIZERS

FORMAT = "fastnn.model"
VERSION = 1
MODEL_KEYS = ("format", "version", "dtype", "input_shape", "seed", "layers", "loss", "optimizer")
EXTENSION_KEYS = ("optimizer_state", "training", "fit", "global_step")
MAX_LAYERS = 1000  # far beyond any network fastnn trains; bounds what a file can make us build


def model_config(model):
    """JSON-safe config of a model (anything with layers, loss, optimizer, dtype, input_shape, seed)."""
    return {
        "format": FORMAT, "version": VERSION, "dtype": model.dtype.name,
        "input_shape": None if model.input_shape is None else list(model.input_shape),
        "seed": model.seed,
        "layers": [_spec(layer) for layer in model.layers],
        "loss": None if model.loss is None else _spec(model.loss),
        "optimizer": None if model.optimizer is None else _spec(model.optimizer),
    }


def _spec(obj):
    return {"class": type(obj).__name__, "config": obj.get_config()}


def parse_model(config, dtype=None, where="config"):
    """Keyword arguments of Sequential(...) from a config; ConfigError names what is wrong."""
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: a model config must be a JSON object, got {type(config).__name__}")
    unknown = sorted(set(config) - set(MODEL_KEYS) - set(EXTENSION_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {shown(unknown[0])}; known keys: {', '.join(MODEL_KEYS)}")
    if config.get("format") != FORMAT:
        raise ConfigError(f"{where}: key 'format' must be {FORMAT!r}, got {shown(config.get('format'))}")
    if config.get("version") != VERSION:
        raise ConfigError(f"{where}: key 'version' must be {VERSION} (the version this fastnn "
                          f"reads), got {shown(config.get('version'))}")
    layers = config.get("layers")
    if not isinstance(layers, list) or not 1 <= len(layers) <= MAX_LAYERS:
        raise ConfigError(f"{where}: key 'layers' must be a list of 1 to {MAX_LAYERS} layers, "
                          f"got {shown(layers)}")
    kwargs = {
        "layers": [_instance(f"layers[{i}]", LAYERS, spec, where) for i, spec in enumerate(layers)],
        "loss": _optional(config, "loss", LOSSES, where),
        "optimizer": _optional(config, "optimizer", OPTIMIZERS, where),
        "input_shape": _input_shape(config.get("input_shape"), where),
        "dtype": _dtype(dtype if dtype is not None else config.get("dtype", "float32"), where),
        "seed": _seed(config.get("seed"), where),
    }
    return kwargs


FIT_DEFAULTS = {"epochs": 1, "batch_size": 32, "shuffle": True, "seed": None, "data": None,
                "stop_below_loss": None}
DATA_KINDS = ("mnist", "spiral", "twoclass")


def parse_fit(config, where="config"):
    """The "fit" section of a run file, with defaults; ConfigError names the key."""
    fit = config.get("fit", {}) if isinstance(config, dict) else None
    if not isinstance(fit, dict):
        raise ConfigError(f"{where}: key 'fit' must be a JSON object, got {shown(fit)}")
    unknown = sorted(set(fit) - set(FIT_DEFAULTS))
    if unknown:
        raise ConfigError(f"{where}: unknown key 'fit.{shown(unknown[0])[1:-1]}'; known: {', '.join(FIT_DEFAULTS)}")
    fit = {**FIT_DEFAULTS, **fit}
    for key in ("epochs", "batch_size"):
        if type(fit[key]) is not int or not 1 <= fit[key] <= 10**9:
            raise ConfigError(f"{where}: key 'fit.{key}' must be a positive int, got {shown(fit[key])}")
    if type(fit["shuffle"]) is not bool:
        raise ConfigError(f"{where}: key 'fit.shuffle' must be true or false, got {shown(fit['shuffle'])}")
    _seed(fit["seed"], where, "fit.seed")
    if fit["data"] is not None and fit["data"] not in DATA_KINDS:
        raise ConfigError(f"{where}: key 'fit.data' must be one of {DATA_KINDS} or null, got {shown(fit['data'])}")
    stop = fit["stop_below_loss"]
    if stop is not None and (type(stop) not in (int, float) or not np.isfinite(stop)):
        raise ConfigError(f"{where}: key 'fit.stop_below_loss' must be a number or null, got {shown(stop)}")
    return fit


def _optional(config, key, registry, where):
    spec = config.get(key)
    return None if spec is None else _instance(key, registry, spec, where)


def _instance(key, registry, spec, where):
    if not isinstance(spec, dict) or not isinstance(spec.get("class"), str) or spec["class"] not in registry:
        got = spec.get("class") if isinstance(spec, dict) else spec
        raise ConfigError(f"{where}: key '{key}' must name a class of {sorted(registry)}, got {shown(got)}")
    params = spec.get("config", {})
    if not isinstance(params, dict) or set(spec) - {"class", "config"}:
        raise ConfigError(f"{where}: key '{key}' must be {{\"class\": ..., \"config\": {{...}}}}, "
                          f"got {shown(spec)}")
    try:
        return registry[spec["class"]](**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: key '{key}.config' {shown(params)} is not valid for "
                          f"{spec['class']}: {exc}") from None


def _input_shape(shape, where):
    if shape is None:
        return None
    if not isinstance(shape, list) or not 1 <= len(shape) <= 3 or \
            not all(type(s) is int and 1 <= s <= 2**31 - 1 for s in shape):
        raise ConfigError(f"{where}: key 'input_shape' must be a list of 1-3 positive ints, "
                          f"got {shown(shape)}")
    return tuple(shape)


def _dtype(dtype, where):
    if dtype not in ("float32", "float64", np.float32, np.float64, np.dtype("float32"), np.dtype("float64")):
        raise ConfigError(f"{where}: key 'dtype' must be 'float32' or 'float64', got {shown(dtype)}")
    return np.dtype(dtype)


def _seed(seed, where, key="seed"):
    if seed is not None and (type(seed) is not int or not 0 <= seed < 2**63):
        raise ConfigError(f"{where}: key '{key}' must be a non-negative int or null, got {shown(seed)}")
    return seed
