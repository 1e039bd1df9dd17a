"""Any network a user composes is as correct as the presets: properties over random valid
networks (tests/networks.py) against the float64 numpy oracle (tests/reference/net.py).

(a) output, loss and every parameter gradient equal the oracle's; (b) optimizer steps (SGD with
momentum and weight decay, Adam) equal the oracle's update; (c) no public call modifies the
caller's x or y, whatever their layout or dtype, and the inference calls give the oracle's
results; (d) the one-call step of float32 Dense stacks equals the layer-by-layer path.

Each property runs 100-200 derandomized examples in the normal run (seconds) and 2000 under
`-m slow` (the "composition-slow" profile in tests/networks.py).
"""
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import networks as nw
import reference as ref
from fastnn import SGD, Adam, Dense, Flatten, ReLU, Sequential, Sigmoid, SoftmaxCrossEntropy, gradcheck

normal, SLOW = nw.normal, nw.SLOW

# Largest error against the float64 oracle, relative to each array's scale (networks.scaled_error).
# float32: the worst over 1000 random networks (with activations kept out of place) was 4e-5 for
# gradients and 3e-6 for outputs; over 2000 deeper ones, 5.8e-4 for a bias gradient (a sum over the
# batch that cancels) under three chained sigmoids. float64: 1.2e-13 and 1.5e-14.
TOL = {np.dtype(np.float32): {"output": 5e-5, "loss": 1e-5, "grads": 2e-3, "update": 2e-3},
       np.dtype(np.float64): {"output": 1e-12, "loss": 1e-12, "grads": 1e-10, "update": 1e-10}}


def _optimizers():
    one_of = st.sampled_from
    sgd = st.fixed_dictionaries({"lr": one_of([0.01, 0.1, 0.5]), "momentum": one_of([0.0, 0.9]),
                                 "weight_decay": one_of([0.0, 1e-3, 0.1])})
    adam = st.fixed_dictionaries({"lr": one_of([1e-3, 0.05]), "beta1": one_of([0.9, 0.5]),
                                  "beta2": one_of([0.999, 0.9]), "eps": one_of([1e-8, 1e-4])})
    return st.one_of(st.tuples(st.just("sgd"), sgd), st.tuples(st.just("adam"), adam))


def _fastnn_optimizer(kind, config):
    return SGD(**config) if kind == "sgd" else Adam(**config)


def _reference(case, params, x, y):
    """The oracle's pass, with draws too close to a kink for the model's dtype discarded."""
    result = nw.reference_pass(case, params, x, y)
    assume(result["margin"] > nw.KINK_MARGIN[case.dtype])
    return result


def _assert_per_array(case, got, want, tol, what, trusted=None, slack=None):
    """Every parameter array of `got` within tol of `want` on its own scale (arrays a thousand
    times smaller than the network's largest: on that scale), beyond a per-entry `slack`.
    `trusted`: the entries to compare (all by default)."""
    # Differences within the subnormal range are rounding (a loss driven to exactly 0 leaves
    # gradients of ~1e-40 on one path, 0 on the other): the floor lets any |got - want| below the
    # dtype's smallest normal number pass.
    floor = max(1e-3 * float(np.max(np.abs(want), initial=0.0)), float(np.finfo(np.asarray(want).dtype).tiny) / tol)
    slack = np.zeros(np.shape(want)) if slack is None else slack
    for name, part in nw.param_slices(case):
        keep = slice(None) if trusted is None else trusted[part]
        error = nw.scaled_error(got[part][keep], want[part][keep], floor, slack[part][keep])
        assert error <= tol, f"{what} of {name}: error {error:.3g} > {tol:g}\n{case.code()}"


def _adam_trusted(trusted, grads, noise, before, after, lr):
    """Adam divides by the gradient's own size: where g is not well above its rounding noise, the
    step's size and sign are as right in the model as in the oracle, so those entries (from then
    on: the moments remember) are only bounded by a few lr."""
    trusted &= np.abs(grads) > noise
    assert np.all(np.abs(after - before)[~trusted] <= 4 * lr)
    return trusted


def _ulp(dtype, before, after):
    """An updated parameter holds the update only to its own rounding: one ulp of each value."""
    return np.finfo(dtype).eps * (np.abs(before) + np.abs(after))


# -- (a) forward, loss and gradients -------------------------------------------------------------
def check_gradients(case):
    model = nw.build_model(case)
    x, y = nw.make_data(case)
    want = _reference(case, model.params, x, y)
    tol = TOL[case.dtype]
    output = model.forward(x, training=True)
    assert nw.scaled_error(output, want["output"], 1.0) <= tol["output"], case.code()
    assert model.loss(output, y) == pytest.approx(want["loss"], rel=tol["loss"], abs=tol["loss"]), case.code()
    model.grads[...] = np.nan  # every gradient must be written by this backward
    model.backward()
    _assert_per_array(case, model.grads, want["grads"], tol["grads"], "gradient", slack=want["noise"])


@normal(200)
@given(nw.cases(max_body=5))
def test_loss_and_gradients_equal_the_reference(case):
    check_gradients(case)


@pytest.mark.slow
@SLOW
@given(nw.cases(max_body=7))
def test_loss_and_gradients_equal_the_reference_many(case):
    check_gradients(case)


# -- (b) optimizer steps ---------------------------------------------------------------------------
def check_optimizer_steps(case, optimizer):
    """Two train_steps (momentum and Adam's moments carry over) against the oracle's updates."""
    kind, config = optimizer
    model = nw.build_model(case, _fastnn_optimizer(kind, config))
    oracle = ref.ReferenceOptimizer(kind, model.params.size, **config)
    x, y = nw.make_data(case)
    tol = TOL[case.dtype]
    trusted, noise = np.ones(model.params.size, bool), 0.0
    for _ in range(2):
        before = model.params.astype(np.float64)
        want = _reference(case, before, x, y)
        expected = oracle.step(before, want["grads"])
        assert model.train_step(x, y) == pytest.approx(want["loss"], rel=tol["loss"], abs=tol["loss"])
        assert np.all(np.isfinite(model.params)), case.code()
        slack = _ulp(case.dtype, before, model.params)
        if kind == "adam":
            trusted = _adam_trusted(trusted, want["grads"], want["noise"] / tol["update"], before,
                                    model.params, config["lr"])
        else:  # the velocity carries the gradients' noise too
            noise = config["momentum"] * noise + want["noise"]
            slack = slack + config["lr"] * noise
        _assert_per_array(case, model.params - before, expected - before, tol["update"],
                          f"{kind} {config} update", trusted, slack)


@normal(100)
@given(nw.cases(max_body=4), _optimizers())
def test_optimizer_steps_equal_the_reference(case, optimizer):
    check_optimizer_steps(case, optimizer)


@pytest.mark.slow
@SLOW
@given(nw.cases(max_body=6), _optimizers())
def test_optimizer_steps_equal_the_reference_many(case, optimizer):
    check_optimizer_steps(case, optimizer)


# -- (c) the caller's arrays are never modified ----------------------------------------------------
LAYOUTS = ("as given", "strided view", "other float dtype", "integer dtype")


def _layout(a, layout, model_dtype, keep_dtype=False):
    """`a` as the caller may pass it: (passed array, the whole memory it lives in)."""
    if layout == "strided view":
        parent = np.repeat(a, 2, axis=0)  # every other row of a twice-as-long array
        return parent[::2], parent
    if keep_dtype or layout == "as given":
        return a, a
    if layout == "integer dtype":  # e.g. raw pixels; signed, so that a ReLU would change some
        other = np.round(3 * a).astype(np.int16)
    else:
        other = a.astype(np.float64 if model_dtype == np.float32 else np.float32)
    return other, other


def _inference_results(model, case, x, y):
    """What the inference calls must return: the oracle's at the model's current weights."""
    want = nw.reference_pass(case, model.params, x.astype(case.dtype), y)
    output = want["output"]
    proba = {"sce": ref.softmax, "bce": ref.sigmoid, "mse": np.asarray}[case.loss](output)
    return want, proba


def check_arrays_untouched(case, layout, fit_batch):
    model = nw.build_model(case, SGD(0.05, momentum=0.9))
    x0, y0 = nw.make_data(case)
    x, x_memory = _layout(x0, layout, case.dtype)
    labels = y0.dtype.kind in "iu" or layout == "integer dtype"  # labels keep int64
    y, y_memory = _layout(y0, layout, case.dtype, keep_dtype=labels)
    x_before, y_before = x_memory.copy(), y_memory.copy()
    plain = layout == "as given"  # forward/train_step may refuse other layouts, never modify them
    calls = {
        "forward": lambda: model.forward(x, training=False),
        "forward(training=True)": lambda: model.forward(x, training=True),
        "predict": lambda: model.predict(x),
        "predict_proba": lambda: model.predict_proba(x),
        "predict_raw": lambda: model.predict_raw(x),
        "evaluate": lambda: model.evaluate(x, y),
        "train_step": lambda: model.train_step(x, y),
        "fit": lambda: model.fit(x, y, epochs=1, batch_size=fit_batch, validation_data=(x, y),
                                 verbose=0, seed=0),
    }
    for name, call in calls.items():
        try:
            call()
        except (ValueError, TypeError):
            if plain or not name.startswith(("forward", "train_step")):
                raise
        np.testing.assert_array_equal(x_memory, x_before, err_msg=f"{name} modified x\n{case.code()}")
        np.testing.assert_array_equal(y_memory, y_before, err_msg=f"{name} modified y\n{case.code()}")
    want, proba = _inference_results(model, case, x, y)
    tol = TOL[case.dtype]
    assume(want["margin"] > nw.KINK_MARGIN[case.dtype])
    assert nw.scaled_error(model.predict_raw(x), want["output"], 1.0) <= tol["output"], case.code()
    assert nw.scaled_error(model.predict_proba(x), proba, 1.0) <= tol["output"], case.code()
    assert model.evaluate(x, y)["loss"] == pytest.approx(want["loss"], rel=tol["loss"], abs=tol["loss"])


@normal(100)
@given(nw.cases(max_body=4), st.sampled_from(LAYOUTS), st.integers(1, 5))
def test_no_call_modifies_the_callers_arrays(case, layout, fit_batch):
    check_arrays_untouched(case, layout, fit_batch)


@pytest.mark.slow
@SLOW
@given(nw.cases(max_body=6), st.sampled_from(LAYOUTS), st.integers(1, 5))
def test_no_call_modifies_the_callers_arrays_many(case, layout, fit_batch):
    check_arrays_untouched(case, layout, fit_batch)


# -- (d) the one-call step of float32 Dense stacks equals the layer-by-layer path ------------------
@st.composite
def dense_stacks(draw):
    """Float32 Dense stacks with a loss and optimizer the one-call step takes; batches up to 40
    so that the first layer's zero-column skipping (batches >= 32) runs too."""
    features = draw(nw.FEATURES)
    spec = [("dense", draw(st.integers(2, 6)), draw(st.sampled_from((None,) + nw.ACTIVATIONS)))
            for _ in range(draw(st.integers(0, 3)))]
    spec.append(("dense", draw(st.integers(2, 5)), draw(st.sampled_from((None,) + nw.ACTIVATIONS))))
    case = nw.Case(tuple(spec), (features,), draw(st.sampled_from(["sce", "mse"])), "labels",
                   np.dtype(np.float32), draw(st.integers(1, 40)), draw(st.integers(0, 2**31 - 1)))
    zero_columns = draw(st.lists(st.integers(0, features - 1), max_size=features, unique=True))
    return case, zero_columns


def _fused_step_ran(model, batch):
    """Whether train_step took the one-call path for this batch size (its plan exists)."""
    return batch in (model._fused_steps or {})


def check_fused_step(case, zero_columns, optimizer):
    """Three steps, each from the same state on both paths (a float32 step that drives the loss
    near 0 makes the next gradient ill-conditioned: p - 1 in the softmax cancels, so the paths'
    last-bit differences would grow step by step without anything being wrong)."""
    kind, config = optimizer
    fused = nw.build_model(case, _fastnn_optimizer(kind, config))
    layered = nw.build_model(case, _fastnn_optimizer(kind, config))
    x, y = nw.make_data(case)
    x[:, zero_columns] = 0
    for _ in range(3):
        before = fused.params.copy()
        layered.params[...] = before
        layered.optimizer.load_state_dict(fused.optimizer.state_dict())
        loss = fused.train_step(x, y)
        # The layer-by-layer path, spelled out: forward, loss, backward, optimizer step.
        output = layered.forward(x, training=True)
        layered_loss = layered.loss(output, y)
        correct = layered.loss.count_correct(output, y)
        layered.backward()
        layered.optimizer.step()
        # as against the oracle: a loss driven near 0 is a difference of O(1) numbers, and
        # softmax CE's logsumexp(z) - z_y one of numbers the logits' size (momentum can push them
        # to ~50), whose rounding grows with them
        logits = max(1.0, float(np.max(np.abs(output))))
        assert loss == pytest.approx(layered_loss, rel=TOL[np.dtype(np.float32)]["loss"],
                                     abs=TOL[np.dtype(np.float32)]["loss"] * logits), case.code()
        assume(np.all(np.isfinite(layered.params)))  # a step that diverged (lr 0.5 on a deep stack)
        top2 = np.sort(output, axis=1)[:, -2:]
        near_ties = int(np.sum(top2[:, 1] - top2[:, 0] < 1e-5))
        assert abs(fused.last_correct - correct) <= near_ties, case.code()
        trusted = None
        if kind == "adam":
            _assert_per_array(case, fused.grads, layered.grads, TOL[np.dtype(np.float32)]["grads"], "adam gradient")
            # Adam's step is lr * m_hat / (sqrt(v_hat) + eps), and m_hat weighs this step's g
            # by at most 1: the paths' own gradient difference d moves an entry's step by up to
            # lr * d / (sqrt(v_hat) + eps). Where that exceeds 1e-5 lr, a tenth of the tolerance
            # (a small gradient whose sum nearly cancels, summed in another order), rounding
            # decides the step's last digits.
            state = layered.optimizer.state_dict()
            scale = np.sqrt(state["v"] / (1 - config["beta2"] ** state["t"])) + config["eps"]
            steady = np.abs(fused.grads - layered.grads) <= 1e-5 * scale
            noise = 1e-5 * np.abs(layered.grads).max()  # the paths' gradients differ by a few ulps at most
            trusted = _adam_trusted(steady, layered.grads, noise, before, fused.params, config["lr"])
        _assert_per_array(case, fused.params - before, layered.params - before, 1e-4,
                          f"{kind} {config} update", trusted, _ulp(np.float32, before, fused.params))
        for name, state in layered.optimizer.state_dict().items():
            assert nw.scaled_error(fused.optimizer.state_dict()[name], state, 1e-30) <= 1e-4, name
    assert _fused_step_ran(fused, case.batch), "the one-call step did not run"


@normal(100)
@given(dense_stacks(), _optimizers())
def test_fused_dense_step_equals_layer_by_layer(stack, optimizer):
    check_fused_step(*stack, optimizer)


@pytest.mark.slow
@SLOW
@given(dense_stacks(), _optimizers())
def test_fused_dense_step_equals_layer_by_layer_many(stack, optimizer):
    check_fused_step(*stack, optimizer)


# -- the two compositions issue 11 reported ---------------------------------------------------------
def test_activation_after_activation_passes_gradcheck(rng):
    model = Sequential([Dense(4), ReLU(), Sigmoid(), Dense(2)], loss=SoftmaxCrossEntropy(),
                       optimizer=SGD(0.1), input_shape=(3,), dtype=np.float64, seed=0)
    result = gradcheck(model, rng.standard_normal((5, 3)), np.array([0, 1, 1, 0, 1]))
    assert result["max_rel_error"] < 1e-6, result


def test_relu_after_flatten_leaves_x_alone(rng):
    model = Sequential([Flatten(), ReLU(), Dense(2)], loss=SoftmaxCrossEntropy(), optimizer=SGD(0.1),
                       input_shape=(2, 3), seed=0)
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    y = np.array([0, 1, 1, 0])
    before = x.copy()
    model.predict(x)
    np.testing.assert_array_equal(x, before, err_msg="predict modified x")
    model.evaluate(x, y)
    np.testing.assert_array_equal(x, before, err_msg="evaluate modified x")
