import numpy as np
import pytest

import fastnn
from fastnn import ops

import reference as ref
from support import TOL

SHAPES = [(1, 1, 1), (1, 784, 30), (10, 784, 30), (64, 800, 500), (7, 13, 5), (100, 50, 10)]


def tolerance(dtype, reduced):
    """TOL, with atol grown by sqrt(length of the sums): float32 rounding adds up."""
    tol = dict(TOL[dtype])
    tol["atol"] *= max(1.0, np.sqrt(reduced))
    return tol


@pytest.mark.parametrize("n,i,o", SHAPES)
def test_dense_forward_matches_reference(n, i, o, dtype, rng):
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in [(n, i), (o, i), (o,)])
    want = ref.dense_forward(*(a.astype(np.float64) for a in (x, w, b)))
    np.testing.assert_allclose(ops.dense_forward(x, w, b), want, **tolerance(dtype, i))


@pytest.mark.parametrize("n,i,o", SHAPES)
def test_dense_backward_matches_reference(n, i, o, dtype, rng):
    dy, x, w = (rng.standard_normal(s).astype(dtype) for s in [(n, o), (n, i), (o, i)])
    wants = ref.dense_backward(*(a.astype(np.float64) for a in (dy, x, w)))
    for got, want, reduced in zip(ops.dense_backward(dy, x, w), wants, (o, n, n)):
        np.testing.assert_allclose(got, want, **tolerance(dtype, reduced))


def test_dense_backward_matches_finite_differences(rng):
    x, w, b = rng.standard_normal((4, 6)), rng.standard_normal((3, 6)), rng.standard_normal(3)
    dy = rng.standard_normal((4, 3))
    loss = lambda: float(np.sum(ops.dense_forward(x, w, b) * dy))
    dx, dw, db = ops.dense_backward(dy, x, w)
    assert ref.rel_error(dx, ref.numeric_grad(loss, x)) < 1e-6
    assert ref.rel_error(dw, ref.numeric_grad(loss, w)) < 1e-6
    assert ref.rel_error(db, ref.numeric_grad(loss, b)) < 1e-6


def test_dense_copies_non_contiguous_input(rng):
    x = rng.standard_normal((6, 8))[:, ::2]
    w, b = rng.standard_normal((3, 4)), rng.standard_normal(3)
    np.testing.assert_allclose(ops.dense_forward(x, w, b), ref.dense_forward(x, w, b))


def test_dense_writes_into_out(rng):
    x, w, b = rng.standard_normal((5, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)
    out = np.empty((5, 3))
    assert ops.dense_forward(x, w, b, out=out) is out


def test_dense_same_result_on_one_and_two_threads(rng, threads):
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in [(256, 300), (200, 300), (200,)])
    threads(1)
    one = ops.dense_forward(x, w, b)
    threads(2)
    two = ops.dense_forward(x, w, b)
    # Split GEMM blocks may round differently: judge errors on the outputs' scale (sums of 300
    # products cancel, so a small entry can differ relatively more than 1e-5).
    np.testing.assert_allclose(one, two, rtol=1e-5, atol=1e-6 * np.abs(one).max())


@pytest.mark.parametrize("args,exc,word", [
    (((3, 4), (2, 5), (2,)), ValueError, "w"),
    (((3, 4), (2, 4), (3,)), ValueError, "b"),
    (((3, 4, 1), (2, 4), (2,)), ValueError, "3-D"),
    (((0, 4), (2, 4), (2,)), ValueError, "empty"),
])
def test_dense_forward_rejects_bad_shapes(args, exc, word):
    x, w, b = (np.ones(s) for s in args)
    with pytest.raises(exc, match=word):
        ops.dense_forward(x, w, b)


def test_dense_rejects_mixed_and_integer_dtypes():
    with pytest.raises(TypeError, match="mixed"):
        ops.dense_forward(np.ones((2, 3), np.float32), np.ones((2, 3)), np.ones(2))
    with pytest.raises(TypeError, match="dtype"):
        ops.dense_forward(np.ones((2, 3), np.int64), np.ones((2, 3)), np.ones(2))
    with pytest.raises(TypeError, match="ndarray"):
        ops.dense_forward([[1.0]], np.ones((1, 1)), np.ones(1))


def test_dense_backward_rejects_wrong_dy_shape():
    with pytest.raises(ValueError, match="dy"):
        ops.dense_backward(np.ones((3, 3)), np.ones((3, 4)), np.ones((2, 4)))


def test_set_num_threads_validates():
    with pytest.raises(ValueError, match="n"):
        fastnn.set_num_threads(0)
    with pytest.raises(ValueError):
        fastnn.set_num_threads(1.5)


# -- the small-batch GEMM (src_c/fastnn_small_gemm.h) against numpy, every orientation and tail --
@pytest.mark.parametrize("trans_a,trans_b", [(False, True), (False, False), (True, False)])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (1, 500, 800), (2, 4, 8), (3, 5, 9), (10, 30, 784),
                                   (17, 33, 17), (30, 784, 10), (33, 16, 7), (5, 47, 64),
                                   (5, 7, 9000)])  # k > 4096: the dot shape's L2-sized passes
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-0.5, 1.0), (2.0, 0.25)])
def test_small_sgemm_matches_numpy(trans_a, trans_b, m, n, k, alpha, beta, rng):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    want = alpha * ((a.T if trans_a else a).astype(np.float64)
                    @ (b.T if trans_b else b).astype(np.float64)) + beta * c0
    for impl in ("small", "blas"):
        c = c0.copy()
        if beta == 0:
            c[...] = np.nan  # beta == 0 must not read C
        fastnn._dense.sgemm(trans_a, trans_b, alpha, a, b, beta, c, impl)
        np.testing.assert_allclose(c, want, rtol=1e-4, atol=1e-5 * np.sqrt(k) * max(1.0, abs(alpha)),
                                   err_msg=impl)


def test_small_sgemm_refuses_bad_calls():
    a, b, c = np.ones((2, 3), np.float32), np.ones((4, 3), np.float32), np.empty((2, 4), np.float32)
    with pytest.raises(ValueError, match="chain"):
        fastnn._dense.sgemm(False, False, 1.0, a, b, 0.0, c, "small")
    with pytest.raises(ValueError, match="impl"):
        fastnn._dense.sgemm(False, True, 1.0, a, b, 0.0, c, "mine")
    with pytest.raises(ValueError, match="trans_a and trans_b"):
        fastnn._dense.sgemm(True, True, 1.0, np.ones((3, 2), np.float32), b, 0.0, c, "small")


def test_small_sgemm_reports_its_simd_build():
    assert fastnn._dense.small_gemm_simd() in ("avx2+fma", "baseline")
