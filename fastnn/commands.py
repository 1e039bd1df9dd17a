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


def _open_stream(args, preset, batch_size):
    """(training stream, test batches, note): both read with fixed buffers, so memory stays flat.
    The test set comes from --data, else $FASTNN_DATA, else the bundled subset."""
    from . import datasets
    from .data import IdxBatches, IdxError, ShuffledFileError, ShuffledStream, mnist_files
    layout = "flat" if preset.layout == "flat" else "nchw"
    folder = args.data or os.environ.get("FASTNN_DATA") or datasets.SUBSET_DIR
    errors = (IdxError, ShuffledFileError, OSError, ValueError)
    try:  # the file the user named first: its error is the one to report
        stream = ShuffledStream(args.stream, batch_size, layout=layout)
    except errors as exc:
        raise UsageError(str(exc)) from None
    try:
        files = mnist_files(folder, datasets.SUBSET_PREFIX if folder == datasets.SUBSET_DIR else "")
        test = IdxBatches(files["test_images"], files["test_labels"], batch_size=batch_size, layout=layout)
    except errors as exc:
        stream.close()
        raise UsageError(str(exc)) from None
    return stream, test, f"training stream {args.stream}; test set from {folder}"


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
def train(args):
    import fastnn
    from . import zoo
    from .callbacks import EarlyStopping, EpochPrinter

    preset = zoo.get(args.model)
    if args.threads:
        fastnn.set_num_threads(args.threads)
    epochs = args.epochs or preset.epochs
    batch_size = args.batch_size or preset.batch_size
    say = (lambda *a: None) if args.quiet else (lambda text: print(text, flush=True))
    if args.optimizer == "random-search" and preset.data == "mnist":
        raise UsageError("--optimizer random-search is for the 2-D presets (twoclass, spiral)")
    model = preset.build(hidden=args.hidden, lr=args.lr, seed=args.seed, optimizer=args.optimizer)
    resume = None
    if args.resume:
        model, resume = _load_resume(args, model)
        epochs, batch_size = resume[0]["fit"]["epochs"], resume[0]["fit"]["batch_size"]
        say(f"resuming {args.resume} at step {model.global_step}")

    callbacks = [EpochPrinter(say), _checkpoint_callback(args)]
    if preset.loss_threshold is not None:
        callbacks.append(EarlyStopping(loss_threshold=preset.loss_threshold))
    stream, scale, train_data = None, None, None
    if preset.data == "mnist":
        if args.stream:
            stream, test, note = _open_stream(args, preset, batch_size)
        else:
            train_data, test, note = load_mnist(args.data, preset.layout)
        say(note)
    else:
        if args.stream:
            raise UsageError(f"--stream is for the MNIST presets, not {preset.name}")
        *train_data, scale = _load_points(preset, args.seed)
        test = None
    if not args.quiet:
        model.summary(print_fn=say)

    start = time.perf_counter()
    try:
        history = _fit(args, model, stream, train_data, test, epochs, batch_size, callbacks, resume)
    except Interrupted as exc:
        print(f"fastnn: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    seconds = time.perf_counter() - start

    if args.out:
        model.save(args.out)
        say(f"saved {args.out}")
    if args.plot:
        _plot(args.plot, preset, model, history, train_data, scale)
        say(f"plot {args.plot}")
    if history.stopped_reason:
        say(f"stopped: {history.stopped_reason}")
    samples = sum(s * t for s, t in zip(history.samples_per_second, history.epoch_seconds))
    summary = {
        "model": preset.name, "epochs": len(history.epoch_train_loss), "batch_size": batch_size,
        "threads": fastnn.get_num_threads(), "seconds": round(seconds, 3),
        "samples_per_second": round(samples / sum(history.epoch_seconds), 1) if history.epoch_seconds else 0.0,
        "train_loss": history.epoch_train_loss[-1], "train_accuracy": history.epoch_train_accuracy[-1],
        "test_accuracy": history.epoch_val_accuracy[-1] if history.epoch_val_accuracy else None,
        "best_test_accuracy": max(history.epoch_val_accuracy) if history.epoch_val_accuracy else None,
        "final_step_loss": history.step_loss[-1] if history.step_loss else None,
        "steps": len(history.step_loss), "stopped_reason": history.stopped_reason,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    if args.json:
        print(json.dumps(summary))
    return 0


def _load_resume(args, built):
    """(model, (state, arrays)) from --resume, checked against the preset the flags build."""
    from .checkpoint import load_checkpoint
    from .serialize import ModelFileError
    try:
        model, state, arrays = load_checkpoint(args.resume)
    except (OSError, ModelFileError) as exc:
        raise UsageError(str(exc)) from None
    if model.get_config()["layers"] != built.get_config()["layers"]:
        raise UsageError(f"{args.resume}: the checkpoint's layers do not match --model {args.model} "
                         f"(give the same --model/--hidden as the interrupted run)")
    return model, (state, arrays)


def _checkpoint_callback(args):
    """--checkpoint FILE (every --checkpoint-every steps and at the end); without it, a Ctrl-C
    still saves, to the --resume file or DEFAULT_CHECKPOINT."""
    from .callbacks import Checkpoint
    if args.checkpoint_every and not args.checkpoint:
        raise UsageError("--checkpoint-every needs --checkpoint FILE")
    if args.checkpoint:
        return Checkpoint(args.checkpoint, every_n_steps=args.checkpoint_every)
    return Checkpoint(args.resume or DEFAULT_CHECKPOINT, every_n_steps=None, at_end=False)


def _fit(args, model, stream, train_data, test, epochs, batch_size, callbacks, resume):
    """fit (or continue a checkpoint): divergence and Ctrl-C become one line on stderr."""
    from .training import TrainingDiverged, run_fit
    saver = callbacks[1]
    verbose = 0 if args.quiet else 1
    try:
        if stream is not None:
            with stream:
                return run_fit(model, stream, None, epochs, None, test, callbacks, True, None, verbose,
                               resume=resume)
        return run_fit(model, *train_data, epochs, batch_size, test, callbacks, True, args.seed,
                       verbose, resume=resume)
    except TrainingDiverged as exc:
        kept = f"; last good checkpoint: {saver.path}" if os.path.exists(saver.path) and \
            args.checkpoint else ""
        raise UsageError(f"{exc}{kept}") from None
    except KeyboardInterrupt as exc:
        if not os.path.exists(saver.path) or not str(exc).startswith("interrupted at step"):
            raise
        raise Interrupted(f"{exc}; checkpoint saved to {saver.path} (continue with the same "
                          f"command plus --resume {saver.path})") from None


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
        raise UsageError(str(exc)) from None
    if model.input_shape not in ((784,), (1, 28, 28)):
        raise UsageError(f"{args.model_file}: input shape {model.input_shape} is not MNIST's")
    layout = "flat" if model.input_shape == (784,) else "image"
    _, (x, y), note = load_mnist(args.data, layout, need_train=False)
    result = model.evaluate(x, y)
    confusion = confusion_matrix(y, model.predict(x), 10)
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
