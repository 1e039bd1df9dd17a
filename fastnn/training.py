"""The training loop behind Sequential.fit: in-memory arrays or a fastnn.data stream.

Between any two steps the loop's whole state is in a `Run` (epoch, position in the epoch, the
shuffle RNG and permutation or the stream position, the running epoch sums, the history), so a
checkpoint taken there and resumed (fastnn/checkpoint.py) continues bit-identically.
"""
import contextlib
import itertools
import signal
import threading
import time

import numpy as np

from .callbacks import Callback, Checkpoint, History, ProgressBar
from .ops import _check as check


class TrainingDiverged(FloatingPointError):
    """The loss (or the weights) became NaN or infinite; the message names the step."""


def _is_stream(x):
    return hasattr(x, "iter_epoch") and hasattr(x, "records_per_epoch")


def _plain(value):
    """JSON-safe copy: numpy scalars become Python numbers (exactly: float64 repr round-trips)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def run_fit(model, x, y, epochs, batch_size, validation_data, callbacks, shuffle, seed, verbose,
            resume=None):
    """Train; `resume` is (state, arrays) from fastnn.checkpoint.load_checkpoint."""
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
        source = _StreamSource(x)
    else:
        batch_size = check.positive_int("fit", "batch_size", batch_size)
        model._check_data("fit", x, y)
        source = _ArraySource(model, x, y, batch_size, shuffle, seed)
    model.train_batch_size = source.batch_size
    run = Run(model, source, {"epochs": epochs, "batch_size": source.batch_size,
                              "shuffle": bool(shuffle), "seed": _plain(seed), "kind": source.kind})
    if resume is not None:
        run.restore(*resume)
    history = run.history

    callbacks.insert(0, ProgressBar(source.steps_per_epoch, verbose))
    # Checkpoints last (stable sort): they capture what the other callbacks decided this step.
    callbacks.sort(key=lambda c: isinstance(c, Checkpoint))
    run.callbacks = callbacks
    for c in callbacks:
        c.training = run
        c.on_train_begin(model, history)
    run.restore_callbacks(callbacks)
    model.stop_training = run.stop
    with model._lock, _deferred_sigint(run, any(isinstance(c, Checkpoint) for c in callbacks)):
        while True:
            if run.epoch_done:
                if model.stop_training or run.epoch >= epochs:
                    break
                batches = source.next_epoch()
                if batches is None:  # a stream file has no more epochs
                    break
                run.begin_epoch()
            else:  # resumed mid-epoch (or at its end, before the epoch's logs)
                batches = iter(()) if model.stop_training else source.continue_epoch(run.step_in_epoch)
            _train_epoch(model, run, batches, callbacks)
            seconds = run.seconds + time.perf_counter() - run.started
            logs = _epoch_logs(model, history, run.loss_sum / max(run.seen, 1),
                               None if run.correct is None else run.correct / max(run.seen, 1),
                               run.seen / seconds if seconds > 0 else 0.0, seconds, validation_data)
            run.epoch_done = True
            for c in callbacks:
                c.on_epoch_end(run.epoch, logs)
            run.check_interrupt(callbacks)
    for c in callbacks:
        c.on_train_end()
    return history


def _train_epoch(model, run, batches, callbacks):
    history = run.history
    run.started = time.perf_counter()
    for xb, yb in batches:
        loss = model.train_step(xb, yb)
        step = model.global_step = model.global_step + 1
        if not np.isfinite(loss):
            raise TrainingDiverged(f"fit: loss is {loss} at step {step} (epoch {run.epoch}); "
                                   f"lower the learning rate")
        n = xb.shape[0]
        run.step_in_epoch += 1
        run.seen += n
        run.loss_sum += loss * n
        c_ok = model.last_correct
        run.correct = None if c_ok is None or run.correct is None else run.correct + c_ok
        history.step_loss.append(loss)
        for c in callbacks:
            c.on_step_end(step, loss)
        run.check_interrupt(callbacks)
        if model.stop_training:
            break


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


class Run:
    """Everything the loop depends on between two steps; `snapshot()` / `restore()` for
    checkpoints. `epoch` is the current (1-based) epoch, 0 before the first."""

    def __init__(self, model, source, fit):
        self.model, self.source, self.fit = model, source, fit
        self.history = History()
        self.epoch, self.epoch_done, self.step_in_epoch = 0, True, 0
        self.seen, self.loss_sum, self.correct, self.seconds = 0, 0.0, 0, 0.0
        self.started = time.perf_counter()
        self.stop = False
        self.callback_states = {}
        self.interrupted = False
        if not hasattr(model, "global_step"):
            model.global_step = 0

    def begin_epoch(self):
        self.epoch += 1
        self.epoch_done, self.step_in_epoch = False, 0
        self.seen, self.loss_sum, self.correct, self.seconds = 0, 0.0, 0, 0.0

    def check_interrupt(self, callbacks):
        """After a whole step (or epoch end): a deferred Ctrl-C saves checkpoints, then stops."""
        if self.interrupted:
            for c in callbacks:
                c.on_interrupt(self.model.global_step)
            raise KeyboardInterrupt(f"interrupted at step {self.model.global_step}")

    # -- checkpoints -----------------------------------------------------------------------------
    def snapshot(self):
        """(JSON-safe state, {name: array}) of this moment."""
        callbacks = getattr(self, "callbacks", ())
        h = self.history
        source_state, arrays = self.source.state()
        seconds = self.seconds + (0.0 if self.epoch_done else time.perf_counter() - self.started)
        state = {
            "fit": self.fit, "epoch": self.epoch, "epoch_done": self.epoch_done,
            "step_in_epoch": self.step_in_epoch, "global_step": self.model.global_step,
            "seen": self.seen, "loss_sum": _plain(self.loss_sum), "correct": _plain(self.correct),
            "seconds": seconds, "stop": bool(self.model.stop_training),
            "history": {**{k: _plain(v) for k, v in h.as_dict().items()},
                        "val_total": _plain(h.val_total), "stopped_reason": h.stopped_reason},
            "source": source_state,
            "callbacks": {key: _plain_dict(c.state_dict()) for key, c in _keyed(callbacks)
                          if c.state_dict()},
        }
        return state, arrays

    def restore(self, state, arrays):
        from .checkpoint import CheckpointError
        try:
            self._restore(state, arrays, CheckpointError)
        except (KeyError, TypeError, AttributeError) as exc:  # passed the digest, lacks a field
            raise CheckpointError(f"resume: incomplete training state ({type(exc).__name__}: {exc})") from None

    def _restore(self, state, arrays, CheckpointError):
        for key in ("kind", "batch_size"):
            if state["fit"].get(key) != self.fit[key]:
                raise CheckpointError(f"resume: the checkpoint was taken with {key} "
                                      f"{state['fit'].get(key)!r}, this run has {self.fit[key]!r}")
        self.fit = dict(state["fit"])
        self.source.restore(state["source"], arrays, CheckpointError)
        self.epoch, self.epoch_done = int(state["epoch"]), bool(state["epoch_done"])
        self.step_in_epoch, self.seen = int(state["step_in_epoch"]), int(state["seen"])
        self.loss_sum, self.correct, self.seconds = state["loss_sum"], state["correct"], state["seconds"]
        self.stop = bool(state["stop"])
        self.model.global_step = int(state["global_step"])
        saved = state["history"]
        for key in History.KEYS:
            setattr(self.history, key, list(saved[key]))
        self.history.val_total, self.history.stopped_reason = saved["val_total"], saved["stopped_reason"]
        self.callback_states = state.get("callbacks") or {}

    def restore_callbacks(self, callbacks):
        for key, c in _keyed(callbacks):
            if key in self.callback_states:
                c.load_state_dict(self.callback_states[key])


def _keyed(callbacks):
    """(ClassName#k, callback): the k-th callback of that class, a key stable across runs."""
    counts = {}
    for c in callbacks:
        name = type(c).__name__
        counts[name] = counts.get(name, 0) + 1
        yield f"{name}#{counts[name]}", c


def _plain_dict(d):
    return {k: _plain(v) for k, v in d.items()}


class _ArraySource:
    """Epochs of in-memory arrays: each epoch reshuffles the previous permutation with one
    np.random.default_rng(seed) (as fit always has), so state = RNG state + permutation."""

    kind = "arrays"

    def __init__(self, model, x, y, batch_size, shuffle, seed):
        if y is not None and y.dtype.kind in "iu" and y.dtype != np.int64:
            y = y.astype(np.int64)  # once: int64 labels let Dense stacks take the one-call step
        self.model, self.x, self.y, self.batch_size, self.shuffle = model, x, y, batch_size, shuffle
        self.rng = np.random.default_rng(seed)
        self.order = np.arange(x.shape[0]) if shuffle else None
        self.steps_per_epoch = -(-x.shape[0] // batch_size)

    def next_epoch(self):
        if self.shuffle:
            self.rng.shuffle(self.order)
        return self.model._batches(self.x, self.y, self.batch_size, self.order)

    def continue_epoch(self, done):
        # Gathering (not training on) the batches already done costs at most one epoch of copying.
        return itertools.islice(self.model._batches(self.x, self.y, self.batch_size, self.order), done, None)

    def state(self):
        state = {"samples": int(self.x.shape[0]), "rng": self.rng.bit_generator.state}
        return state, ({} if self.order is None else {"order": self.order.copy()})

    def restore(self, state, arrays, error):
        if state["samples"] != self.x.shape[0]:
            raise error(f"resume: the checkpoint was taken on {state['samples']} samples, "
                        f"x has {self.x.shape[0]}")
        self.rng.bit_generator.state = state["rng"]
        if self.shuffle:
            order = arrays.get("order")
            if order is None or order.shape != self.order.shape or \
                    not np.array_equal(np.sort(order), np.arange(len(order))):
                raise error("resume: the checkpoint's permutation is missing or not a permutation")
            self.order[...] = order


class _StreamSource:
    """Epochs of a ShuffledStream, following the file from the stream's position; state = the
    file epoch being read and stream.position_index."""

    kind = "stream"

    def __init__(self, stream):
        self.stream = stream
        self.batch_size, self.steps_per_epoch = stream.batch_size, stream.batches_per_epoch
        remaining = stream.remaining_epochs()
        self.file_epoch = remaining.start - 1  # the epoch being read; next_epoch moves on

    def next_epoch(self):
        if self.file_epoch + 1 >= self.stream.epochs:
            return None
        self.file_epoch += 1
        return self.stream.iter_epoch(self.file_epoch)

    def continue_epoch(self, done):
        s = self.stream
        if s.position_index >= self.file_epoch * s.records_per_epoch + s.hi:
            return iter(())  # the checkpoint was taken after the epoch's last batch
        return s.iter_epoch(self.file_epoch)

    def state(self):
        s = self.stream
        return {"file_epoch": self.file_epoch, "position_index": int(s.position_index),
                "records_per_epoch": s.records_per_epoch, "epochs": s.epochs,
                "shard": list(s.shard), "path": getattr(s, "path", None)}, {}

    def restore(self, state, arrays, error):
        s = self.stream
        for key, have in (("records_per_epoch", s.records_per_epoch), ("epochs", s.epochs),
                          ("shard", list(s.shard))):
            if state[key] != have:
                raise error(f"resume: the checkpoint's stream has {key} {state[key]}, this one has {have}")
        position, epoch = int(state["position_index"]), int(state["file_epoch"])
        if not (0 <= position <= s.epochs * s.records_per_epoch and -1 <= epoch < s.epochs):
            raise error(f"resume: stream position {position} / epoch {epoch} is outside the file")
        s.position_index, self.file_epoch = position, epoch


@contextlib.contextmanager
def _deferred_sigint(run, enabled):
    """With a checkpoint to write, Ctrl-C sets a flag that the loop honours after the current
    step (a KeyboardInterrupt mid-step could leave weights updated but the step uncounted).
    A second Ctrl-C interrupts at once. Only in the main thread, only over Python's default."""
    if not enabled or threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def handler(signum, frame):
        if run.interrupted:
            raise KeyboardInterrupt("interrupted twice")
        run.interrupted = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
