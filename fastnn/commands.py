"""What each CLI command does, once cli.py has parsed and checked the arguments."""
import json
import os
import resource
import sys
import time

import numpy as np

from .cli_run import (check_outputs, one_line, run_args, run_config,
                      save_fallback, check_output_path)
from .errors import UsageError

EXIT_USAGE = 2  # bad arguments or data, and a diverged run (NaN/inf loss)
EXIT_INTERRUPTED = 130  # Ctrl-C; `train` saves a checkpoint first
DEFAULT_CHECKPOINT = "fastnn-interrupted.ckpt"  # where `train` saves on Ctrl-C without --checkpoint


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

    run = run_args(args)
    cfg = run_config(run)
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
        check_outputs(args, run)
    try:
        model = Sequential.from_config(cfg)
    except (TypeError, ValueError, MemoryError) as exc:
        raise UsageError(f"{name}: the model does not build: {one_line(exc)}") from None
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


def _write_outputs(args, say, kind, model, history, train_data, scale):
    """--out, then --plot. A write that fails after training keeps the model (to a fallback
    file when --out itself failed) and says where, in one line."""
    if args.out:
        try:
            model.save(args.out)
        except OSError as exc:
            kept = save_fallback(model)
            raise UsageError(f"could not write --out {args.out} ({exc.strerror or exc}); "
                             f"the trained model is saved in {kept}") from None
        say(f"saved {args.out}")
    if args.plot:
        try:
            _plot(args.plot, kind, model, history, train_data, scale)
        except OSError as exc:
            kept = args.out or save_fallback(model)
            raise UsageError(f"could not write --plot {args.plot} ({exc.strerror or exc}); "
                             f"the trained model is in {kept}") from None
        say(f"plot {args.plot}")


def _load_resume(args, built):
    """(model, initial_state) from --resume, checked against the preset the run builds."""
    from .errors import ModelFileError
    from .model import load_checkpoint
    try:
        model, initial_state, _ = load_checkpoint(args.resume)
    except (OSError, ModelFileError) as exc:
        raise UsageError(one_line(exc)) from None
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
        kept = save_fallback(model)
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
        raise UsageError(one_line(exc)) from None
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
        raise UsageError(f"{args.model_file}: {one_line(exc)}") from None
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
        raise UsageError(one_line(exc)) from None
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
