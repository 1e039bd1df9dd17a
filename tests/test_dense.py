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


@pytest.mark.parametrize("n,i,o", [(1, 800, 500), (3, 800, 500), (32, 400, 330), (1, 1000, 330)])
def test_small_batch_forward_with_large_weights_is_bit_identical_on_two_threads(n, i, o, rng, threads):
    # Weights of >= 512 KB split over the threads even at batch 1 (_streams_weights in
    # _blas.pxd); each output must stay the very same dot product, so the results are equal.
    # (32, 400, 330): 528 KB; (1, 1000, 330): just over 2 x 160 columns.
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in [(n, i), (o, i), (o,)])
    threads(1)
    one = ops.dense_forward(x, w, b)
    threads(2)
    two = ops.dense_forward(x, w, b)
    np.testing.assert_array_equal(one, two)
    want = ref.dense_forward(*(a.astype(np.float64) for a in (x, w, b)))
    np.testing.assert_allclose(two, want, **tolerance(np.float32, i))


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
@pytest.mark.parametrize("op_a,op_b", [("N", "T"), ("N", "N"), ("T", "N")])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (1, 500, 800), (2, 4, 8), (3, 5, 9), (10, 30, 784),
                                   (17, 33, 17), (30, 784, 10), (33, 16, 7), (5, 47, 64),
                                   (5, 7, 9000)])  # k > 4096: the dot shape's L2-sized passes
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-0.5, 1.0), (2.0, 0.25)])
def test_small_sgemm_matches_numpy(op_a, op_b, m, n, k, alpha, beta, rng):
    a = rng.standard_normal((k, m) if op_a == "T" else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if op_b == "T" else (k, n)).astype(np.float32)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    want = alpha * ((a.T if op_a == "T" else a).astype(np.float64)
                    @ (b.T if op_b == "T" else b).astype(np.float64)) + beta * c0
    for impl in ("small", "blas"):
        c = c0.copy()
        if beta == 0:
            c[...] = np.nan  # beta == 0 must not read C
        fastnn._dense.sgemm(op_a, op_b, alpha, a, b, beta, c, impl)
        np.testing.assert_allclose(c, want, rtol=1e-4, atol=1e-5 * np.sqrt(k) * max(1.0, abs(alpha)),
                                   err_msg=impl)


# The dense layers' GEMMs at the presets' sizes (bench/bench_dense.py's SMALL_GEMMS) and one large.
LAYER_GEMMS = [("N", "T", 10, 30, 784, "small"), ("T", "N", 30, 784, 10, "small"),
               ("N", "T", 1, 500, 800, "small"), ("N", "T", 100, 50, 784, "blas"),
               ("T", "N", 50, 784, 100, "blas"), ("N", "T", 30, 10, 2, "blas"),
               ("N", "N", 10, 784, 30, "blas"), ("N", "T", 64, 500, 800, "blas")]


@pytest.mark.parametrize("op_a,op_b,m,n,k,choice", LAYER_GEMMS)
def test_gemm_dispatch_and_the_small_gemm_equals_openblas(op_a, op_b, m, n, k, choice, rng):
    # The one dispatch (sgemm_impl in _blas.pxd) picks as documented, 'auto' runs exactly what it
    # picks, and the small GEMM equals OpenBLAS within float32 rounding of a k-term sum.
    assert fastnn._dense.gemm_choice(op_a, op_b, m, n, k) == choice
    a = rng.standard_normal((k, m) if op_a == "T" else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if op_b == "T" else (k, n)).astype(np.float32)
    out = {impl: np.full((m, n), np.nan, np.float32) for impl in ("auto", "small", "blas")}
    for impl, c in out.items():
        fastnn._dense.sgemm(op_a, op_b, 1.0, a, b, 0.0, c, impl)
    np.testing.assert_array_equal(out["auto"], out[choice])
    np.testing.assert_allclose(out["small"], out["blas"], rtol=1e-5, atol=1e-6 * np.sqrt(k) * np.abs(out["blas"]).max())


def test_dense_layer_gemms_equal_openblas_where_the_small_gemm_runs(rng):
    # Nielsen's layer at batch 10: the forward and dW run the small GEMM (asserted above).
    x, w, dy = (rng.standard_normal(s).astype(np.float32) for s in [(10, 784), (30, 784), (10, 30)])
    want_y, want_dw = np.empty((10, 30), np.float32), np.empty((30, 784), np.float32)
    fastnn._dense.sgemm("N", "T", 1.0, x, w, 0.0, want_y, "blas")
    fastnn._dense.sgemm("T", "N", 1.0, dy, x, 0.0, want_dw, "blas")
    np.testing.assert_allclose(ops.dense_forward(x, w, np.zeros(30, np.float32)), want_y, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ops.dense_backward(dy, x, w)[1], want_dw, rtol=1e-5, atol=1e-5)


def test_small_sgemm_refuses_bad_calls():
    a, b, c = np.ones((2, 3), np.float32), np.ones((4, 3), np.float32), np.empty((2, 4), np.float32)
    with pytest.raises(ValueError, match="chain"):
        fastnn._dense.sgemm("N", "N", 1.0, a, b, 0.0, c, "small")
    with pytest.raises(ValueError, match="impl"):
        fastnn._dense.sgemm("N", "T", 1.0, a, b, 0.0, c, "mine")
    with pytest.raises(ValueError, match="op_a='T' and op_b='T'"):
        fastnn._dense.sgemm("T", "T", 1.0, np.ones((3, 2), np.float32), b, 0.0, c, "small")
    with pytest.raises(ValueError, match="op_b must be 'N'"):
        fastnn._dense.sgemm("N", True, 1.0, a, b, 0.0, c, "blas")
    with pytest.raises(ValueError, match="op_a must be 'N'"):
        fastnn._dense.gemm_choice("t", "N", 1, 1, 1)


def test_raw_dense_backward_takes_none_for_dx_in_both_dtypes(rng):
    for dtype in (np.float32, np.float64):
        dy, x, w = (rng.standard_normal(s).astype(dtype) for s in [(4, 3), (4, 5), (3, 5)])
        dw, db = np.full_like(w, np.nan), np.full_like(w[:, 0], np.nan)
        fastnn._dense.dense_backward(None, dw, db, dy, x, w, None, 0, 1)
        np.testing.assert_allclose(dw, dy.T @ x, **tolerance(dtype, 4))
        np.testing.assert_allclose(db, dy.sum(0), **tolerance(dtype, 4))


def test_small_sgemm_reports_its_simd_build():
    # one build, or 'dot X, axpy Y' where the two loop shapes prefer different ones
    for part in fastnn._dense.small_gemm_simd().split(", "):
        assert part.split()[-1] in ("avx512f+fma", "avx2+fma", "baseline")
