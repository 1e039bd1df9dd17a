"""What a `fastnn train` run is, apart from training: the arguments that define it (checkpoints
record them, so `--resume FILE` alone continues a run), the run file it trains (fastnn.config's
schema), and its outputs (checked before training starts, never written over an input, kept
somewhere when a write fails). Problems are UsageErrors: one line, exit code 2."""
import json
import os

from .errors import UsageError

# The arguments that define a run: a checkpoint records them, and `--resume FILE` alone
# continues that run (arguments given beside it must agree). Defaults apply after the merge.
RUN_KEYS = ("model", "config", "hidden", "optimizer", "lr", "epochs", "batch_size", "data", "stream",
            "seed", "threads")
PATH_KEYS = ("config", "data", "stream")
RUN_DEFAULTS = {"optimizer": "sgd"}
PRESET_SEED = 0  # a preset's seed when --seed is not given (a --config file has its own)
PRESET_ONLY = ("model", "hidden", "optimizer", "lr")  # with --config, these live in the file


def run_args(args):
    """{key: value} of the run-defining arguments, paths made absolute, defaults applied; with
    --resume, merged with the ones the checkpoint recorded (a disagreement is a UsageError)."""
    given = {k: getattr(args, k) for k in RUN_KEYS}
    for k in PATH_KEYS:
        if given[k] is not None:
            given[k] = os.path.abspath(given[k])
    if args.resume:
        recorded = _recorded_run(args.resume)
        given["run_config"] = recorded.pop("run_config", None)
        for key, value in recorded.items():
            if given.get(key) is None:
                given[key] = value
            elif value is not None and not _same(key, given[key], value):
                flag = "--" + key.replace("_", "-")
                raise UsageError(f"{flag} {given[key]} differs from the run in {args.resume} "
                                 f"({flag} {value}); omit it to continue that run")
    run = {k: RUN_DEFAULTS.get(k) if v is None else v for k, v in given.items()}
    run.setdefault("run_config", None)
    if run["config"] is None and run["model"] is None:
        run["model"] = "lenet"
    if run["config"] is None and run["seed"] is None:
        run["seed"] = PRESET_SEED
    return run


def _same(key, a, b):
    if key in PATH_KEYS:
        return os.path.realpath(a) == os.path.realpath(b)
    return a == b


def _recorded_run(path):
    """The run arguments a checkpoint recorded ({} for checkpoints that recorded none)."""
    from .serialize import read_model_file
    from .errors import ModelFileError
    try:
        config, _ = read_model_file(path, what="fastnn checkpoint")
    except (OSError, ModelFileError) as exc:
        raise UsageError(one_line(exc)) from None
    info = (config.get("training") or {}).get("run_info") if isinstance(config.get("training"), dict) else None
    if not isinstance(info, dict):
        return {}
    recorded = {k: info.get(k) for k in RUN_KEYS if k in info}
    if isinstance(info.get("run_config"), dict):
        recorded["run_config"] = info["run_config"]
    return recorded


def one_line(exc):
    text = str(exc).replace("\n", " ")
    return text if len(text) <= 400 else text[:400] + "..."


def run_config(run):
    """The run file this run trains (fastnn.config's schema with "fit"): --config's, a recorded
    one (--resume), or the preset's with --hidden/--lr/--optimizer/--seed applied."""
    from . import config, zoo
    if run["run_config"] is not None:
        cfg = run["run_config"]
    elif run["config"] is not None:
        given = [f"--{k}" for k in PRESET_ONLY if run[k] is not None and run[k] != RUN_DEFAULTS.get(k)]
        if given:
            raise UsageError(f"{', '.join(given)} cannot be combined with --config: set it in "
                             f"{run['config']}")
        cfg = _read_json(run["config"])
        if run["seed"] is not None:  # --seed overrides the file's seeds (weights and order)
            cfg["seed"] = run["seed"]
            if isinstance(cfg.get("fit"), dict):
                cfg["fit"]["seed"] = run["seed"]
    else:
        try:
            preset = zoo.get(run["model"])
            if run["optimizer"] == "random-search" and preset.data == "mnist":
                raise UsageError("--optimizer random-search is for the 2-D presets (twoclass, spiral)")
            cfg = preset.config(hidden=run["hidden"], lr=run["lr"], seed=run["seed"], optimizer=run["optimizer"])
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    where = run["config"] or f"preset {run['model']}"
    try:
        config.parse_model(cfg, where=where)
        config.parse_fit(cfg, where=where)
    except config.ConfigError as exc:
        raise UsageError(str(exc)) from None
    return cfg


MAX_CONFIG_BYTES = 1 << 20  # a run file is a few KB; bound what we read


def _read_json(path):
    try:
        with open(path, "rb") as f:
            if not os.path.isfile(path):
                raise UsageError(f"--config {path}: not a regular file")
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"--config {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise UsageError(f"--config {path}: larger than {MAX_CONFIG_BYTES} bytes; not a run file")
    try:
        cfg = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UsageError(f"--config {path}: not valid JSON ({one_line(exc)})") from None
    if not isinstance(cfg, dict):
        raise UsageError(f"--config {path}: must hold a JSON object (a run file), got {type(cfg).__name__}")
    return cfg


# -- outputs: checked before training, written after it; never over an input -------------------
def _inputs(run, args):
    """The files this run reads: an output must never replace one of them."""
    from .data import mnist_files
    paths = [p for p in (run["stream"], args.resume, run["config"]) if p]
    if run["data"] and not os.path.isfile(run["data"]):
        try:
            paths += list(mnist_files(run["data"]).values())
        except (OSError, ValueError):
            pass  # reported when the data is loaded
    elif run["data"]:
        paths.append(run["data"])
    return paths


def check_outputs(args, run):
    """{flag: path} of the outputs, each checked now (a bad path must not cost a training run):
    its folder exists and is writable, it is not a folder, and it is none of the inputs."""
    outputs = {flag: getattr(args, attr) for flag, attr in
               (("--out", "out"), ("--plot", "plot"), ("--checkpoint", "checkpoint")) if getattr(args, attr)}
    inputs = _inputs(run, args)
    for flag, path in outputs.items():
        check_output_path(flag, path, [p for p in inputs if not (flag == "--checkpoint" and p == args.resume)])
    if len({os.path.realpath(p) for p in outputs.values()}) != len(outputs):
        raise UsageError(f"{', '.join(outputs)} must name different files")
    return outputs


def check_output_path(flag, path, inputs=()):
    """UsageError unless `path` can be written: its folder exists and is writable, it is not a
    folder or a special file, and it is not (a link to) any of `inputs`."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path} is a directory; give a file name")
    if not os.path.isdir(folder):
        raise UsageError(f"{flag} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: folder {folder} is not writable")
    if os.path.exists(path) and not os.path.isfile(path):
        raise UsageError(f"{flag} {path} exists and is not a regular file")
    for source in inputs:
        if os.path.realpath(source) == os.path.realpath(path) or \
                (os.path.exists(path) and os.path.exists(source) and os.path.samefile(source, path)):
            raise UsageError(f"{flag} {path} is an input of this run ({source}); writing it would destroy it")


def save_fallback(model):
    """Save `model` where it can be found again: the working folder, else the temp folder."""
    import tempfile
    name = f"fastnn-unsaved-{os.getpid()}.fastnn"
    for folder in (os.getcwd(), tempfile.gettempdir()):
        path = os.path.join(folder, name)
        try:
            model.save(path)
            return path
        except OSError:
            continue
    return "nowhere (no writable folder: the working folder and the temp folder both failed)"
