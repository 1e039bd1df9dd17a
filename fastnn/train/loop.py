"""The training loop behind Sequential.fit: in-memory arrays or a fastnn.data stream.

The loop owns nothing but control flow: the run's state is a `TrainState` (state.py), the
batches come from a source (sources.py), and callbacks see the model and that state. It uses
only the model's public methods (train_step, evaluate, reserve, ...): it imports no model.
"""
import contextlib
import math
import signal
import threading


from .._runtime import adapt_threads
from ..errors import TrainingDiverged
from ..ops import _check as check
from .callbacks import Callback, ProgressBar
from .sources import ArraySource, StreamSource, is_stream
from .state import TrainState, plain


def fit(model, x, y=None, *, epochs=1, batch_size=32, validation_data=None, callbacks=None,
        shuffle=True, seed=None, verbose=1, initial_state=None, distributed=None):
    """Train `model`; returns its History. `initial_state`: (state, arrays) read from a
    checkpoint (fastnn.model.load_checkpoint), to continue that run bit-identically.
    `distributed`: a fastnn.distributed.DataParallel, to train as one rank of it (batch_size
    is then the global batch; a stream must be this rank's shard)."""
    if model.loss is None or model.optimizer is None:
        raise RuntimeError("fit: the model needs a loss and an optimizer (pass them to Sequential "
                           "or call compile())")
    epochs = check.positive_int("fit", "epochs", epochs)
    callbacks = _check_callbacks(callbacks)
    validation_data = _check_validation(model, validation_data)
    ranks = distributed
    if is_stream(x):
        if y is not None:
            raise TypeError("fit: a stream carries its own labels; y must be None")
        if ranks is not None:
            ranks.check_shard("fit", x.shard)
        source = StreamSource(x)
    else:
        batch_size = check.positive_int("fit", "batch_size", batch_size)
        x, y = model._check_data("fit", x, y)
        if ranks is None:
            source = ArraySource(model._batches, x, y, batch_size, shuffle, seed)
        else:  # one permutation for all ranks (one seed), each trains on its slice of it
            seed = ranks.common_seed(seed) if shuffle else seed
            source = ArraySource(model._batches, x, y, ranks.per_rank_batch("fit", batch_size),
                                 shuffle, seed, shard=ranks.shard)
    if ranks is not None:  # before step 1, on every rank: the same model, equal step counts
        source = ranks.prepare(model, source)
    model.reserve(source.batch_size)
    callbacks.insert(0, ProgressBar(source.steps_per_epoch, verbose))
    callbacks.sort(key=lambda c: c.order)  # stable: checkpoints last, they capture the others' decisions
    world = 1 if ranks is None else ranks.world
    settings = {"epochs": epochs, "batch_size": source.batch_size * world, "shuffle": bool(shuffle),
                "seed": plain(seed), "kind": source.kind, **({"world": world} if ranks else {})}
    state = TrainState(settings, source, callbacks, writes_files=ranks is None or ranks.is_root)
    if initial_state is not None:
        state.restore(*initial_state)
    epochs = state.fit["epochs"]
    for c in callbacks:
        c.on_train_begin(model, state)
    state.restore_callbacks()
    defer = any(c.wants_deferred_interrupt for c in callbacks)
    with model._lock, _deferred_sigint(state, defer):
        while True:
            if state.epoch_done:
                if state.stop_requested or state.epoch >= epochs:
                    break
                batches = source.next_epoch()
                if batches is None:  # a stream file has no more epochs
                    break
                state.begin_epoch()
            else:  # resumed mid-epoch (or at its end, before the epoch's logs)
                batches = iter(()) if state.stop_requested else source.continue_epoch(state.step_in_epoch)
            runner = None if ranks is not None or state.stop_requested else _compiled_steps(model, source)
            if runner is None:
                _train_epoch(model, state, batches, callbacks, ranks)
            else:
                _train_epoch_compiled(model, state, source, runner, callbacks)
            interrupted = state.interrupted if ranks is None else \
                ranks.end_epoch(model, state.interrupted, f"the end of epoch {state.epoch}")
            logs = _epoch_logs(model, state, validation_data)
            state.epoch_done = True
            for c in callbacks:
                c.on_epoch_end(state.epoch, logs)
            # also a Ctrl-C that came during validation or the callbacks (on one process: ranks
            # decided together above, before the logs)
            _check_interrupt(state, callbacks, interrupted or (ranks is None and state.interrupted))
    for c in callbacks:
        c.on_train_end()
    return state.history


def _check_callbacks(callbacks):
    callbacks = list(callbacks or [])
    for c in callbacks:
        if not isinstance(c, Callback):
            raise TypeError(f"fit: callbacks must be fastnn callbacks, got {type(c).__name__}")
    return callbacks


def _check_validation(model, validation_data):
    """Checked before the first step: a bad validation set must not cost an epoch."""
    if isinstance(validation_data, tuple):
        if len(validation_data) != 2:
            raise TypeError("fit: validation_data must be an (x, y) tuple or an iterable of batches")
        return model._check_data("fit validation_data", *validation_data)
    return validation_data


def _train_epoch(model, state, batches, callbacks, ranks):
    """The epoch step by step: each batch through train_step, callbacks where they ask."""
    due = _due_calls(callbacks, state.global_step)
    for xb, yb in batches:
        adapt_threads()  # a time check per step; a load look every ADAPT_SECONDS
        if ranks is None:
            # fit checked the data once: batches come in the kernels' layout
            loss, samples, correct = model.train_step(xb, yb, validate=False), xb.shape[0], model.last_correct
            interrupted = state.interrupted
        else:  # sums over the ranks, the same on every rank: so are the decisions below
            loss, samples, correct, interrupted = ranks.train_step(model, xb, yb, state.interrupted)
        _check_finite(state, loss)
        state.record_step(loss, samples, correct)
        _call_due(due, state.global_step, loss)
        _check_interrupt(state, callbacks, interrupted)
        if state.stop_requested:
            break


# At most this many steps per compiled call: the loop looks at the machine's load
# (adapt_threads), Ctrl-C and the clock between calls; 256 nielsen steps take ~7 ms.
COMPILED_STEPS_MAX = 256


def _compiled_steps(model, source):
    """The model's multi-step runner for this in-memory epoch, or None (streams, layers other
    than Dense, data the one-call step cannot read as it is)."""
    if not hasattr(source, "rows"):
        return None
    x, y, _ = source.rows()
    return model._step_runner(x, y, source.batch_size)


def _train_epoch_compiled(model, state, source, run, callbacks):
    """The epoch's full batches in compiled runs of steps, cut where a callback asks for a
    call (Checkpoint every n steps, EarlyStopping's per-step threshold, the progress bar);
    the short last batch, if any, through train_step. Bit-identical to _train_epoch."""
    _, _, order = source.rows()
    full, batch_size = source.full_batches(), source.batch_size
    due = _due_calls(callbacks, state.global_step)
    while state.step_in_epoch < full:
        adapt_threads()
        count = max(1, min(full - state.step_in_epoch, COMPILED_STEPS_MAX,
                           *(step - state.global_step for step in due.values())))
        losses, corrects = run(order, state.step_in_epoch, count)
        if not math.isfinite(losses[-1]):  # the run stopped there: the steps before it count
            state.record_steps(losses[:-1], batch_size, corrects[:-1])
            _check_finite(state, losses[-1])  # raises
        state.record_steps(losses, batch_size, corrects)
        _call_due(due, state.global_step, losses[-1])
        _check_interrupt(state, callbacks, state.interrupted)
        if state.stop_requested:
            return
    _train_epoch(model, state, source.batches_from(state.step_in_epoch), callbacks, None)


def _due_calls(callbacks, step):
    """{callback: the global step after which it next wants on_step_end}, for those that do."""
    due = {c: c.next_step_call(step) for c in callbacks}
    return {c: s for c, s in due.items() if s is not None}


def _call_due(due, step, loss):
    """Call on_step_end of the callbacks due at `step` and ask each for its next step."""
    for c, at in list(due.items()):
        if at <= step:
            c.on_step_end(step, loss)
            after = c.next_step_call(step)
            if after is None:
                del due[c]
            else:
                due[c] = after


def _check_finite(state, loss):
    """Raise TrainingDiverged when the loss of the step after state.global_step is not finite."""
    if math.isfinite(loss):
        return
    raise TrainingDiverged(f"fit: loss is {loss} at step {state.global_step + 1} "
                           f"(epoch {state.epoch}); lower the learning rate")


def _epoch_logs(model, state, validation_data):
    seen, history = max(state.seen, 1), state.history
    seconds = state.seconds = state.epoch_seconds()  # training time only, not validation
    logs = {"train_loss": state.loss_sum / seen,
            "train_accuracy": None if state.correct is None else state.correct / seen,
            "samples_per_second": state.seen / seconds if seconds > 0 else 0.0, "seconds": seconds,
            "val_loss": None, "val_accuracy": None, "val_correct": None, "val_total": None}
    history.epoch_train_loss.append(logs["train_loss"])
    history.epoch_train_accuracy.append(logs["train_accuracy"])
    history.samples_per_second.append(logs["samples_per_second"])
    history.epoch_seconds.append(seconds)
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


def _check_interrupt(state, callbacks, interrupted):
    """After a whole step (or epoch end): a deferred Ctrl-C lets callbacks save, then stops.
    `interrupted`: state.interrupted, or in a distributed run whether any rank was."""
    if interrupted:
        for c in callbacks:
            c.on_interrupt(state.global_step)
        raise KeyboardInterrupt(f"interrupted at step {state.global_step}")


@contextlib.contextmanager
def _deferred_sigint(state, enabled):
    """With a callback that saves on Ctrl-C, Ctrl-C sets a flag that the loop honours after the
    current step (a KeyboardInterrupt mid-step could leave weights updated but the step
    uncounted). A second Ctrl-C interrupts at once. Only in the main thread, only over Python's
    default handler."""
    if not enabled or threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def handler(signum, frame):
        if state.interrupted:
            raise KeyboardInterrupt("interrupted twice")
        state.interrupted = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
