"""Callbacks: progress bar (tqdm), early stopping, checkpoints, history files.

A callback gets `on_train_begin(model, state)` (state: the run's TrainState, whose `history`
it may read), `on_step_end(step, loss)`, `on_epoch_end(epoch, logs)`, `on_train_end()` and,
after a Ctrl-C that fit deferred to the end of a step, `on_interrupt(step)`.
`self.state.request_stop(reason)` stops the run after the current step. A callback with state
(EarlyStopping) returns it from `state_dict()` so checkpoints carry it. The loop asks a
callback what it needs through two class attributes: `order` (callbacks run in ascending
order; checkpoints last, to capture what the others decided) and `wants_deferred_interrupt`
(Ctrl-C is honoured between steps, so that the callback can save a whole step).
"""
import math
import os
import sys

from .checkpoint import save_checkpoint


class Callback:
    """Base class: override the hooks you need. `self.model` and `self.state` (the run's
    TrainState; `self.history` is its History) are set when training begins."""

    order = 0
    wants_deferred_interrupt = False

    def __init__(self):
        self.model = self.state = None  # set by on_train_begin

    @property
    def history(self):
        """The run's History (what it measured so far)."""
        return self.state.history

    def on_train_begin(self, model, state):
        """Before the first step (of this call to fit): the model and the run's TrainState."""
        self.model, self.state = model, state

    def on_interrupt(self, step):
        """After a Ctrl-C that fit deferred to the end of step `step`, before it stops."""

    def state_dict(self):
        """JSON-safe numbers a resumed run needs to behave the same (saved in checkpoints)."""
        return {}

    def load_state_dict(self, state):
        """Take back what state_dict() returned (when a run resumes from a checkpoint)."""
        for key, value in state.items():
            setattr(self, key, value)

    def on_step_end(self, step, loss):
        """After each optimizer step: the global step number (from 1) and the batch loss."""

    def next_step_call(self, step):
        """The global step after which fit must next call on_step_end, now that step `step` is
        done; None: never. By default every step (step + 1) when the class overrides
        on_step_end. Steps in between may run in one compiled call (Dense stacks trained on
        arrays): a callback that needs fewer calls says so here, and the run goes faster."""
        return step + 1 if type(self).on_step_end is not Callback.on_step_end else None

    def on_epoch_end(self, epoch, logs):
        """After each epoch: its number (from 1) and logs (train_loss, train_accuracy,
        samples_per_second, seconds, val_loss, val_accuracy, val_correct, val_total)."""

    def on_train_end(self):
        """After the last step (also after an early stop)."""


class ProgressBar(Callback):
    """tqdm bar per epoch with loss, accuracy and samples/s; silent when not a TTY or verbose=0."""

    STRIDE = 32

    def __init__(self, steps_per_epoch, verbose=1, stream=None):
        super().__init__()
        self.steps_per_epoch, self.verbose = steps_per_epoch, verbose
        self.stream = stream or sys.stderr
        self.bar = None

    def _enabled(self):
        return bool(self.verbose) and hasattr(self.stream, "isatty") and self.stream.isatty()

    def next_step_call(self, step):
        # A bar only on a terminal, moved in 100ths of an epoch and at least STRIDE steps at a
        # time (a call cuts the compiled run of steps it falls in).
        return step + max(self.STRIDE, self.steps_per_epoch // 100) if self._enabled() else None

    def on_step_end(self, step, loss):
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=self.steps_per_epoch, file=self.stream, leave=False, unit="step")
        self.bar.update(self.state.step_in_epoch - self.bar.n)
        self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def on_epoch_end(self, epoch, logs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_train_end(self):
        """Close the bar of an epoch that stopped early."""
        self.on_epoch_end(None, None)


class EpochPrinter(Callback):
    """Prints `Epoch j: correct / total` (Nielsen's format) plus loss and accuracy."""

    def __init__(self, print_fn=print):
        super().__init__()
        self.print_fn = print_fn

    def on_epoch_end(self, epoch, logs):
        parts = [f"Epoch {epoch}:"]
        if logs.get("val_correct") is not None:
            parts.append(f"{logs['val_correct']} / {logs['val_total']}")
        parts.append(f"(train loss {logs['train_loss']:.4f}")
        if logs.get("train_accuracy") is not None:
            parts.append(f"acc {logs['train_accuracy']:.4f},")
        parts.append(f"{logs['samples_per_second']:,.0f} samples/s)")
        self.print_fn(" ".join(parts))


class EarlyStopping(Callback):
    """Stops when `monitor` (an epoch log: 'train_loss', 'val_loss', ...) has not improved by
    min_delta for `patience` epochs, or, with `loss_threshold`, as soon as a step's loss is below
    it (checked every step: "stop when loss < 0.2")."""

    def __init__(self, monitor="val_loss", patience=None, min_delta=0.0, loss_threshold=None):
        if patience is None and loss_threshold is None:
            raise ValueError("EarlyStopping: give patience, loss_threshold, or both")
        if patience is not None and (not isinstance(patience, int) or patience < 0):
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        super().__init__()
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.loss_threshold = loss_threshold
        self.best, self.wait = math.inf, 0

    def state_dict(self):
        return {"best": self.best, "wait": self.wait}

    def on_step_end(self, step, loss):
        if self.loss_threshold is not None and loss < self.loss_threshold:
            self.state.request_stop(f"loss {loss:.6g} < {self.loss_threshold} at step {step}")

    def on_epoch_end(self, epoch, logs):
        if self.patience is None:
            return
        value = logs.get(self.monitor)
        if value is None:
            raise ValueError(f"EarlyStopping: no '{self.monitor}' in the epoch logs "
                             f"(have {sorted(k for k, v in logs.items() if v is not None)})")
        if value < self.best - self.min_delta:
            self.best, self.wait = value, 0
        else:
            self.wait += 1
            if self.wait > self.patience:
                self.state.request_stop(f"{self.monitor} did not improve for {self.patience} epochs")


class Checkpoint(Callback):
    """Saves a resumable checkpoint to `path`: every `every_n_steps` steps (None: never by
    count), at the end when `at_end`, and when fit stops for a Ctrl-C. Resume with
    fastnn.resume(path, x, y); fastnn.load(path) reads the model alone. `run_info`: JSON-safe
    facts about the run stored with it (the CLI records its arguments there).

    Written atomically with a sha256 digest: a crash mid-write, a failed write or weights that
    turned NaN/inf (TrainingDiverged) all leave the previous checkpoint in place."""

    order = 1
    wants_deferred_interrupt = True

    def __init__(self, path, every_n_steps=1000, at_end=True, run_info=None):
        if every_n_steps is not None and (isinstance(every_n_steps, bool) or
                                          not isinstance(every_n_steps, int) or every_n_steps < 1):
            raise ValueError(f"Checkpoint: every_n_steps must be an int >= 1 or None, got {every_n_steps!r}")
        super().__init__()
        self.path, self.every_n_steps, self.at_end = os.fspath(path), every_n_steps, at_end
        self.run_info = run_info

    def save(self):
        """Write the checkpoint now (atomically)."""
        save_checkpoint(self.path, self.model, self.state, run_info=self.run_info)

    def next_step_call(self, step):
        n = self.every_n_steps
        return None if n is None else (step // n + 1) * n

    def on_step_end(self, step, loss):
        if self.every_n_steps and step % self.every_n_steps == 0:
            self.save()

    def on_interrupt(self, step):
        self.save()

    def on_train_end(self):
        if self.at_end:
            self.save()


class HistoryWriter(Callback):
    """Writes the history to `path` (.csv: one row per epoch; .json: everything) after each epoch."""

    def __init__(self, path):
        super().__init__()
        self.path = os.fspath(path)
        if not self.path.endswith((".csv", ".json")):
            raise ValueError(f"HistoryWriter: path must end in .csv or .json, got {self.path!r}")

    def on_epoch_end(self, epoch, logs):
        (self.history.save_csv if self.path.endswith(".csv") else self.history.save_json)(self.path)
