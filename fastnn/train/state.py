"""The state of one training run, in one object: `TrainState`, plus the `History` it records.

Between any two steps everything a run depends on is here (the fit settings, epoch, position
in the epoch, global step, running epoch sums, stop request, history, and the data source's
position), so a checkpoint of it continues bit-identically (fastnn/train/checkpoint.py).
The loop (loop.py) advances it; callbacks read it and ask it to stop; nothing else sets it.
"""
import csv
import io
import json
import time

import numpy as np

from ..atomic import atomic_write
from ..errors import CheckpointError


class History:
    """What a run measured: per-step loss; per-epoch train/val loss and accuracy; samples/s."""

    KEYS = ("step_loss", "epoch_train_loss", "epoch_train_accuracy", "epoch_val_loss",
            "epoch_val_accuracy", "epoch_val_correct", "epoch_seconds", "samples_per_second")

    def __init__(self):
        for key in self.KEYS:
            setattr(self, key, [])
        self.val_total = None
        self.stopped_reason = None

    def as_dict(self):
        """{key: list of values} for every measured series (KEYS)."""
        return {key: list(getattr(self, key)) for key in self.KEYS}

    def epoch_rows(self):
        """One dict per epoch (for CSV)."""
        keys = [k for k in self.KEYS if k != "step_loss"]
        count = len(self.epoch_train_loss)
        return [{"epoch": i + 1, **{k[6:] if k.startswith("epoch_") else k:
                                    (getattr(self, k)[i] if i < len(getattr(self, k)) else None)
                                    for k in keys}} for i in range(count)]

    def save_json(self, path):
        """Write as_dict() as JSON, atomically."""
        with atomic_write(path, "w") as f:
            json.dump(self.as_dict(), f)

    def save_csv(self, path):
        """Write one CSV row per epoch (epoch_rows()), atomically."""
        rows = self.epoch_rows()
        buf = io.StringIO()
        if rows:
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        with atomic_write(path, "w") as f:
            f.write(buf.getvalue())

    def state_dict(self):
        """JSON-safe copy of everything measured (for checkpoints)."""
        return {**{k: plain(v) for k, v in self.as_dict().items()},
                "val_total": plain(self.val_total), "stopped_reason": self.stopped_reason}

    def load_state_dict(self, saved):
        """Take back what state_dict() returned."""
        for key in self.KEYS:
            setattr(self, key, list(saved[key]))
        self.val_total, self.stopped_reason = saved["val_total"], saved["stopped_reason"]


def plain(value):
    """JSON-safe copy: numpy scalars become Python numbers (exactly: float64 repr round-trips)."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


class TrainState:
    """One run: `fit` settings (epochs, batch_size, shuffle, seed, kind), `epoch` (1-based; 0
    before the first), `epoch_done`, `step_in_epoch`, `global_step`, the epoch's running sums
    (`seen`, `loss_sum`, `correct`, `seconds`), the `history`, and `data`, the source of batches
    (its position is part of the state), and the run's `callbacks` (their state is too).
    Callbacks call `request_stop(reason)`. `writes_files`: whether this process writes the
    run's files (checkpoints); in a distributed run only rank 0 does."""

    def __init__(self, fit, data, callbacks=(), writes_files=True):
        self.fit, self.data, self.callbacks = dict(fit), data, tuple(callbacks)
        self.writes_files = writes_files
        self.history = History()
        self.epoch, self.epoch_done, self.step_in_epoch, self.global_step = 0, True, 0, 0
        self.seen, self.loss_sum, self.correct, self.seconds = 0, 0.0, 0, 0.0
        self.started = time.perf_counter()
        self.stop_requested = False
        self.interrupted = False  # a Ctrl-C the loop honours after the current step
        self.callback_states = {}  # from a checkpoint, until the callbacks take them

    @property
    def batch_size(self):
        """The batch size this run trains at."""
        return self.fit["batch_size"]

    def request_stop(self, reason=None):
        """Stop after the current step (EarlyStopping, a user's callback)."""
        self.stop_requested = True
        if reason is not None:
            self.history.stopped_reason = reason

    def begin_epoch(self):
        """The loop starts the next epoch: counters of the epoch start from zero."""
        self.epoch += 1
        self.epoch_done, self.step_in_epoch = False, 0
        self.seen, self.loss_sum, self.correct, self.seconds = 0, 0.0, 0, 0.0
        self.started = time.perf_counter()

    def record_step(self, loss, samples, correct):
        """The loop finished a step on `samples` samples with batch loss `loss`."""
        self.global_step += 1
        self.step_in_epoch += 1
        self.seen += samples
        self.loss_sum += loss * samples
        self.correct = None if correct is None or self.correct is None else self.correct + correct
        self.history.step_loss.append(loss)

    def record_steps(self, losses, batch_size, corrects):
        """The loop finished len(losses) steps of `batch_size` samples in one call (numpy arrays
        of each step's loss and correct count): the same sums as record_step, step by step."""
        losses = losses.tolist()
        loss_sum = self.loss_sum
        for loss in losses:  # in step order: the same float sum as record_step makes
            loss_sum += loss * batch_size
        self.loss_sum = loss_sum
        self.global_step += len(losses)
        self.step_in_epoch += len(losses)
        self.seen += batch_size * len(losses)
        self.correct = None if self.correct is None else self.correct + int(corrects.sum())
        self.history.step_loss.extend(losses)

    def epoch_seconds(self):
        """Training seconds spent in the current epoch so far."""
        return self.seconds + (0.0 if self.epoch_done else time.perf_counter() - self.started)

    # -- checkpoints -----------------------------------------------------------------------------
    def snapshot(self):
        """(JSON-safe state, {name: array}) of this moment."""
        data_state, arrays = self.data.state()
        state = {
            "fit": self.fit, "epoch": self.epoch, "epoch_done": self.epoch_done,
            "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "seen": self.seen, "loss_sum": plain(self.loss_sum), "correct": plain(self.correct),
            "seconds": self.epoch_seconds(), "stop": bool(self.stop_requested),
            "history": self.history.state_dict(), "source": data_state,
            "callbacks": {key: {k: plain(v) for k, v in c.state_dict().items()}
                          for key, c in keyed(self.callbacks) if c.state_dict()},
        }
        return state, arrays

    def restore(self, state, arrays):
        """Continue from snapshot()'s output; CheckpointError when it does not fit this run."""
        try:
            self._restore(state, arrays)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:  # passed the digest, lacks a field
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"resume: incomplete training state ({type(exc).__name__}: {exc})") from None

    def _restore(self, state, arrays):
        for key in ("kind", "batch_size"):
            if state["fit"].get(key) != self.fit[key]:
                raise CheckpointError(f"resume: the checkpoint was taken with {key} "
                                      f"{state['fit'].get(key)!r}, this run has {self.fit[key]!r}")
        saved, have = state["fit"].get("world", 1), self.fit.get("world", 1)  # distributed ranks
        if saved != have:
            raise CheckpointError(f"resume: the checkpoint was taken by {saved} process(es) "
                                  f"(mpiexec -n {saved}), this run has {have}; every rank's data "
                                  f"position is in it, so resume with the same number")
        self.fit = dict(state["fit"])
        self.data.restore(state["source"], arrays)
        self.epoch, self.epoch_done = int(state["epoch"]), bool(state["epoch_done"])
        self.step_in_epoch, self.seen = int(state["step_in_epoch"]), int(state["seen"])
        self.global_step = int(state["global_step"])
        self.loss_sum, self.correct, self.seconds = float(state["loss_sum"]), state["correct"], float(state["seconds"])
        self.stop_requested = bool(state["stop"])
        self.history.load_state_dict(state["history"])
        self.callback_states = state.get("callbacks") or {}

    def restore_callbacks(self):
        """Give the callbacks the state a checkpoint carried for them."""
        for key, c in keyed(self.callbacks):
            if key in self.callback_states:
                c.load_state_dict(self.callback_states[key])


def keyed(callbacks):
    """(ClassName#k, callback): the k-th callback of that class, a key stable across runs."""
    counts = {}
    for c in callbacks:
        name = type(c).__name__
        counts[name] = counts.get(name, 0) + 1
        yield f"{name}#{counts[name]}", c
