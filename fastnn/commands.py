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
    handler = {"train": train, "evaluate": evaluate, "shuffle": shuffle, "info": info}[args.command]
    return handler(args)


# -- data ---------------------------------------------------------------------------------------
def _scaled(images, layout):
    """uint8 images (N, 28, 28) -> float32 in [0, 1], flat (N, 784) or NCHW (N, 1, 28, 28)."""
    x = np.multiply(images, np.float32(1 / 255), dtype=np.float32)
    return x.reshape(len(x), -1) if layout == "flat" else x.reshape(len(x), 1, *images.shape[1:])


def load_mnist(data_dir, layout, need_train=True):
    """((x_train, y_train), (x_test, y_test)) scaled for `layout`, and a note on the source.
    With `data_dir`, only that folder is used; else full MNIST as fastnn.datasets finds it
    without downloading, or the bundled subset with a notice."""
    from . import datasets
    from .data.idx import IdxError
    try:
        if data_dir is not None:  # exactly this folder, any MNIST-format data set
            from .data import mnist_files, read_labeled
            files = mnist_files(data_dir)
            data = datasets.Mnist(datasets.Split(*read_labeled(files["train_images"], files["train_labels"])),
                                  datasets.Split(*read_labeled(files["test_images"], files["test_labels"])))
            note = f"MNIST-format data from {data_dir}"
        else:
            data, full = datasets.mnist_or_subset()
            note = "full MNIST" if full else datasets.SUBSET_NOTICE
    except (IdxError, OSError) as exc:
        raise UsageError(str(exc).replace("\n", " ")) from None
    train = (_scaled(data.train.x, layout), data.train.y.astype(np.int64)) if need_train else None
    return train, (_scaled(data.test.x, layout), data.test.y.astype(np.int64)), note


def _open_stream(run, preset, batch_size, ranks=None):
    """(training stream, test batches, note): both read with fixed buffers, so memory stays flat.
    The test set comes from --data, else $FASTNN_DATA, else the bundled subset. With `ranks`
    (--distributed), the stream is this rank's shard at batch_size / ranks."""
    from . import datasets
    from .data import IdxBatches, IdxError, ShuffledFileError, ShuffledStream, mnist_files
    layout = "flat" if preset.layout == "flat" else "nchw"
    folder = run["data"] or os.environ.get("FASTNN_DATA") or datasets.SUBSET_DIR
    errors = (IdxError, ShuffledFileError, OSError, ValueError)
    try:  # the file the user named first: its error is the one to report
        stream = ShuffledStream(run["stream"], batch_size, layout=layout) if ranks is None else \
            ranks.open_stream(run["stream"], batch_size, layout=layout)
    except errors as exc:
        raise UsageError(str(exc)) from None
    try:
        files = mnist_files(folder, datasets.SUBSET_PREFIX if folder == datasets.SUBSET_DIR else "")
        test = IdxBatches(files["test_images"], files["test_labels"], batch_size=batch_size, layout=layout)
    except errors as exc:
        stream.close()
        raise UsageError(str(exc)) from None
    return stream, test, f"training stream {run['stream']}; test set from {folder}"


def _load_points(preset, seed):
    """The 2-D toy data, scaled to about [-1, 1]^2, and the function that scales raw points."""
    from . import datasets
    if preset.data == "spiral":
        x, y = datasets.spiral(n_per_class=100, classes=3, seed=seed)
        scale = lambda pts: np.asarray(pts, np.float32)  # noqa: E731 - already in [-1, 1]
    else:
        x, y = datasets.two_class_grid(n=100, seed=seed)
        scale = lambda pts: (np.asarray(pts, np.float32) / 5 - 1).astype(np.float32)  # noqa: E731
    return scale(x), y.astype(np.int64), scale


# -- train --------------------------------------------------------------------------------------
# The arguments that define a run: a checkpoint records them, and `--resume FILE` alone
# continues that run (arguments given beside it must agree). Defaults apply after the merge.
RUN_KEYS = ("model", "hidden", "optimizer", "lr", "epochs", "batch_size", "data", "stream", "seed", "threads")
PATH_KEYS = ("data", "stream")
RUN_DEFAULTS = {"model": "lenet", "optimizer": "sgd", "seed": 0}


def _run_args(args):
    """{key: value} of the run-defining arguments, paths made absolute, defaults applied; with
    --resume, merged with the ones the checkpoint recorded (a disagreement is a UsageError)."""
    given = {k: getattr(args, k) for k in RUN_KEYS}
    for k in PATH_KEYS:
        if given[k] is not None:
            given[k] = os.path.abspath(given[k])
    if args.resume:
        recorded = _recorded_run(args.resume)
        for key, value in recorded.items():
            if given.get(key) is None:
                given[key] = value
            elif value is not None and not _same(key, given[key], value):
                flag = "--" + key.replace("_", "-")
                raise UsageError(f"{flag} {given[key]} differs from the run in {args.resume} "
                                 f"({flag} {value}); omit it to continue that run")
    return {k: RUN_DEFAULTS.get(k) if v is None else v for k, v in given.items()}


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
    return {k: info.get(k) for k in RUN_KEYS if k in info}


def _one_line(exc):
    text = str(exc).replace("\n", " ")
    return text if len(text) <= 400 else text[:400] + "..."


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
    from . import zoo
    from .train.callbacks import EarlyStopping, EpochPrinter

    root = ranks is None or ranks.is_root
    run = _run_args(args)
    try:
        preset = zoo.get(run["model"])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if run["threads"]:
        fastnn.set_num_threads(run["threads"])
    epochs = run["epochs"] or preset.epochs
    batch_size = run["batch_size"] or preset.batch_size
    say = (lambda *a: None) if args.quiet or not root else (lambda text: print(text, flush=True))
    if ranks is not None:
        try:
            ranks.per_rank_batch("--batch-size", batch_size)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if run["optimizer"] == "random-search" and preset.data == "mnist":
        raise UsageError("--optimizer random-search is for the 2-D presets (twoclass, spiral)")
    if run["stream"] and preset.data != "mnist":
        raise UsageError(f"--stream is for the MNIST presets, not {preset.name}")
    outputs = _check_outputs(args, run) if root else {}
    model = preset.build(hidden=run["hidden"], lr=run["lr"], seed=run["seed"], optimizer=run["optimizer"])
    initial_state = None
    if args.resume:
        model, initial_state = _load_resume(args, model)
        epochs, batch_size = initial_state[0]["fit"]["epochs"], initial_state[0]["fit"]["batch_size"]
        say(f"resuming {args.resume} at step {initial_state[0]['global_step']}")

    saver = _checkpoint_callback(args, run, outputs)
    callbacks = [EpochPrinter(say), saver]
    if preset.loss_threshold is not None:
        callbacks.append(EarlyStopping(loss_threshold=preset.loss_threshold))
    stream, scale, train_data = None, None, None
    if preset.data == "mnist":
        if run["stream"]:
            stream, test, note = _open_stream(run, preset, batch_size, ranks)
        else:
            train_data, test, note = load_mnist(run["data"], preset.layout)
        say(note)
    else:
        *train_data, scale = _load_points(preset, run["seed"])
        test = None
    if not args.quiet:
        model.summary(print_fn=say)

    start = time.perf_counter()
    try:
        history = _fit(args, run, model, stream, train_data, test, epochs, batch_size, callbacks,
                       initial_state, saver, ranks)
    except Interrupted as exc:  # in a distributed run, every rank stopped at the same step
        if root:
            print(f"fastnn: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    seconds = time.perf_counter() - start

    peak_rss = [round(peak_rss_mb(), 1)] if ranks is None else ranks.comm.allgather(round(peak_rss_mb(), 1))
    if not root:
        return 0
    _write_outputs(args, say, preset, model, history, train_data, scale)
    if history.stopped_reason:
        say(f"stopped: {history.stopped_reason}")
    samples = sum(s * t for s, t in zip(history.samples_per_second, history.epoch_seconds))
    summary = {
        "model": preset.name, "epochs": len(history.epoch_train_loss), "batch_size": batch_size,
        "threads": fastnn.get_num_threads(), "seconds": round(seconds, 3),
        "samples_per_second": round(samples / sum(history.epoch_seconds), 1) if history.epoch_seconds else 0.0,
        "train_loss": history.epoch_train_loss[-1] if history.epoch_train_loss else None,
        "train_accuracy": history.epoch_train_accuracy[-1] if history.epoch_train_accuracy else None,
        "test_accuracy": history.epoch_val_accuracy[-1] if history.epoch_val_accuracy else None,
        "best_test_accuracy": max(history.epoch_val_accuracy) if history.epoch_val_accuracy else None,
        "final_step_loss": history.step_loss[-1] if history.step_loss else None,
        "steps": len(history.step_loss), "stopped_reason": history.stopped_reason,
        "peak_rss_mb": max(peak_rss), **({"ranks": ranks.world, "peak_rss_mb_per_rank": peak_rss} if ranks else {}),
    }
    if args.json:
        print(json.dumps(summary))
    return 0


# -- outputs: checked before training, written after it; never over an input -------------------
def _inputs(run, args):
    """The files this run reads: an output must never replace one of them."""
    from .data import mnist_files
    paths = [p for p in (run["stream"], args.resume) if p]
    if run["data"]:
        try:
            paths += list(mnist_files(run["data"]).values())
        except (OSError, ValueError):
            pass  # reported when the data is loaded
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


def _write_outputs(args, say, preset, model, history, train_data, scale):
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
            _plot(args.plot, preset, model, history, train_data, scale)
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


def _checkpoint_callback(args, run, outputs):
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


def _fit(args, run, model, stream, train_data, test, epochs, batch_size, callbacks, initial_state, saver,
         ranks):
    """fit (or continue a checkpoint): divergence, a failed checkpoint write and Ctrl-C become
    one line on stderr."""
    from .errors import TrainingDiverged
    verbose = 0 if args.quiet or (ranks is not None and not ranks.is_root) else 1
    try:
        if stream is not None:
            with stream:
                return model.fit(stream, epochs=epochs, validation_data=test, callbacks=callbacks,
                                 verbose=verbose, initial_state=initial_state, distributed=ranks)
        return model.fit(*train_data, epochs=epochs, batch_size=batch_size, validation_data=test,
                         callbacks=callbacks, seed=run["seed"], verbose=verbose, initial_state=initial_state,
                         distributed=ranks)
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


def _plot(path, preset, model, history, train_data, scale=None):
    from . import plot
    try:
        if preset.data == "mnist":
            plot.plot_history(history, path)
        else:
            raw_x = train_data[0] if preset.data == "spiral" else (train_data[0] + 1) * 5
            plot.plot_decision_regions(lambda pts: model.predict(scale(pts)), raw_x, train_data[1], path)
    except ImportError as exc:
        raise UsageError(str(exc)) from None


# -- evaluate -----------------------------------------------------------------------------------
def evaluate(args):
    import fastnn
    from .metrics import confusion_matrix
    try:
        model = fastnn.load(args.model_file)
    except (OSError, fastnn.ModelFileError) as exc:
        raise UsageError(_one_line(exc)) from None
    if model.input_shape not in ((784,), (1, 28, 28)):
        raise UsageError(f"{args.model_file}: input shape {model.input_shape} is not MNIST's (784,) or (1, 28, 28)")
    if model.loss is None:
        raise UsageError(f"{args.model_file}: the model has no loss, so it has no test loss or "
                         f"accuracy to report")
    if model.output_shape != (10,):
        raise UsageError(f"{args.model_file}: the model has output shape {model.output_shape}; "
                         f"MNIST's 10 classes need (10,)")
    layout = "flat" if model.input_shape == (784,) else "image"
    _, (x, y), note = load_mnist(args.data, layout, need_train=False)
    try:
        result = model.evaluate(x, y)
        confusion = confusion_matrix(y, model.predict(x), 10)
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
    from .data import write_shuffled
    from .data.idx import IdxError, mnist_files
    data_dir = args.data or os.environ.get("FASTNN_DATA")
    if not data_dir:
        raise UsageError("shuffle: give --data DIR (a folder of MNIST-format IDX files) or set FASTNN_DATA")
    try:
        files = mnist_files(data_dir)
        check_output_path("--out", args.out, list(files.values()))
        start = time.perf_counter()
        write_shuffled(files["train_images"], files["train_labels"], args.out, epochs=args.epochs,
                       seed=args.seed, memory_limit=args.memory_limit)
    except (IdxError, OSError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {args.out}: {args.epochs} epochs in {time.perf_counter() - start:.1f} s, "
          f"peak RSS {peak_rss_mb():.0f} MB")
    return 0


def info(args):
    import fastnn
    for key, value in fastnn.info().items():
        print(f"{key}: {value}")
    return 0
