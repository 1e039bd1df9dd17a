import numpy as np
import pytest

from fastnn import ops

import reference as ref
from support import TOL

NAMES = ["relu", "sigmoid", "tanh"]
SHAPES = [(1,), (7,), (3, 5), (2, 3, 5, 7), (1, 1, 1, 1), (64, 300)]


def _x(rng, shape, dtype):
    x = rng.standard_normal(shape) * 3
    x[np.abs(x) < 1e-3] = 0.5  # keep relu away from its kink for finite differences
    return x.astype(dtype)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", SHAPES)
def test_activation_forward_matches_reference(name, shape, dtype, rng):
    x = _x(rng, shape, dtype)
    y = getattr(ops, name)(x)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y, getattr(ref, name)(x), **TOL[dtype])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", SHAPES)
def test_activation_backward_matches_reference(name, shape, dtype, rng):
    x, dy = _x(rng, shape, dtype), rng.standard_normal(shape).astype(dtype)
    y = getattr(ops, name)(x)
    got = getattr(ops, name + "_backward")(dy, y)
    np.testing.assert_allclose(got, getattr(ref, name + "_backward")(dy, y), **TOL[dtype])


@pytest.mark.parametrize("name", NAMES)
def test_activation_backward_matches_finite_differences(name, rng):
    # |x| <= 2 and |dy| >= 0.5: no gradient so small that rounding in the differences dominates
    x = _x(rng, (3, 4, 5), np.float64).clip(-2, 2)
    dy = rng.uniform(0.5, 1.5, x.shape) * rng.choice([-1, 1], x.shape)
    forward = getattr(ops, name)
    loss = lambda: float(np.sum(forward(x) * dy))
    dx = getattr(ops, name + "_backward")(dy, forward(x))
    assert ref.rel_error(dx, ref.numeric_grad(loss, x)) < 1e-6


def test_relu_backward_accepts_input_or_output(rng):
    x, dy = _x(rng, (4, 9), np.float64), rng.standard_normal((4, 9))
    np.testing.assert_array_equal(ops.relu_backward(dy, x), ops.relu_backward(dy, ops.relu(x)))


@pytest.mark.parametrize("name", NAMES)
def test_in_place_variants_and_out(name, dtype, rng):
    x = _x(rng, (5, 6), dtype)
    want = getattr(ref, name)(x)
    y = x.copy()
    assert getattr(ops, name + "_")(y) is y
    np.testing.assert_allclose(y, want, **TOL[dtype])
    out = np.empty_like(x)
    assert getattr(ops, name)(x, out=out) is out
    # backward in place over dy, as layers run it
    dy = rng.standard_normal(x.shape).astype(dtype)
    want_dx = getattr(ops, name + "_backward")(dy, y)
    assert getattr(ops, name + "_backward")(dy, y, out=dy) is dy
    np.testing.assert_array_equal(dy, want_dx)


def test_sigmoid_and_tanh_saturate_without_nan(dtype):
    x = np.array([-1e4, -100, -20, 0, 20, 100, 1e4], dtype)
    s, t = ops.sigmoid(x), ops.tanh(x)
    assert np.isfinite(s).all() and np.isfinite(t).all()
    np.testing.assert_allclose(s, ref.sigmoid(x), **TOL[dtype])
    assert s[0] == 0 and s[-1] == 1 and t[0] == -1 and t[-1] == 1


@pytest.mark.parametrize("name", NAMES)
def test_activation_same_result_on_one_and_two_threads(name, rng, threads):
    x = rng.standard_normal((64, 20, 24, 24)).astype(np.float32)  # 737k elements
    dy = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for n in (1, 2):
        threads(n)
        y = getattr(ops, name)(x)
        results.append((y, getattr(ops, name + "_backward")(dy, y)))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_activation_copies_non_contiguous_input(rng):
    x = rng.standard_normal((6, 8))[:, ::2]
    np.testing.assert_allclose(ops.tanh(x), np.tanh(x))


@pytest.mark.parametrize("call,exc,word", [
    (lambda: ops.relu(np.ones(3, np.int64)), TypeError, "dtype"),
    (lambda: ops.sigmoid([1.0, 2.0]), TypeError, "ndarray"),
    (lambda: ops.tanh(np.ones((0, 3))), ValueError, "empty"),
    (lambda: ops.relu_(np.ones((4, 4))[:, ::2]), ValueError, "contiguous"),
    (lambda: ops.tanh_(np.ones(3)[::-1]), ValueError, "contiguous"),
    (lambda: ops.relu(np.ones(3), out=np.ones(4)), ValueError, "out"),
    (lambda: ops.relu_backward(np.ones(3), np.ones(4)), ValueError, "dy"),
    (lambda: ops.sigmoid_backward(np.ones(3, np.float32), np.ones(3)), TypeError, "mixed"),
    (lambda: ops.tanh_backward(np.ones(3), np.ones(3, np.int32)), TypeError, "dtype"),
])
def test_activation_rejects_bad_input(call, exc, word):
    with pytest.raises(exc, match=word):
        call()


def test_in_place_refuses_read_only():
    x = np.ones(3)
    x.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        ops.sigmoid_(x)


def test_float32_sigmoid_is_accurate_everywhere():
    # fastnn_expf.h (vectorised Cephes exp) against float64, over the whole useful range
    x = np.linspace(-90, 90, 400_001, dtype=np.float32)
    want = 1 / (1 + np.exp(-x.astype(np.float64)))
    got = ops.sigmoid(x).astype(np.float64)
    normal = want > np.finfo(np.float32).tiny
    assert (np.abs(got - want)[normal] / want[normal]).max() < 5e-7
    assert (got[~normal] < 1e-37).all()
    special = ops.sigmoid(np.array([np.nan, np.inf, -np.inf, -88.5, 88.5], np.float32))
    assert np.isnan(special[0]) and special[1] == 1 and special[2] == 0 and special[3] == 0 \
        and special[4] == 1
