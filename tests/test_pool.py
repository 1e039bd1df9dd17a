import numpy as np
import pytest

from fastnn import _pool, ops

import reference as ref
from support import TOL

# (x.shape, kernel, stride): odd sizes, overlapping and non-square windows, batch 1, 1 channel.
CASES = [
    ((2, 3, 8, 8), 2, None),
    ((1, 1, 5, 7), 3, 2),
    ((3, 2, 9, 6), (3, 2), (2, 1)),
    ((1, 1, 1, 1), 1, 1),
    ((4, 5, 13, 11), 2, 2),
    ((2, 1, 6, 6), 3, 3),
    ((1, 3, 10, 4), (2, 3), None),
    ((2, 2, 7, 9), 3, 1),
    ((5, 4, 12, 12), (1, 4), (3, 2)),
]


def _pairs(kernel, stride):
    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    s = k if stride is None else (stride, stride) if isinstance(stride, int) else stride
    return k, s


def _distinct(rng, shape, dtype=np.float64):
    """Values 0.1 apart: no ties, so max-pool is differentiable for finite differences."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 5).astype(dtype)


@pytest.mark.parametrize("shape,kernel,stride", CASES)
def test_maxpool_forward_matches_reference(shape, kernel, stride, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    y, argmax = ops.maxpool2d_forward(x, kernel, stride)
    want_y, want_argmax = ref.maxpool2d_forward(x, *_pairs(kernel, stride))
    assert y.dtype == dtype and argmax.dtype == np.int64
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(argmax, want_argmax)


@pytest.mark.parametrize("shape,kernel,stride", CASES)
def test_depool_and_its_backward_match_reference(shape, kernel, stride, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    _, argmax = ops.maxpool2d_forward(x, kernel, stride)
    values = rng.standard_normal(argmax.shape).astype(dtype)
    np.testing.assert_allclose(ops.depool2d(values, argmax, shape),
                               ref.depool2d(values, argmax, shape), **TOL[dtype])
    dout = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(ops.depool2d_backward(dout, argmax),
                                  ref.depool2d_backward(dout, argmax))


def test_argmax_is_flat_index_in_plane_and_ties_pick_first():
    x = np.zeros((1, 2, 4, 4))
    x[0, 1] = np.arange(16).reshape(4, 4)
    y, argmax = ops.maxpool2d_forward(x, 2)
    # Plane 0 is all ties: the first (top-left) element of each window wins.
    np.testing.assert_array_equal(argmax[0, 0], [[0, 2], [8, 10]])
    # Plane 1: the bottom-right of each window; indices restart at 0 in every plane.
    np.testing.assert_array_equal(argmax[0, 1], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(y[0, 1], [[5, 7], [13, 15]])
    x[0, 0, 1, 1] = x[0, 0, 0, 1] = 3  # tie inside one window, first in row-major order wins
    assert ops.maxpool2d_forward(x, 2)[1][0, 0, 0, 0] == 1


def _scan_pool(x, k, stride):
    """PyTorch's CPU scan: row-major over the window, take v when v > best or v is NaN."""
    n, c, h, w = x.shape
    p, q = (h - k) // stride + 1, (w - k) // stride + 1
    y, at = np.empty((n, c, p, q), x.dtype), np.empty((n, c, p, q), np.int64)
    for i, j, a, b in np.ndindex(n, c, p, q):
        best_at = a * stride * w + b * stride
        for r, s in np.ndindex(k, k):
            v, here = x[i, j].flat[(a * stride + r) * w + b * stride + s], (a * stride + r) * w + b * stride + s
            if v > x[i, j].flat[best_at] or np.isnan(v):
                best_at = here
        y[i, j, a, b], at[i, j, a, b] = x[i, j].flat[best_at], best_at
    return y, at


# (2, 2) has its own kernel path in float32: 8 outputs per vector step, a tail as an overlapping
# last vector, rows of 4-7 outputs 4-wide, shorter rows one at a time. Row widths (outputs):
# 4, 18 (two steps and an overlapping tail), 1, 3, 5, 7, 8, 12 (LeNet's first pool).
@pytest.mark.parametrize("k,stride,shape", [(2, 2, (2, 3, 7, 9)), (2, 2, (2, 2, 6, 37)),
                                            (2, 2, (1, 2, 4, 2)), (2, 2, (2, 2, 5, 7)),
                                            (2, 2, (2, 2, 4, 11)), (2, 2, (2, 3, 6, 14)),
                                            (2, 2, (1, 2, 4, 16)), (2, 2, (2, 2, 4, 24)),
                                            (3, 2, (2, 3, 7, 9)), (2, 1, (2, 3, 7, 9))])
def test_maxpool_ties_and_nans_follow_the_scan_order(k, stride, shape, dtype, rng):
    x = rng.integers(0, 3, shape).astype(dtype)  # many ties
    x[rng.random(x.shape) < 0.1] = np.nan
    y, argmax = ops.maxpool2d_forward(x, k, stride)
    want_y, want_at = _scan_pool(x, k, stride)
    np.testing.assert_array_equal(argmax, want_at)
    np.testing.assert_array_equal(y, want_y)  # NaNs compare equal here


def test_depool_accumulates_where_overlapping_windows_share_a_max():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 9  # the centre is the max of all four overlapping 2x2 windows
    y, argmax = ops.maxpool2d_forward(x, 2, 1)
    assert (argmax == 4).all()
    out = ops.depool2d(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), argmax, x.shape)
    want = np.zeros((1, 1, 3, 3))
    want[0, 0, 1, 1] = 10
    np.testing.assert_array_equal(out, want)


def test_depool_overwrites_its_output(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    y, argmax = ops.maxpool2d_forward(x, 2)
    out = np.full_like(x, 7.0)
    _pool.depool2d(out, y, argmax, 1)
    np.testing.assert_array_equal(out, ref.depool2d(y, argmax, x.shape))


@pytest.mark.parametrize("shape,kernel,stride", [((2, 2, 7, 7), 3, 2), ((1, 3, 6, 5), 2, None),
                                                 ((2, 1, 5, 8), (2, 3), (1, 2))])
def test_maxpool_backward_matches_finite_differences(shape, kernel, stride, rng):
    x = _distinct(rng, shape)
    y, argmax = ops.maxpool2d_forward(x, kernel, stride)
    dy = rng.standard_normal(y.shape)
    dx = ops.depool2d(dy, argmax, shape)  # depool is the max-pool backward
    loss = lambda: float(np.sum(ops.maxpool2d_forward(x, kernel, stride)[0] * dy))
    assert ref.rel_error(dx, ref.numeric_grad(loss, x)) < 1e-6


def test_depool_backward_matches_finite_differences(rng):
    shape = (2, 2, 7, 7)
    _, argmax = ops.maxpool2d_forward(_distinct(rng, shape), 3, 2)
    values, dout = rng.standard_normal(argmax.shape), rng.standard_normal(shape)
    loss = lambda: float(np.sum(ops.depool2d(values, argmax, shape) * dout))
    dvalues = ops.depool2d_backward(dout, argmax)
    assert ref.rel_error(dvalues, ref.numeric_grad(loss, values)) < 1e-6


def test_pool_same_result_on_one_and_two_threads(rng, threads):
    x = rng.standard_normal((64, 20, 24, 24)).astype(np.float32)
    results = []
    for n in (1, 2):
        threads(n)
        y, argmax = ops.maxpool2d_forward(x, 3, 2)
        out = ops.depool2d(y, argmax, x.shape)
        results.append((y, argmax, out, ops.depool2d_backward(out, argmax)))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_pool_copies_non_contiguous_input(rng):
    x = rng.standard_normal((2, 3, 8, 12))[..., ::2]
    y, argmax = ops.maxpool2d_forward(x, 2)
    np.testing.assert_array_equal(y, ref.maxpool2d_forward(x, (2, 2), (2, 2))[0])


@pytest.mark.parametrize("x,kwargs,exc,word", [
    (np.ones((3, 8, 8)), {}, ValueError, "4-D"),
    (np.ones((1, 1, 0, 4)), {}, ValueError, "empty"),
    (np.ones((1, 1, 4, 4), np.int32), {}, TypeError, "dtype"),
    ([[[[1.0]]]], {}, TypeError, "ndarray"),
    (np.ones((1, 1, 4, 4)), {"kernel": 5}, ValueError, "larger"),
    (np.ones((1, 1, 4, 4)), {"kernel": (2, 5)}, ValueError, "larger"),
    (np.ones((1, 1, 4, 4)), {"kernel": 2, "stride": 0}, ValueError, "stride"),
    (np.ones((1, 1, 4, 4)), {"kernel": 0}, ValueError, "kernel"),
    (np.ones((1, 1, 4, 4)), {"kernel": (2, 2, 2)}, ValueError, "pair"),
    (np.ones((1, 1, 4, 4)), {"kernel": 2.0}, TypeError, "int"),
])
def test_maxpool_rejects_bad_input(x, kwargs, exc, word):
    with pytest.raises(exc, match=word):
        ops.maxpool2d_forward(x, **kwargs)


def _pooled():
    x = np.arange(32.0).reshape(1, 2, 4, 4)
    return ops.maxpool2d_forward(x, 2)


@pytest.mark.parametrize("make,exc,word", [
    (lambda y, a: (y, a, (1, 2, 4)), ValueError, "input_shape"),
    (lambda y, a: (y, a, (1, 3, 4, 4)), ValueError, "input_shape"),
    (lambda y, a: (y, a, (1, 2, 1, 4)), ValueError, "input_shape"),
    (lambda y, a: (y, a, (1, 2, 0, 4)), ValueError, "input_shape"),
    (lambda y, a: (y, a[:, :, :1], (1, 2, 4, 4)), ValueError, "argmax"),
    (lambda y, a: (y, a + 16, (1, 2, 4, 4)), ValueError, "argmax"),
    (lambda y, a: (y, a - 6, (1, 2, 4, 4)), ValueError, r"\[0, 16\)"),
    (lambda y, a: (y, a.astype(np.float64), (1, 2, 4, 4)), TypeError, "integer"),
    (lambda y, a: (y.astype(np.int64), a, (1, 2, 4, 4)), TypeError, "dtype"),
    (lambda y, a: (y[0], a, (1, 2, 4, 4)), ValueError, "4-D"),
])
def test_depool_rejects_bad_input(make, exc, word):
    with pytest.raises(exc, match=word):
        ops.depool2d(*make(*_pooled()))


@pytest.mark.parametrize("make,exc,word", [
    (lambda a: (np.ones((1, 3, 4, 4)), a), ValueError, "argmax"),
    (lambda a: (np.ones((1, 2, 3, 3)), a), ValueError, r"\[0, 9\)"),
    (lambda a: (np.ones((1, 2, 4, 4)), a[:, :, :0]), ValueError, "empty"),
    (lambda a: (np.ones((1, 2, 4, 4)), a[0]), ValueError, "4-D"),
    (lambda a: (np.ones((1, 2, 4, 4), np.float16), a), TypeError, "dtype"),
])
def test_depool_backward_rejects_bad_input(make, exc, word):
    with pytest.raises(exc, match=word):
        ops.depool2d_backward(*make(_pooled()[1]))
