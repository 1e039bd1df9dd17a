"""fit's compiled runs of steps (DenseTrainStep.run): the same training as step by step.

fit trains a float32 Dense stack on in-memory arrays in compiled runs of steps, cut where a
callback asks for a call; the reference here is the step-by-step loop (the model's runner
switched off), which every other test of fit exercises."""
import io
import os
import signal

import numpy as np
import pytest

from fastnn import (MSE, SGD, Adam, Checkpoint, Dense, EarlyStopping, ProgressBar, Sequential,
                    SoftmaxCrossEntropy, TrainingDiverged, _train_step, load_checkpoint, resume)
from fastnn.network import Network
from fastnn.train.callbacks import Callback
from fastnn.train import loop

OPTIMIZERS = {"sgd": lambda: SGD(0.1), "sgd-momentum-decay": lambda: SGD(0.05, momentum=0.9, weight_decay=1e-3),
              "adam": lambda: Adam(0.01)}


def problem(n=203, features=12, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)).astype(np.float32)
    x[:, :3] = 0  # all-zero columns: the first layer's column skipping takes part
    return x, rng.integers(0, classes, n)


def model(optimizer="sgd", loss=SoftmaxCrossEntropy, features=12):
    return Sequential([Dense(16, activation="relu"), Dense(9, activation="sigmoid"), Dense(4)],
                      loss=loss(), optimizer=OPTIMIZERS[optimizer](), input_shape=(features,), seed=1)


@pytest.fixture
def step_by_step(monkeypatch):
    """Run fit's reference loop: no compiled runner."""
    def switch_off():
        monkeypatch.setattr(Network, "_step_runner", lambda self, x, y, batch_size: None)
    return switch_off


def fit_both(step_by_step, make, x, y, **kwargs):
    compiled = make()
    h1 = compiled.fit(x, y, verbose=0, **kwargs)
    step_by_step()
    reference = make()
    h2 = reference.fit(x, y, verbose=0, **kwargs)
    return (compiled, h1), (reference, h2)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffled", "in-order"])
@pytest.mark.parametrize("batch", [8, 40, 203], ids=["batch8", "batch40", "one-batch"])
def test_compiled_epochs_equal_step_by_step(step_by_step, optimizer, shuffle, batch):
    x, y = problem()
    (a, ha), (b, hb) = fit_both(step_by_step, lambda: model(optimizer), x, y, epochs=3,
                                batch_size=batch, shuffle=shuffle, seed=3)
    np.testing.assert_array_equal(a.params, b.params)
    assert ha.step_loss == hb.step_loss and len(ha.step_loss) == 3 * -(-203 // batch)
    assert ha.epoch_train_loss == hb.epoch_train_loss and ha.epoch_train_accuracy == hb.epoch_train_accuracy
    if optimizer == "adam":
        assert a.optimizer.t == b.optimizer.t == len(ha.step_loss)


def test_mse_loss_and_the_compiled_run_really_ran(step_by_step, monkeypatch):
    x, y = problem(n=160)
    calls = []
    train_step = Sequential.train_step
    monkeypatch.setattr(Sequential, "train_step", lambda self, *a, **k: calls.append(1) or train_step(self, *a, **k))
    (a, ha), (b, hb) = fit_both(step_by_step, lambda: model(loss=MSE), x, y, epochs=2, batch_size=32, seed=0)
    np.testing.assert_array_equal(a.params, b.params)
    assert ha.step_loss == hb.step_loss
    assert len(calls) == 10  # all from the reference run: the compiled one made no train_step call


class Every(Callback):
    """on_step_end every `n` steps, recording (step, loss)."""

    def __init__(self, n):
        super().__init__()
        self.n, self.seen = n, []

    def next_step_call(self, step):
        return (step // self.n + 1) * self.n

    def on_step_end(self, step, loss):
        self.seen.append((step, loss, self.state.global_step))


def test_callbacks_are_called_at_their_steps_with_that_steps_loss(step_by_step):
    x, y = problem()
    a, b = Every(7), Every(7)
    ha = model().fit(x, y, epochs=3, batch_size=8, seed=1, verbose=0, callbacks=[a])
    step_by_step()
    model().fit(x, y, epochs=3, batch_size=8, seed=1, verbose=0, callbacks=[b])
    assert a.seen == b.seen and [s for s, _, _ in a.seen] == list(range(7, 3 * 26 + 1, 7))
    assert all(loss == ha.step_loss[step - 1] and at == step for step, loss, at in a.seen)


def test_early_stopping_threshold_stops_at_the_same_step(step_by_step):
    x, y = problem()
    stop = lambda: [EarlyStopping(loss_threshold=1.2)]  # noqa: E731
    (a, ha), (b, hb) = fit_both(step_by_step, model, x, y, epochs=50, batch_size=8, seed=1, callbacks=stop())
    assert ha.step_loss == hb.step_loss and ha.step_loss[-1] < 1.2 and min(ha.step_loss[:-1]) >= 1.2
    np.testing.assert_array_equal(a.params, b.params)


def test_divergence_raises_at_the_same_step(step_by_step):
    x, y = problem()
    x[150:] = 3e38  # rows that overflow the forward pass when they come
    results = []
    for run in range(2):
        if run:
            step_by_step()
        m = model()
        with pytest.raises(TrainingDiverged, match="at step") as e:
            m.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
        results.append((str(e.value), m.params.copy()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


WIDE = 256  # x rows of 1 KB


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("batch", [64, 8], ids=["chunks-of-4", "chunks-of-32"])
def test_two_thread_runs_gather_ahead_and_equal_one_thread_step_by_step(step_by_step, optimizer, batch, threads):
    # On two threads a run of a stack whose GEMMs stay on one thread gathers the next chunk of
    # batches on the second thread (DenseTrainStep.pipelined); training must not change by a bit.
    x, y = problem(n=403, features=WIDE)
    threads(2)
    a = model(optimizer, features=WIDE)
    ha = a.fit(x, y, epochs=2, batch_size=batch, shuffle=True, seed=5, verbose=0)
    plan = a._fused_plan(batch)
    assert plan.pipelined and plan.chunk_steps == _train_step.PIPELINE_CHUNK_BYTES // (batch * WIDE * 4)
    threads(1)
    step_by_step()
    b = model(optimizer, features=WIDE)
    hb = b.fit(x, y, epochs=2, batch_size=batch, shuffle=True, seed=5, verbose=0)
    np.testing.assert_array_equal(a.params, b.params)
    assert ha.step_loss == hb.step_loss and len(ha.step_loss) == 2 * -(-403 // batch)


@pytest.mark.parametrize("bad_row", [300, 40], ids=["later-chunk", "first-chunk"])
def test_two_thread_run_stops_at_the_diverging_step(step_by_step, bad_row, threads):
    x, y = problem(n=403, features=WIDE)
    x[bad_row:] = 3e38
    results = []
    for run in range(2):
        threads(2 - run)
        if run:
            step_by_step()
        m = model(features=WIDE)
        with pytest.raises(TrainingDiverged, match="at step") as e:
            m.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
        results.append((str(e.value), m.params.copy()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_tiny_stacks_and_split_gemms_are_not_pipelined():
    tiny = Sequential([Dense(10, activation="sigmoid"), Dense(3)], loss=SoftmaxCrossEntropy(),
                      optimizer=SGD(1.0), input_shape=(2,))
    assert tiny._fused_plan(30).tiny and not tiny._fused_plan(30).pipelined
    big = Sequential([Dense(600, activation="relu"), Dense(4)], loss=SoftmaxCrossEntropy(),
                     optimizer=SGD(0.1), input_shape=(WIDE,))
    assert not big._fused_plan(64).pipelined  # 64 x 600 x 256 = 9.8M multiply-adds: split
    assert model(features=WIDE)._fused_plan(64).pipelined


def test_checkpoints_every_n_steps_resume_bit_identically(tmp_path, monkeypatch):
    x, y = problem()
    full = model("adam")
    history = full.fit(x, y, epochs=3, batch_size=8, seed=2, verbose=0)
    path = tmp_path / "c.ckpt"
    check = loop._check_interrupt

    def crash_after_38(state, callbacks, interrupted):  # after a compiled run of steps 36-38
        if state.global_step >= 38:
            raise KeyboardInterrupt("crash")
        check(state, callbacks, interrupted)

    monkeypatch.setattr(loop, "_check_interrupt", crash_after_38)
    with pytest.raises(KeyboardInterrupt):
        model("adam").fit(x, y, epochs=3, batch_size=8, seed=2, verbose=0,
                          callbacks=[Checkpoint(path, every_n_steps=5, at_end=False)])
    monkeypatch.undo()
    resumed, h = resume(path, x, y, verbose=0)
    np.testing.assert_array_equal(resumed.params, full.params)
    assert h.step_loss == history.step_loss


# -- DenseTrainStep.run checks what it is given: never an out-of-bounds read ----------------------
@pytest.fixture
def plan():
    m = model()
    x, y = problem(n=64)
    m.fit(x, y, epochs=1, batch_size=8, verbose=0)
    return m._fused_plan(8), x, y


def run(plan, x, y, order, first, steps):
    losses, correct = np.empty(steps), np.empty(steps, np.int64)
    return plan.run(x, y, order, first, losses, correct, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 1, 1)


def test_run_refuses_rows_and_labels_out_of_range(plan):
    step, x, y = plan
    order = np.arange(64)
    assert run(step, x, y, order, 0, 8) == 8 and run(step, x, y, None, 2, 6) == 6
    with pytest.raises(ValueError, match="order holds row 64"):
        run(step, x, y, np.r_[order[:-1], 64], 7, 1)
    with pytest.raises(ValueError, match="need 72 rows"):
        run(step, x, y, order, 1, 8)
    with pytest.raises(ValueError, match="need 72 rows"):
        run(step, x, y, None, 8, 1)
    bad = y.copy()
    bad[5] = 4
    with pytest.raises(ValueError, match="labels must be in"):
        run(step, x, bad, order, 0, 1)
    with pytest.raises(ValueError, match="x must be"):
        run(step, x[:, :5].copy(), y, order, 0, 1)
    with pytest.raises(ValueError, match="non-empty"):
        run(step, x, y, order, 0, 0)
    assert isinstance(step, _train_step.DenseTrainStep)


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal_moves_in_strides_and_changes_nothing(step_by_step):
    x, y = problem(n=2000)
    calls = []

    class Bar(ProgressBar):
        def on_step_end(self, step, loss):
            calls.append(step)
            super().on_step_end(step, loss)

    terminal = Terminal()
    shown = model().fit(x, y, epochs=2, batch_size=8, seed=1, verbose=0,
                        callbacks=[Bar(steps_per_epoch=250, verbose=1, stream=terminal)])
    assert "/250" in terminal.getvalue()  # tqdm drew the bar
    stride = ProgressBar.STRIDE  # counted from each epoch's start (250 steps an epoch)
    assert calls == list(range(stride, 251, stride)) + list(range(250 + stride, 501, stride))
    step_by_step()
    plain = model().fit(x, y, epochs=2, batch_size=8, seed=1, verbose=0)
    assert shown.step_loss == plain.step_loss


def test_ctrl_c_during_the_last_validation_stops_and_saves(tmp_path):
    """A Ctrl-C that fit deferred while it validated the last epoch still stops the run and
    saves: it is looked at after the epoch's logs too, not only after steps."""
    x, y = problem()
    path = tmp_path / "c.ckpt"

    class Validation:
        passes = 0

        def __iter__(self):
            Validation.passes += 1
            if Validation.passes == 2:  # the last epoch's validation
                os.kill(os.getpid(), signal.SIGINT)
            yield x[:50], y[:50]

    # Python's own Ctrl-C handler, as in a terminal (a shell's background job ignores SIGINT)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            model().fit(x, y, epochs=2, batch_size=8, verbose=0, validation_data=Validation(),
                        callbacks=[Checkpoint(path, every_n_steps=None, at_end=False)])
    finally:
        signal.signal(signal.SIGINT, previous)
    _, (state, _), _ = load_checkpoint(path)
    assert state["global_step"] == 2 * 26 and state["epoch_done"]
