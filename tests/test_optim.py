import numpy as np
import pytest

from fastnn import _optim, ops

import reference as ref
from support import TOL


@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.0, 0.01), (0.9, 0.0), (0.5, 1e-3)])
@pytest.mark.parametrize("shape", [(1,), (17,), (4, 3, 5)])
def test_sgd_matches_pytorch_formulas_over_steps(momentum, weight_decay, shape, dtype, rng):
    p = rng.standard_normal(shape).astype(dtype)
    vel = np.zeros_like(p) if momentum else None
    want_p, want_v = p.astype(np.float64), np.zeros(shape)
    for _ in range(5):
        g = rng.standard_normal(shape).astype(dtype)
        ops.sgd_update(p, g, 0.1, momentum=momentum, velocity=vel, weight_decay=weight_decay)
        want_p, want_v = ref.sgd_update(want_p, g, want_v, 0.1, momentum, weight_decay)
    np.testing.assert_allclose(p, want_p, **TOL[dtype])
    if momentum:
        np.testing.assert_allclose(vel, want_v, **TOL[dtype])


@pytest.mark.parametrize("kwargs", [{}, dict(lr=0.01, beta1=0.5, beta2=0.9, eps=1e-6),
                                    dict(lr=0.1, beta1=0.0, beta2=0.0),
                                    dict(lr=0.01, weight_decay=0.05)])
@pytest.mark.parametrize("shape", [(1,), (33,), (2, 3, 4)])
def test_adam_matches_pytorch_formulas_over_steps(kwargs, shape, dtype, rng):
    p = rng.standard_normal(shape).astype(dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    want = (p.astype(np.float64), np.zeros(shape), np.zeros(shape))
    for step in range(1, 7):
        g = rng.standard_normal(shape).astype(dtype)
        ops.adam_update(p, g, m, v, step, **kwargs)
        want = ref.adam_update(*want[:1], g, *want[1:], step, **kwargs)
    for got, expected in zip((p, m, v), want):
        np.testing.assert_allclose(got, expected, **TOL[dtype])


def test_sgd_without_momentum_leaves_velocity_alone(rng):
    p, g, vel = rng.standard_normal(5), rng.standard_normal(5), np.full(5, 7.0)
    ops.sgd_update(p, g, 0.1, velocity=vel)
    assert (vel == 7).all()


def test_raw_sgd_refuses_momentum_without_velocity():
    with pytest.raises(ValueError, match="velocity"):
        _optim.sgd_update(np.ones(3), np.ones(3), None, 0.1, 0.9, 0.0, 1)


@pytest.mark.parametrize("which", ["sgd", "adam"])
def test_optim_same_result_on_one_and_two_threads(which, rng, threads):
    n = 200_000  # above the parallel threshold
    start = rng.standard_normal(n).astype(np.float32)
    grads = [rng.standard_normal(n).astype(np.float32) for _ in range(3)]
    results = []
    for t in (1, 2):
        threads(t)
        p, a, b = start.copy(), np.zeros(n, np.float32), np.zeros(n, np.float32)
        for step, g in enumerate(grads, 1):
            if which == "sgd":
                ops.sgd_update(p, g, 0.1, momentum=0.9, velocity=a, weight_decay=1e-4)
            else:
                ops.adam_update(p, g, a, b, step)
        results.append(p)
    np.testing.assert_array_equal(*results)


def _sgd(**kw):
    args = dict(param=np.ones(4), grad=np.ones(4), lr=0.1)
    args.update(kw)
    return lambda: ops.sgd_update(**args)


def _adam(**kw):
    args = dict(param=np.ones(4), grad=np.ones(4), m=np.zeros(4), v=np.zeros(4), step=1)
    args.update(kw)
    return lambda: ops.adam_update(**args)


@pytest.mark.parametrize("call,exc,word", [
    (_sgd(lr=-0.1), ValueError, "lr"),
    (_sgd(lr=float("nan")), ValueError, "finite"),
    (_sgd(momentum=0.9), ValueError, "velocity"),
    (_sgd(momentum=-0.5), ValueError, "momentum"),
    (_sgd(weight_decay=-1), ValueError, "weight_decay"),
    (_sgd(param=np.ones((4, 2))[:, 0]), ValueError, "contiguous"),
    (_sgd(param=[1.0, 2.0]), TypeError, "ndarray"),
    (_sgd(grad=np.ones(5)), ValueError, "grad"),
    (_sgd(grad=np.ones(4, np.float32)), TypeError, "mixed"),
    (_sgd(param=np.ones(4, np.int64), grad=np.ones(4, np.int64)), TypeError, "dtype"),
    (_sgd(param=np.ones(0), grad=np.ones(0)), ValueError, "empty"),
    (_sgd(momentum=0.9, velocity=np.zeros(3)), ValueError, "velocity"),
    (_sgd(momentum=0.9, velocity=np.zeros(8)[::2]), ValueError, "contiguous"),
    (_adam(step=0), ValueError, "step"),
    (_adam(step=1.0), TypeError, "step"),
    (_adam(beta1=1.0), ValueError, "beta1"),
    (_adam(beta2=-0.1), ValueError, "beta2"),
    (_adam(lr=-1), ValueError, "lr"),
    (_adam(eps=-1e-8), ValueError, "eps"),
    (_adam(weight_decay=-1), ValueError, "weight_decay"),
    (_adam(m=np.zeros(3)), ValueError, "m"),
    (_adam(v=np.zeros(4, np.float32)), TypeError, "mixed"),
    (_adam(v=np.zeros(8)[::2]), ValueError, "contiguous"),
    (_adam(param=np.ones((2, 4)).T), ValueError, "contiguous"),
])
def test_optim_rejects_bad_input(call, exc, word):
    with pytest.raises(exc, match=word):
        call()
