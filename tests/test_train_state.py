"""One owner per piece of state: the run's TrainState, callbacks that see model + state, models
that copy and pickle whole, labels and validation data checked before the first step, and the
model's in-place plan (activations never overwrite a buffer someone still reads)."""
import copy
import pickle

import numpy as np
import pytest

import fastnn
from fastnn import (SGD, Adam, Conv2D, Dense, EarlyStopping, Flatten, MaxPool2D, ReLU, Sequential,
                    Sigmoid, SoftmaxCrossEntropy, Tanh)
from fastnn.train.callbacks import Callback, Checkpoint


def problem(n=120, features=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)).astype(np.float32)
    return x, rng.integers(0, classes, n).astype(np.int64)


def mlp(optimizer=None, seed=0):
    return Sequential([Dense(8, "relu"), Dense(3)], loss=SoftmaxCrossEntropy(),
                      optimizer=optimizer or Adam(0.01), input_shape=(6,), seed=seed)


@pytest.mark.parametrize("dup", [pickle.loads, copy.deepcopy])
def test_pickle_and_deepcopy_carry_weights_and_optimizer_state(dup):
    x, y = problem()
    a = mlp()
    a.fit(x, y, epochs=2, batch_size=16, seed=1, verbose=0)
    b = dup(pickle.dumps(a)) if dup is pickle.loads else dup(a)
    assert b is not a and not np.shares_memory(a.params, b.params)
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(a.optimizer.m, b.optimizer.m)
    a.fit(x, y, epochs=1, batch_size=16, seed=2, verbose=0)
    b.fit(x, y, epochs=1, batch_size=16, seed=2, verbose=0)
    np.testing.assert_array_equal(a.params, b.params)  # Adam's step counter came along too


def test_callbacks_see_the_model_and_the_run_state_and_stop_it():
    x, y = problem()
    seen = []

    class Watch(Callback):
        def on_step_end(self, step, loss):
            seen.append((step, self.state.global_step, self.state.epoch, self.state.batch_size))
            if step == 5:
                self.state.request_stop("enough")

    history = mlp().fit(x, y, epochs=3, batch_size=50, verbose=0, callbacks=[Watch()])
    assert seen[-1] == (5, 5, 2, 50) and history.stopped_reason == "enough"
    assert len(history.step_loss) == 5


def test_strided_labels_train_like_contiguous_ones_and_bad_labels_are_named():
    x, y = problem()
    a, b = mlp(SGD(0.1)), mlp(SGD(0.1))
    ys = np.stack([y, y], axis=1)[:, 0]  # a strided view
    a.fit(x, ys, epochs=2, batch_size=16, seed=0, verbose=0)
    b.fit(x, y.copy(), epochs=2, batch_size=16, seed=0, verbose=0)
    np.testing.assert_array_equal(a.params, b.params)
    mlp().fit(x[::-1], y[::-1].astype(np.uint8), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"1-D.*y.ravel\(\)"):
        mlp().fit(x, y[:, None], verbose=0)
    assert mlp().evaluate(x, ys)["total"] == len(x)


def test_validation_data_is_checked_before_the_first_step():
    x, y = problem()
    steps = []

    class Count(Callback):
        def on_step_end(self, step, loss):
            steps.append(step)

    with pytest.raises(ValueError, match="validation_data"):
        mlp().fit(x, y, epochs=1, validation_data=(x[:, :5], y), callbacks=[Count()], verbose=0)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        mlp().fit(x, y, epochs=1, validation_data=(x, y + 5), callbacks=[Count()], verbose=0)
    assert steps == []


def test_the_same_layer_object_twice_is_refused():
    d = Dense(6)
    with pytest.raises(ValueError, match="appears twice"):
        Sequential([d, ReLU(), d], input_shape=(6,))


@pytest.mark.parametrize("layers,in_place", [
    ([Dense(4), ReLU(), Sigmoid(), Dense(2)], [False, True, False, False]),
    ([Dense(4, "tanh"), ReLU(), Dense(2)], [False, False, False]),
    ([Flatten(), ReLU(), Dense(2)], [False, False, False]),
    ([ReLU(), Tanh(), Dense(2)], [False, False, False]),
    ([Dense(4), Flatten(), Tanh(), Tanh(), Dense(2)], [False, False, True, False, False]),
])
def test_activations_run_in_place_only_on_a_buffer_nobody_reads_again(layers, in_place):
    model = Sequential(layers, loss=SoftmaxCrossEntropy(), optimizer=SGD(0.1), input_shape=(3,),
                       dtype=np.float64, seed=0)
    assert [layer.in_place for layer in model.layers] == in_place
    x, y = problem(8, 3, 2)
    assert fastnn.gradcheck(model, x.astype(np.float64), y)["max_rel_error"] < 1e-5


def test_conv_activation_chains_are_exact():
    model = Sequential([Conv2D(3, 3), Tanh(), Tanh(), MaxPool2D(2), Flatten(), ReLU(), Dense(2)],
                       loss=SoftmaxCrossEntropy(), optimizer=SGD(0.1), input_shape=(1, 6, 6),
                       dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 6, 6))
    assert fastnn.gradcheck(model, x, np.array([0, 1, 1, 0]))["max_rel_error"] < 1e-5


def test_early_stopping_state_survives_in_the_run_state():
    x, y = problem()
    stop = EarlyStopping(monitor="train_loss", patience=0, min_delta=10.0)
    history = mlp().fit(x, y, epochs=5, batch_size=40, verbose=0, callbacks=[stop])
    assert len(history.epoch_train_loss) == 2 and "did not improve" in history.stopped_reason


def test_direct_calls_check_their_batch_and_never_reach_the_kernels_with_bad_labels():
    model = Sequential([Dense(2, "relu"), ReLU(), Dense(3)], loss=SoftmaxCrossEntropy(),
                       optimizer=SGD(0.1), input_shape=(1,), seed=0)
    x = np.ones((2, 1), np.float32)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        model.train_step(x, np.array([0, 7]))  # the layer path indexes with labels
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        model.evaluate_batches([(x, np.array([0, 9]))])
    loss32 = model.copy().train_step(x, np.array([0, 1], np.int32))
    assert loss32 == model.train_step(x, np.array([0, 1]))
    assert model.forward(np.ones((2, 1))).dtype == np.float32  # converted, not a Cython error
    assert model.forward(np.ones((4, 1), np.float32)[::2]).shape == (2, 3)


def test_bce_probabilities_do_not_overflow():
    from fastnn import BinaryCrossEntropy
    with np.errstate(over="raise"):
        p = BinaryCrossEntropy().probabilities(np.array([[-1000.0], [0.0], [1000.0]], np.float32))
    np.testing.assert_allclose(p[:, 0], [0.0, 0.5, 1.0])


def test_a_learning_rate_changed_between_steps_is_used_by_the_next_step():
    x, y = problem()
    a, b = mlp(SGD(0.1)), mlp(SGD(0.1))

    class Decay(Callback):
        def on_step_end(self, step, loss):
            self.model.optimizer.lr = 0.1 / (1 + step)

    a.fit(x, y, epochs=1, batch_size=40, shuffle=False, verbose=0, callbacks=[Decay()])
    for step, start in enumerate(range(0, 120, 40)):
        b.train_step(x[start:start + 40], y[start:start + 40])
        b.optimizer.lr = 0.1 / (2 + step)
    np.testing.assert_array_equal(a.params, b.params)


def test_callbacks_are_called_at_the_steps_they_ask_for():
    class Quiet(Callback):
        def on_epoch_end(self, epoch, logs):
            pass

    class Loud(Callback):
        def on_step_end(self, step, loss):
            pass

    assert Quiet().next_step_call(4) is None and Loud().next_step_call(4) == 5
    assert fastnn.ProgressBar(10, verbose=1).next_step_call(3) is None  # not a terminal here
    assert Checkpoint("unused", every_n_steps=5).next_step_call(4) == 5
    assert Checkpoint("unused", every_n_steps=5).next_step_call(5) == 10
    assert Checkpoint("unused", every_n_steps=None).next_step_call(5) is None


@pytest.mark.parametrize("name", ["mlp", "nielsen", "spiral", "lenet"])
def test_training_is_bit_identical_at_any_thread_count(name, threads):
    """The automatic thread count changes with the machine's load mid-run: results must not."""
    from fastnn import zoo
    preset = zoo.get(name)
    rng = np.random.default_rng(0)
    x = rng.random((256,) + preset.input_shape, dtype=np.float32)
    y = rng.integers(0, 2 if name == "spiral" else 10, 256)
    params = []
    for n in (1, 2):
        threads(n)
        model = preset.build(seed=0)
        model.fit(x, y, epochs=1, batch_size=preset.batch_size, seed=0, verbose=0)
        params.append(model.params.copy())
    np.testing.assert_array_equal(params[0], params[1])
