"""What each CLI command does, once cli.py has parsed and checked the arguments."""
import json
import os
import resource
import sys
import time

import numpy as np

EXIT_USAGE = 2  # bad arguments or data, and a diverged run (NaN/inf loss)
EXIT_INTERRUPTED = 130  # Ctrl-C; `train` saves a checkpoint first
DEFAULT_CHECKPOINT = "fastnn-interrupted.ckpt"  # where `train` saves on Ctrl-C without --checkpoint


class UsageError(Exception):
    """A bad argument or bad input: printed as one line, exit code 2."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during `train`, after the checkpoint was saved (message says where)."""


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(args):
    handler = {"train": train, "evaluate": evaluate, "shuffle": shuffle, "info": info,
               "config": config, "export": export}[args.command]
    return handler(args)


# -- data (fastnn/cli_data.py reads it; here its errors become usage errors) ----------------------
def _scaled(images, layout):
    """uint8 images (N, 28, 28) -> float32 in [0, 1], flat (N, 784) or NCHW (N, 1, 28, 28)."""
    from .cli_data import as_input
    return as_input(images, (int(np.prod(images.shape[1:])),) if layout == "flat" else (1,) + images.shape[1:], "images")


def load_mnist(data_dir, layout, need_train=True):
    """cli_data.load_mnist for a layout name ("flat" or "image")."""
    from . import cli_data
    try:
        return cli_data.load_mnist(data_dir, (784,) if layout == "flat" else (1, 28, 28), need_train)
    except cli_data.DataError as exc:
        raise UsageError(str(exc)) from None


# -- train --------------------------------------------------------------------------------------
# The arguments that define a run: a checkpoint records them, and `--resume FILE` alone
# continues that run (arguments given beside it must agree). Defaults apply after the merge.
RUN_KEYS = ("model", "config", "hidden", "optimizer", "lr", "epochs", "batch_size", "data", "stream",
            "seed", "threads")
PATH_KEYS = ("config", "data", "stream")
RUN_DEFAULTS = {"optimizer": "sgd"}
PRESET_SEED = 0  # a preset's seed when --seed is not given (a --config file has its own)
PRESET_ONLY = ("model", "hidden", "optimizer", "lr")  # with --config, these live in the file


def _run_args(args):
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
        raise UsageError(_one_line(exc)) from None
    info = (config.get("training") or {}).get("run_info") if isinstance(config.get("training"), dict) else None
    if not isinstance(info, dict):
        return {}
    recorded = {k: info.get(k) for k in RUN_KEYS if k in info}
    if isinstance(info.get("run_config"), dict):
        recorded["run_config"] = info["run_config"]
    return recorded


def _one_line(exc):
    text = str(exc).replace("\n", " ")
    return text if len(text) <= 400 else text[:400] + "..."


def _run_config(run):
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
        raise UsageError(f"--config {path}: not valid JSON ({_one_line(exc)})") from None
    if not isinstance(cfg, dict):
        raise UsageError(f"--config {path}: must hold a JSON object (a run file), got {type(cfg).__name__}")
    return cfg


def train(args):
    if not args.distributed:
        return _train(args, None)
    from .distributed import DistributedError, DataParallel
    try:
        ranks = DataParallel(threads=args.threads)
    except ImportError as exc:
        raise UsageError(f"--distributed: {exc}") from None
    try:
        return _train(args, ranks)
    except DistributedError as exc:  # raised on every rank at the same point: exit together
        if ranks.is_root:
            print(f"fastnn: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:  # maybe this rank's alone, while the others wait in a collective
        ranks.fail(f"fastnn: error: rank {ranks.rank} of {ranks.world}: {exc}", EXIT_USAGE)
    except KeyboardInterrupt:  # a second Ctrl-C: at once, wherever each rank is
        ranks.fail("fastnn: interrupted", EXIT_INTERRUPTED)


def _train(args, ranks):
    """`train`; `ranks` (a DataParallel) for --distributed: rank 0 alone prints and writes."""
    import fastnn
    from . import cli_data
    from .config import parse_fit
    from .model import Sequential
    from .train.callbacks import EarlyStopping, EpochPrinter

    run = _run_args(args)
    cfg = _run_config(run)
    fit = parse_fit(cfg)
    name = run["model"] or os.path.basename(run["config"])
    if run["threads"]:
        fastnn.set_num_threads(run["threads"])
    epochs = run["epochs"] or fit["epochs"]
    batch_size = run["batch_size"] or fit["batch_size"]
    seed = fit["seed"]
    root = ranks is None or ranks.is_root
    say = (lambda *a: None) if args.quiet or not root else (lambda text: print(text, flush=True))
    if run["stream"] and fit["data"] in ("spiral", "twoclass"):
        raise UsageError(f"--stream is for image data, not the built-in {fit['data']} set")
    if root:
        _check_outputs(args, run)
    try:
        model = Sequential.from_config(cfg)
    except (TypeError, ValueError, MemoryError) as exc:
        raise UsageError(f"{name}: the model does not build: {_one_line(exc)}") from None
    if model.input_shape is None:
        raise UsageError(f"{name}: key 'input_shape' is needed to train (e.g. [784])")
    if model.loss is None or model.optimizer is None:
        raise UsageError(f"{name}: keys 'loss' and 'optimizer' are needed to train")
    initial_state = None
    if args.resume:
        model, initial_state = _load_resume(args, model)
        epochs, batch_size = initial_state[0]["fit"]["epochs"], initial_state[0]["fit"]["batch_size"]
        say(f"resuming {args.resume} at step {initial_state[0]['global_step']}")

    saver = _checkpoint_callback(args, dict(run, run_config=cfg))
    callbacks = [EpochPrinter(say), saver]
    if fit["stop_below_loss"] is not None:
        callbacks.append(EarlyStopping(loss_threshold=fit["stop_below_loss"]))
    stream, scale, train_data, test = None, None, None, None
    classes = model.output_shape[0] if len(model.output_shape) == 1 and model.output_shape[0] > 1 else 2
    try:
        if fit["data"] in ("spiral", "twoclass") and run["data"] is None:
            *train_data, scale = cli_data.load_points(fit["data"], seed)
            note = f"the built-in {fit['data']} set"
        elif run["stream"]:
            per_rank, shard = _shard(ranks, batch_size)
            stream, test, note = cli_data.open_stream(run["stream"], run["data"], model.input_shape,
                                                      per_rank, classes, shard=shard)
        else:
            train_data, test, note = cli_data.load_data(run["data"], fit["data"], model.input_shape, classes)
    except cli_data.DataError as exc:
        raise UsageError(str(exc)) from None
    say(note)
    if not args.quiet:
        model.summary(print_fn=say)

    start = time.perf_counter()
    try:
        history = _fit(args, model, stream, train_data, test, epochs, batch_size, fit["shuffle"], seed,
                       callbacks, initial_state, saver, ranks)
    except Interrupted as exc:  # in a distributed run, every rank stopped at the same step
        if root:
            print(f"fastnn: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    seconds = time.perf_counter() - start

    summary = _summary(name, history, batch_size, seconds)
    if ranks is not None:  # collective: every rank's peak memory
        rss = ranks.comm.allgather(summary["peak_rss_mb"])
        summary.update(peak_rss_mb=max(rss), ranks=ranks.world, peak_rss_mb_per_rank=rss)
    if not root:
        return 0
    _write_outputs(args, say, fit["data"], model, history, train_data, scale)
    if history.stopped_reason:
        say(f"stopped: {history.stopped_reason}")
    if args.json:
        print(json.dumps(summary))
    return 0


def _shard(ranks, batch_size):
    """(per-rank batch, shard) of --stream: the global --batch-size split over the ranks."""
    if ranks is None:
        return batch_size, (0, 1)
    try:
        return ranks.per_rank_batch("--batch-size", batch_size), ranks.shard
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _summary(name, history, batch_size, seconds):
    import fastnn
    samples = sum(s * t for s, t in zip(history.samples_per_second, history.epoch_seconds))
    last = lambda values: values[-1] if values else None  # noqa: E731
    return {
        "model": name, "epochs": len(history.epoch_train_loss), "batch_size": batch_size,
        "threads": fastnn.get_num_threads(), "seconds": round(seconds, 3),
        "samples_per_second": round(samples / sum(history.epoch_seconds), 1) if history.epoch_seconds else 0.0,
        "train_loss": last(history.epoch_train_loss), "train_accuracy": last(history.epoch_train_accuracy),
        "test_accuracy": last(history.epoch_val_accuracy),
        "best_test_accuracy": max(history.epoch_val_accuracy) if history.epoch_val_accuracy else None,
        "final_step_loss": last(history.step_loss), "steps": len(history.step_loss),
        "stopped_reason": history.stopped_reason, "peak_rss_mb": round(peak_rss_mb(), 1),
    }


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


def _check_outputs(args, run):
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


def _write_outputs(args, say, kind, model, history, train_data, scale):
    """--out, then --plot. A write that fails after training keeps the model (to a fallback
    file when --out itself failed) and says where, in one line."""
    if args.out:
        try:
            model.save(args.out)
        except OSError as exc:
            kept = _save_fallback(model)
            raise UsageError(f"could not write --out {args.out} ({exc.strerror or exc}); "
                             f"the trained model is saved in {kept}") from None
        say(f"saved {args.out}")
    if args.plot:
        try:
            _plot(args.plot, kind, model, history, train_data, scale)
        except OSError as exc:
            kept = args.out or _save_fallback(model)
            raise UsageError(f"could not write --plot {args.plot} ({exc.strerror or exc}); "
                             f"the trained model is in {kept}") from None
        say(f"plot {args.plot}")


def _save_fallback(model):
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


def _load_resume(args, built):
    """(model, initial_state) from --resume, checked against the preset the run builds."""
    from .errors import ModelFileError
    from .model import load_checkpoint
    try:
        model, initial_state, _ = load_checkpoint(args.resume)
    except (OSError, ModelFileError) as exc:
        raise UsageError(_one_line(exc)) from None
    if model.get_config()["layers"] != built.get_config()["layers"]:
        raise UsageError(f"{args.resume}: the checkpoint's layers do not match the model this run "
                         f"builds (give the same --model/--hidden as the interrupted run, or none)")
    return model, initial_state


def _checkpoint_callback(args, run):
    """--checkpoint FILE (every --checkpoint-every steps and at the end); without it, a Ctrl-C
    still saves, to the --resume file or DEFAULT_CHECKPOINT (in the temp folder when the working
    folder is not writable). Every checkpoint records the run's arguments."""
    from .train.callbacks import Checkpoint
    if args.checkpoint_every and not args.checkpoint:
        raise UsageError("--checkpoint-every needs --checkpoint FILE")
    if args.checkpoint:
        return Checkpoint(args.checkpoint, every_n_steps=args.checkpoint_every, run_info=run)
    path = args.resume or DEFAULT_CHECKPOINT
    if not args.resume and not os.access(os.getcwd(), os.W_OK | os.X_OK):
        import tempfile
        path = os.path.join(tempfile.gettempdir(), DEFAULT_CHECKPOINT)
    return Checkpoint(path, every_n_steps=None, at_end=False, run_info=run)


def _fit(args, model, stream, train_data, test, epochs, batch_size, shuffle, seed, callbacks,
         initial_state, saver, ranks):
    """fit (or continue a checkpoint): divergence, a failed checkpoint write and Ctrl-C become
    one line on stderr."""
    from .errors import TrainingDiverged
    verbose = 0 if args.quiet or (ranks is not None and not ranks.is_root) else 1
    try:
        if stream is not None:
            with stream:
                return model.fit(stream, epochs=epochs, validation_data=test, callbacks=callbacks,
                                 verbose=verbose, initial_state=initial_state, distributed=ranks)
        if ranks is not None:
            _shard(ranks, batch_size)  # the same refusal as --stream's
        return model.fit(*train_data, epochs=epochs, batch_size=batch_size, validation_data=test,
                         callbacks=callbacks, shuffle=shuffle, seed=seed, verbose=verbose,
                         initial_state=initial_state, distributed=ranks)
    except TrainingDiverged as exc:
        kept = f"; last good checkpoint: {saver.path}" if os.path.exists(saver.path) and \
            args.checkpoint else ""
        raise UsageError(f"{exc}{kept}") from None
    except OSError as exc:  # a checkpoint write (full disk, folder removed): keep the model
        kept = _save_fallback(model)
        raise UsageError(f"could not write checkpoint {saver.path} ({exc.strerror or exc}); the "
                         f"previous checkpoint is unchanged; the model so far is saved in {kept}") from None
    except KeyboardInterrupt as exc:
        saved = os.path.exists(saver.path) or (ranks is not None and not ranks.is_root)  # rank 0 saves
        if not saved or not str(exc).startswith("interrupted at step"):
            raise
        raise Interrupted(f"{exc}; checkpoint saved to {saver.path} (continue with "
                          f"`fastnn train --resume {saver.path}`)") from None


def _plot(path, kind, model, history, train_data, scale=None):
    from . import plot
    try:
        if kind not in ("spiral", "twoclass"):
            plot.plot_history(history, path)
        else:
            raw_x = train_data[0] if kind == "spiral" else (train_data[0] + 1) * 5
            plot.plot_decision_regions(lambda pts: model.predict(scale(pts)), raw_x, train_data[1], path)
    except ImportError as exc:
        raise UsageError(str(exc)) from None


# -- evaluate -----------------------------------------------------------------------------------
def evaluate(args):
    import fastnn
    from . import cli_data
    from .metrics import confusion_matrix
    try:
        model = fastnn.load(args.model_file)
    except (OSError, fastnn.ModelFileError) as exc:
        raise UsageError(_one_line(exc)) from None
    if model.input_shape is None:
        raise UsageError(f"{args.model_file}: the model was saved before it was built (no input shape)")
    if model.loss is None:
        raise UsageError(f"{args.model_file}: the model has no loss, so it has no test loss or "
                         f"accuracy to report")
    classes = model.output_shape[0] if len(model.output_shape) == 1 else 0
    if classes < 2:
        raise UsageError(f"{args.model_file}: the model has output shape {model.output_shape}; "
                         f"evaluate scores classifiers with one output per class")
    if not cli_data.is_npz(args.data) and (model.input_shape not in ((784,), (1, 28, 28)) or classes != 10):
        raise UsageError(f"{args.model_file}: input {model.input_shape} and {classes} outputs are not "
                         f"MNIST's ((784,) or (1, 28, 28), 10); give --data FILE.npz for other data")
    try:
        _, (x, y), note = cli_data.load_data(args.data, None, model.input_shape, classes, need_train=False)
        result = model.evaluate(x, y)
        confusion = confusion_matrix(y, model.predict(x), classes)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{args.model_file}: {_one_line(exc)}") from None
    if args.json:
        print(json.dumps({"test_accuracy": result["accuracy"], "test_loss": result["loss"],
                          "correct": result["correct"], "total": result["total"],
                          "confusion": confusion.tolist()}))
    else:
        print(note)
        print(f"test accuracy {result['correct']} / {result['total']} = {result['accuracy']:.4f}, "
              f"loss {result['loss']:.4f}")
    return 0


# -- shuffle ------------------------------------------------------------------------------------
def shuffle(args):
    import tempfile
    from . import cli_data
    from .data import write_shuffled
    from .data.idx import IdxError, mnist_files
    data = args.data or os.environ.get("FASTNN_DATA")
    if not data:
        raise UsageError("shuffle: give --data (a folder of MNIST-format IDX files, or an .npz file) "
                         "or set FASTNN_DATA")
    start = time.perf_counter()
    try:
        if cli_data.is_npz(data):
            check_output_path("--out", args.out, [data])
            with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(args.out))) as tmp:
                images, labels = cli_data.npz_to_idx(data, tmp)
                write_shuffled(images, labels, args.out, epochs=args.epochs, seed=args.seed,
                               memory_limit=args.memory_limit)
        else:
            files = mnist_files(data)
            check_output_path("--out", args.out, list(files.values()))
            write_shuffled(files["train_images"], files["train_labels"], args.out, epochs=args.epochs,
                           seed=args.seed, memory_limit=args.memory_limit)
    except (IdxError, OSError, ValueError) as exc:
        raise UsageError(_one_line(exc)) from None
    print(f"wrote {args.out}: {args.epochs} epochs in {time.perf_counter() - start:.1f} s, "
          f"peak RSS {peak_rss_mb():.0f} MB")
    return 0


def config(args):
    """Print a preset as a run file: the starting point of `fastnn train --config FILE`."""
    from . import zoo
    try:
        cfg = zoo.get(args.model).config(hidden=args.hidden, lr=args.lr, seed=args.seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(json.dumps(cfg, indent=2))
    return 0


# -- export -------------------------------------------------------------------------------------
def export(args):
    """`fastnn export MODEL_FILE --onnx OUT [--probabilities]`: checks the extra and OUT before
    reading the model, so nothing is loaded for an export that cannot be written."""
    import fastnn
    from .onnx import import_onnx, to_onnx
    out = args.onnx
    if os.path.exists(out) and os.path.exists(args.model_file) and os.path.samefile(out, args.model_file):
        raise UsageError(f"--onnx {out} is the model file itself; choose another output file")
    if os.path.isdir(out):
        raise UsageError(f"--onnx {out} is a folder; give the file to write")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise UsageError(f"--onnx {out}: folder {folder} does not exist")
    try:
        import_onnx()
        model = fastnn.load(args.model_file)
        to_onnx(model, out, probabilities=args.probabilities)
    except (ImportError, OSError, ValueError, TypeError) as exc:  # ModelFileError is a ValueError
        raise UsageError(str(exc).replace("\n", " ")) from None
    print(f"wrote {out} ({'probabilities' if args.probabilities else 'raw outputs'})")
    return 0


def info(args):
    import fastnn
    for key, value in fastnn.info().items():
        print(f"{key}: {value}")
    return 0
