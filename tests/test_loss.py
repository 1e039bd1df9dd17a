import numpy as np
import pytest

from fastnn import _loss, ops

import reference as ref
from support import TOL

SHAPES = [(1, 2), (1, 1), (7, 10), (64, 10), (3, 129), (200, 3)]


def _scalar_tol(dtype):
    return dict(rel=TOL[dtype]["rtol"], abs=TOL[dtype]["atol"])


@pytest.mark.parametrize("n,k", SHAPES)
def test_softmax_matches_reference(n, k, dtype, rng):
    x = (rng.standard_normal((n, k)) * 5).astype(dtype)
    y = ops.softmax(x)
    np.testing.assert_allclose(y, ref.softmax(x), **TOL[dtype])
    np.testing.assert_allclose(y.sum(axis=1), 1, **TOL[dtype])


@pytest.mark.parametrize("n,k", SHAPES)
def test_softmax_cross_entropy_matches_reference(n, k, dtype, rng):
    logits = (rng.standard_normal((n, k)) * 5).astype(dtype)
    labels = rng.integers(0, k, n)
    loss, dlogits = ops.softmax_cross_entropy(logits, labels)
    want_loss, want_d = ref.softmax_cross_entropy(logits, labels)
    assert isinstance(loss, float) and loss == pytest.approx(want_loss, **_scalar_tol(dtype))
    assert dlogits.dtype == dtype
    np.testing.assert_allclose(dlogits, want_d, **TOL[dtype])


@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_softmax_cross_entropy_is_stable_for_huge_logits(scale, dtype, rng):
    logits = (rng.choice([-1.0, 0.5, 1.0], (8, 5)) * scale).astype(dtype)
    logits[0] = scale  # a row of ties
    labels = rng.integers(0, 5, 8)
    loss, dlogits = ops.softmax_cross_entropy(logits, labels)
    assert np.isfinite(loss) and np.isfinite(dlogits).all()
    want_loss, want_d = ref.softmax_cross_entropy(logits, labels)  # float64 log-sum-exp
    assert loss == pytest.approx(want_loss, rel=1e-6)
    np.testing.assert_allclose(dlogits, want_d, **TOL[dtype])
    y = ops.softmax(logits)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, ref.softmax(logits), **TOL[dtype])


@pytest.mark.parametrize("shape", [(1, 1), (5,), (7, 3), (4, 2, 3, 3), (100, 10)])
def test_mse_matches_reference(shape, dtype, rng):
    pred, target = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    loss, dpred = ops.mse(pred, target)
    want_loss, want_d = ref.mse(pred, target)
    assert loss == pytest.approx(want_loss, **_scalar_tol(dtype))
    assert dpred.shape == shape
    np.testing.assert_allclose(dpred, want_d, **TOL[dtype])


@pytest.mark.parametrize("shape", [(1, 1), (9, 1), (6,), (5, 4), (3, 2, 4, 4)])
def test_bce_with_logits_matches_reference(shape, dtype, rng):
    logits = (rng.standard_normal(shape) * 4).astype(dtype)
    target = rng.uniform(0, 1, shape).astype(dtype)
    target.reshape(-1)[::2] = np.round(target.reshape(-1)[::2])  # hard and soft labels
    loss, dlogits = ops.bce_with_logits(logits, target)
    want_loss, want_d = ref.bce_with_logits(logits, target)
    assert loss == pytest.approx(want_loss, **_scalar_tol(dtype))
    np.testing.assert_allclose(dlogits, want_d, **TOL[dtype])


def test_bce_with_logits_is_stable_for_huge_logits(dtype):
    logits = np.array([[-1e4], [-100], [0], [100], [1e4]], dtype)
    target = np.array([[1], [0], [1], [1], [0]], dtype)
    loss, dlogits = ops.bce_with_logits(logits, target)
    want_loss, want_d = ref.bce_with_logits(logits, target)
    assert np.isfinite(loss) and np.isfinite(dlogits).all()
    assert loss == pytest.approx(want_loss, rel=1e-6)
    np.testing.assert_allclose(dlogits, want_d, **TOL[dtype])


@pytest.mark.parametrize("which", ["softmax_cross_entropy", "mse", "bce_with_logits"])
def test_loss_gradient_matches_finite_differences(which, rng):
    x = rng.standard_normal((4, 6))
    if which == "softmax_cross_entropy":
        other = rng.integers(0, 6, 4)
    else:
        other = rng.uniform(0, 1, (4, 6))
    fn = getattr(ops, which)
    grad = fn(x, other)[1]
    assert ref.rel_error(grad, ref.numeric_grad(lambda: fn(x, other)[0], x)) < 1e-6


def test_losses_overwrite_gradient_buffer(rng):
    logits, labels = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    d = np.full_like(logits, 3.0)
    _loss.softmax_cross_entropy(d, logits, labels, 1)
    np.testing.assert_allclose(d, ref.softmax_cross_entropy(logits, labels)[1], **TOL[np.float64])


def test_raw_mse_and_bce_take_any_shape_and_refuse_strided_outputs(rng):
    pred, target = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 3, 4, 4))
    d = np.empty_like(pred)
    assert _loss.mse(d, pred, target, 1) == pytest.approx(ref.mse(pred, target)[0])
    np.testing.assert_allclose(d, ref.mse(pred, target)[1])
    with pytest.raises(ValueError, match="contiguous"):
        _loss.bce_with_logits(np.empty((2, 3, 4, 8))[..., ::2], pred, target, 1)


def test_count_correct(rng):
    logits = rng.standard_normal((50, 7))
    labels = rng.integers(0, 7, 50)
    labels[:10] = np.argmax(logits[:10], axis=1)
    assert ops.count_correct(logits, labels) == ref.count_correct(logits, labels)
    ties = np.zeros((2, 3))
    assert ops.count_correct(ties, np.array([0, 1])) == 1  # ties pick the first column
    binary = np.array([[2.0], [-1.0], [0.0], [3.0]])
    assert ops.count_correct(binary, np.array([1, 0, 0, 0])) == 3


@pytest.mark.parametrize("which", ["softmax", "softmax_cross_entropy", "mse", "bce_with_logits"])
def test_loss_same_result_on_one_and_two_threads(which, rng, threads):
    x = rng.standard_normal((4096, 10)).astype(np.float32)  # 40960 elements, above the threshold
    if which == "softmax_cross_entropy":
        args = (x, rng.integers(0, 10, 4096))
    elif which == "softmax":
        args = (x,)
    else:
        args = (x, rng.uniform(0, 1, x.shape).astype(np.float32))
    results = []
    for n in (1, 2):
        threads(n)
        results.append(getattr(ops, which)(*args))
    if which == "softmax":
        np.testing.assert_array_equal(*results)
    else:  # the per-thread partial sums add up in a different order
        assert results[0][0] == pytest.approx(results[1][0], rel=1e-12)
        np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("call,exc,word", [
    (lambda: ops.softmax(np.ones(3)), ValueError, "2-D"),
    (lambda: ops.softmax(np.ones((0, 3))), ValueError, "empty"),
    (lambda: ops.softmax_cross_entropy(np.ones((2, 3)), np.array([0, 3])), ValueError, "labels"),
    (lambda: ops.softmax_cross_entropy(np.ones((2, 3)), np.array([-1, 0])), ValueError, r"\[0, 3\)"),
    (lambda: ops.softmax_cross_entropy(np.ones((2, 3)), np.array([0.0, 1.0])), TypeError, "integer"),
    (lambda: ops.softmax_cross_entropy(np.ones((2, 3)), np.array([0, 1, 2])), ValueError, "labels"),
    (lambda: ops.softmax_cross_entropy(np.ones((2, 3)), np.array([[0, 1]])), ValueError, "1-D"),
    (lambda: ops.softmax_cross_entropy(np.ones((2, 3, 1)), np.array([0, 1])), ValueError, "2-D"),
    (lambda: ops.softmax_cross_entropy(np.ones((2, 3), np.int64), np.array([0, 1])), TypeError, "dtype"),
    (lambda: ops.mse(np.ones((2, 3)), np.ones((3, 2))), ValueError, "target"),
    (lambda: ops.mse(np.ones((2, 3), np.float32), np.ones((2, 3))), TypeError, "mixed"),
    (lambda: ops.mse(np.ones((2, 0)), np.ones((2, 0))), ValueError, "empty"),
    (lambda: ops.bce_with_logits(np.ones((2, 1)), np.ones(2)), ValueError, "target"),
    (lambda: ops.bce_with_logits(np.ones(2), [1.0, 0.0]), TypeError, "ndarray"),
    (lambda: ops.count_correct(np.ones((2, 3)), np.array([0, 5])), ValueError, "labels"),
])
def test_loss_rejects_bad_input(call, exc, word):
    with pytest.raises(exc, match=word):
        call()
