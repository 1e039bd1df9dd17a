"""Issue 16, item 1: no attribute, file or argument reaches the compiled step with optimizer
state it cannot handle (the segfault of a momentum set after the model was built)."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastnn
from fastnn import SGD, Adam, Dense, RandomSearch, Sequential, SoftmaxCrossEntropy
from fastnn import _train_step
from fastnn import load_checkpoint
from fastnn.optim import FusedUpdate
from fastnn.serialize import DIGEST, ModelFileError, _digest


def _dense_model(optimizer, inputs=784):
    return Sequential([Dense(10)], loss=SoftmaxCrossEntropy(), optimizer=optimizer,
                      input_shape=(inputs,), seed=0)


def test_the_issue_repro_trains_in_a_subprocess():
    code = textwrap.dedent("""
        import numpy as np
        from fastnn import Dense, SGD, Sequential, SoftmaxCrossEntropy
        m = Sequential([Dense(10)], loss=SoftmaxCrossEntropy(), optimizer=SGD(lr=0.1), input_shape=(784,))
        m.optimizer.momentum = 0.9
        m.fit(np.zeros((100, 784), np.float32), np.zeros(100, np.int64), verbose=0)
        assert m.optimizer.velocity is not None and np.isfinite(m.params).all()
        print("trained")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trained" in done.stdout


def test_momentum_raised_after_build_allocates_velocity_and_matches_a_momentum_model(rng):
    x = rng.random((64, 12), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    late, early = _dense_model(SGD(0.1), 12), _dense_model(SGD(0.1, momentum=0.9), 12)
    late.optimizer.momentum = 0.9
    assert late.optimizer.velocity.shape == late.params.shape and not late.optimizer.velocity.any()
    for _ in range(3):
        assert late.train_step(x, y) == early.train_step(x, y)
    np.testing.assert_array_equal(late.params, early.params)


def test_a_step_made_without_velocity_refuses_momentum_instead_of_crashing(rng):
    model = _dense_model(SGD(0.1), 12)
    x, y = rng.random((8, 12), dtype=np.float32), rng.integers(0, 10, 8)
    model.train_step(x, y)
    step = model._fused_steps[8]
    with pytest.raises(ValueError, match="velocity"):
        step.step(x, y, 0.1, 0.9, 0.0, 0.0, 0.0, 0.0, 0, 1)
    assert not step.uses_state(np.zeros_like(model.params), None)
    assert step.uses_state(*model.optimizer.fused_state())


def test_the_one_call_step_checks_its_arrays(rng):
    model = _dense_model(Adam(), 12)
    x, y = rng.random((8, 12), dtype=np.float32), rng.integers(0, 10, 8)
    model.train_step(x, y)
    step = model._fused_steps[8]
    with pytest.raises(ValueError, match="step counts from 1"):
        step.step(x, y, 0.1, 0.0, 0.0, 0.9, 0.999, 1e-8, 0, 1)
    with pytest.raises(ValueError, match="columns"):
        step.step(np.zeros((8, 11), np.float32), y, 0.1, 0.0, 0.0, 0.9, 0.999, 1e-8, 1, 1)
    buffers = [_train_step.DenseBuffers(np.empty((8, 10), np.float32), None, model.layers[0].params["w"],
                                        model.layers[0].params["b"], model.layers[0].grads["w"],
                                        model.layers[0].grads["b"], 0)]
    dout = np.empty((8, 10), np.float32)
    kinds = (_train_step.LOSS_KINDS["SoftmaxCrossEntropy"], _train_step.OPTIMIZER_KINDS["Adam"])
    with pytest.raises(ValueError, match="state1 has 5 elements"):
        _train_step.DenseTrainStep(buffers, dout, model.params, model.grads, np.zeros(5, np.float32),
                                   np.zeros_like(model.params), *kinds)
    with pytest.raises(ValueError, match="m and v"):
        _train_step.DenseTrainStep(buffers, dout, model.params, model.grads, None, None,
                                   *kinds).step(x, y, 0.1, 0.0, 0.0, 0.9, 0.999, 1e-8, 1, 1)
    with pytest.raises(ValueError, match="fit"):
        _train_step.DenseTrainStep(buffers, np.empty((9, 10), np.float32), model.params, model.grads,
                                   model.optimizer.m, model.optimizer.v, *kinds)
    with pytest.raises(ValueError, match="columns must be one of"):
        _train_step.DenseTrainStep(buffers, dout, model.params, model.grads, model.optimizer.m,
                                   model.optimizer.v, *kinds, columns="some")


@pytest.mark.parametrize("optimizer,name,value,error,word", [
    (SGD, "lr", -5, ValueError, ">= 0"), (SGD, "momentum", 7, ValueError, "[0, 1)"),
    (SGD, "momentum", float("nan"), ValueError, "finite"), (SGD, "weight_decay", -1e-3, ValueError, ">= 0"),
    (SGD, "lr", "0.1", TypeError, "number"), (SGD, "lr", True, TypeError, "number"),
    (Adam, "beta1", 1.0, ValueError, "[0, 1)"), (Adam, "beta2", -0.1, ValueError, "[0, 1)"),
    (Adam, "eps", float("inf"), ValueError, "finite"), (Adam, "t", -1, ValueError, ">= 0"),
    (Adam, "t", 2.0, TypeError, "int"), (RandomSearch, "step_size", 0, ValueError, "> 0"),
])
def test_every_setting_is_validated_on_every_assignment(optimizer, name, value, error, word):
    opt = optimizer()
    before = getattr(opt, name)
    with pytest.raises(error, match=f"{optimizer.__name__}: {name} .*{re_escape(word)}"):
        setattr(opt, name, value)
    assert getattr(opt, name) == before


def re_escape(text):
    import re
    return re.escape(text)


def test_constructor_arguments_go_through_the_same_checks():
    with pytest.raises(ValueError, match="SGD: momentum"):
        SGD(momentum=1.0)
    with pytest.raises(ValueError, match="RandomSearch: step must be a finite number > 0"):
        RandomSearch(step=-1)
    assert SGD(lr=np.float32(0.5), momentum=0).lr == 0.5


def test_start_step_advances_adam_explicitly_and_names_the_update():
    adam = Adam(lr=0.01, beta1=0.5)
    _dense_model(adam, 4)
    assert adam.t == 0 and adam.fused_state()[0] is adam.m  # reading state does not count a step
    update = adam.start_step()
    assert isinstance(update, FusedUpdate) and (update.step, update.lr, update.beta1) == (1, 0.01, 0.5)
    assert adam.t == 1
    sgd = SGD(0.1, momentum=0.5, weight_decay=0.01)
    assert tuple(sgd.start_step()) == (0.1, 0.5, 0.01, 0.0, 0.0, 0.0, 0)  # DenseTrainStep.step's order


@pytest.mark.parametrize("state,word", [
    ({"momentum": 0.5}, "unknown state 'momentum'"), ({"lr": -5}, "unknown state 'lr'"),
    ({"velocity": np.zeros(3, np.float32)}, "shape|expected"),
    ({"velocity": np.full(50, np.nan, np.float32)}, "non-finite"),
    ({"velocity": np.zeros(50, np.float64)}, "float64"),
])
def test_sgd_load_state_dict_refuses_what_state_dict_never_writes(state, word):
    opt = SGD(0.1, momentum=0.9)
    _dense_model(opt, 4)
    velocity = opt.velocity.copy()
    with pytest.raises((ValueError, TypeError), match=word):
        opt.load_state_dict(state)
    np.testing.assert_array_equal(opt.velocity, velocity)
    assert (opt.lr, opt.momentum) == (0.1, 0.9)


@pytest.mark.parametrize("state,word", [
    ({"t": -1}, ">= 0"), ({"t": "3"}, "int"), ({"v": -np.ones(50, np.float32)}, "negative"),
    ({"m": np.ones((5, 10), np.float32)}, "expected"), ({"beta1": 2.0}, "unknown"),
])
def test_adam_load_state_dict_checks_types_ranges_and_shapes(state, word):
    opt = Adam()
    _dense_model(opt, 4)
    with pytest.raises((ValueError, TypeError), match=word):
        opt.load_state_dict({"m": np.ones(50, np.float32), **state})
    assert opt.t == 0 and not opt.m.any()  # nothing was applied


def test_state_dict_round_trips_for_every_optimizer(rng):
    x, y = rng.random((16, 4), dtype=np.float32), rng.integers(0, 10, 16)
    for make in (lambda: SGD(0.1, momentum=0.9), Adam, lambda: RandomSearch(seed=1)):
        a, b = _dense_model(make(), 4), _dense_model(make(), 4)
        a.train_step(x, y)
        b.optimizer.load_state_dict(a.optimizer.state_dict())
        b.params[...] = a.params
        assert a.train_step(x, y) == b.train_step(x, y)
        np.testing.assert_array_equal(a.params, b.params)
    with pytest.raises(ValueError, match="rng_state"):
        RandomSearch().load_state_dict({"rng_state": {"bit_generator": "PCG64", "state": 5}})


# -- hand-made files: fastnn's own save, the JSON edited, the digest recomputed --------------------
def edit_architecture(path, edit):
    """Rewrite the JSON of a file fastnn wrote with `edit(config)`, digest recomputed."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    config = json.loads(arrays["architecture"].tobytes())
    edit(config)
    arrays["architecture"] = np.frombuffer(json.dumps(config).encode(), np.uint8)
    arrays[DIGEST] = np.frombuffer(_digest(arrays), np.uint8)
    with open(path, "wb") as f:  # a file object: np.savez would append .npz to the name
        np.savez(f, **arrays)
    return path


def _edited_file(tmp_path, model, edit):
    model.save(tmp_path / "m.fastnn")
    return edit_architecture(tmp_path / "m.fastnn", edit)


@pytest.mark.parametrize("edit,word", [
    (lambda c: c.__setitem__("optimizer_state", {"momentum": 0.5}), "unknown state 'momentum'"),
    (lambda c: c.__setitem__("optimizer_state", {"lr": -5}), "unknown state 'lr'"),
    (lambda c: c["optimizer"]["config"].__setitem__("lr", -5), "lr must be"),
    (lambda c: c["optimizer"]["config"].__setitem__("momentum", 7), "momentum must be"),
], ids=["state-momentum", "state-lr", "config-lr", "config-momentum"])
def test_model_file_with_bad_optimizer_settings_is_refused(tmp_path, edit, word):
    path = _edited_file(tmp_path, _dense_model(SGD(0.1), 4), edit)
    with pytest.raises(ModelFileError, match=re_escape(word)):
        fastnn.load(path)


def test_checkpoint_with_momentum_in_its_optimizer_state_is_refused(tmp_path, rng):
    x, y = rng.random((40, 4), dtype=np.float32), rng.integers(0, 10, 40)
    model = _dense_model(SGD(0.1), 4)
    model.fit(x, y, epochs=1, batch_size=20, verbose=0, callbacks=[fastnn.Checkpoint(tmp_path / "c.ckpt")])
    edit_architecture(tmp_path / "c.ckpt", lambda c: c.__setitem__("optimizer_state", {"momentum": 0.5}))
    with pytest.raises(ModelFileError, match="unknown state 'momentum'"):
        load_checkpoint(tmp_path / "c.ckpt")
