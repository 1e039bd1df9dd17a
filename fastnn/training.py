"""The training loop behind Sequential.fit: in-memory arrays or a fastnn.data stream."""
import time

import numpy as np

from .callbacks import Callback, History, ProgressBar
from .ops import _check as check


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the message names the step."""


def _is_stream(x):
    return hasattr(x, "iter_epoch") and hasattr(x, "records_per_epoch")


def run_fit(model, x, y, epochs, batch_size, validation_data, callbacks, shuffle, seed, verbose):
    if model.loss is None or model.optimizer is None:
        raise RuntimeError("fit: the model needs a loss and an optimizer (pass them to Sequential "
                           "or call compile())")
    epochs = check.positive_int("fit", "epochs", epochs)
    callbacks = list(callbacks or [])
    for c in callbacks:
        if not isinstance(c, Callback):
            raise TypeError(f"fit: callbacks must be fastnn callbacks, got {type(c).__name__}")
    if isinstance(validation_data, tuple):
        if len(validation_data) != 2:
            raise TypeError("fit: validation_data must be an (x, y) tuple or an iterable of batches")
        model._check_data("fit validation_data", *validation_data)

    if _is_stream(x):
        epoch_source = _stream_epochs(model, x, epochs)
        batch_size, steps_per_epoch = x.batch_size, x.batches_per_epoch
    else:
        batch_size = check.positive_int("fit", "batch_size", batch_size)
        model._check_data("fit", x, y)
        epoch_source = _array_epochs(model, x, y, epochs, batch_size, shuffle, seed)
        steps_per_epoch = -(-x.shape[0] // batch_size)

    history = History()
    callbacks.insert(0, ProgressBar(steps_per_epoch, verbose))
    model.stop_training = False
    for c in callbacks:
        c.on_train_begin(model, history)
    step = getattr(model, "global_step", 0)
    with model._lock:
        for epoch, batches in enumerate(epoch_source, start=1):
            start, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
            for xb, yb in batches:
                loss = model.train_step(xb, yb)
                step += 1
                if not np.isfinite(loss):
                    raise TrainingDiverged(f"fit: loss is {loss} at step {step} (epoch {epoch}); "
                                           f"lower the learning rate")
                n = xb.shape[0]
                seen += n
                loss_sum += loss * n
                c_ok = model.last_correct
                correct = None if c_ok is None or correct is None else correct + c_ok
                history.step_loss.append(loss)
                for c in callbacks:
                    c.on_step_end(step, loss)
                if model.stop_training:
                    break
            model.global_step = step
            seconds = time.perf_counter() - start
            logs = _epoch_logs(model, history, loss_sum / max(seen, 1),
                               None if correct is None else correct / max(seen, 1),
                               seen / seconds if seconds > 0 else 0.0, seconds, validation_data)
            for c in callbacks:
                c.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
    for c in callbacks:
        c.on_train_end()
    return history


def _epoch_logs(model, history, train_loss, train_accuracy, samples_per_second, seconds, validation_data):
    history.epoch_train_loss.append(train_loss)
    history.epoch_train_accuracy.append(train_accuracy)
    history.samples_per_second.append(samples_per_second)
    history.epoch_seconds.append(seconds)
    logs = {"train_loss": train_loss, "train_accuracy": train_accuracy,
            "samples_per_second": samples_per_second, "seconds": seconds,
            "val_loss": None, "val_accuracy": None, "val_correct": None, "val_total": None}
    if validation_data is not None:
        result = model.evaluate(*validation_data) if isinstance(validation_data, tuple) \
            else model.evaluate_batches(validation_data)
        logs.update(val_loss=result["loss"], val_accuracy=result["accuracy"],
                    val_correct=result["correct"], val_total=result["total"])
        history.epoch_val_loss.append(result["loss"])
        history.epoch_val_accuracy.append(result["accuracy"])
        history.epoch_val_correct.append(result["correct"])
        history.val_total = result["total"]
    return logs


def _array_epochs(model, x, y, epochs, batch_size, shuffle, seed):
    rng = np.random.default_rng(seed)
    order = np.arange(x.shape[0]) if shuffle else None
    for _ in range(epochs):
        if shuffle:
            rng.shuffle(order)
        yield model._batches(x, y, batch_size, order)


def _stream_epochs(model, stream, epochs):
    """Epochs follow the file, from the stream's position: at most `epochs` of them."""
    for epoch_index in list(stream.remaining_epochs())[:epochs]:
        yield stream.iter_epoch(epoch_index)
