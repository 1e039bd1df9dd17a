"""The direct float32 convolution (src_c/fastnn_direct_conv.h): stride 1, no padding, output rows
of >= 8 columns. Checked against the numpy reference, against the im2col + GEMM path on the same
input (paths="plain"), and by finite differences, over the tails of its register tiles; and the
dispatch (conv2d_algorithms) against the rules docs/kernels.md states."""
import numpy as np
import pytest

from fastnn import _conv, ops

import reference as ref

# (x shape, w shape). Tiles: 4 filters x 3 row-vectors (forward), 3 filters x 4 taps (dW),
# up to 5 columns x 2 vectors or 3 x 4 (dx). Q % 8 != 0 makes an overlapping last vector
# (forward recomputes it, dW and dx mask it).
DIRECT_CASES = [
    ((64, 1, 28, 28), (20, 1, 5, 5)),     # LeNet conv1: dW direct, several sample chunks
    ((16, 20, 12, 12), (50, 20, 5, 5)),   # LeNet conv2: N*P*Q = 1024, dW direct
    ((3, 20, 12, 12), (50, 20, 5, 5)),    # N*P*Q = 192 < 512: dW by im2col + GEMM, dx direct
    ((2, 3, 7, 10), (5, 3, 3, 3)),        # Q = 8, 5 vectors (3 + 2), 27 taps (4 * 6 + 3)
    ((1, 2, 6, 14), (1, 2, 2, 3)),        # Q = 12: overlap; one filter; N = 1
    ((2, 1, 4, 20), (2, 1, 1, 4)),        # Q = 17: 3 vectors per row; 4 taps
    ((5, 2, 9, 25), (7, 2, 3, 1)),        # Q = 25; K = 7 (4 + 3 and 3 + 3 + 1); 6 taps
    ((2, 4, 8, 9), (6, 4, 2, 2)),         # Q = 8, P = 7 (7 vectors: 3 + 3 + 1)
]
IDS = [f"x{c[0]}-w{c[1]}".replace(" ", "") for c in DIRECT_CASES]


def _case(rng, xs, ws):
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[:1]).astype(np.float32)
    dy = rng.standard_normal(ops.conv2d_output_shape(xs, ws)).astype(np.float32)
    return x, w, b, dy


def _assert_close(got, want, name):
    # Sums of up to 36,864 float32 products (conv1's dW) round at ~1e-6 of their scale; entries
    # that cancel to near 0 need an absolute tolerance tied to that scale. A wrong tap, lane or
    # tile would be off by the scale itself.
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale, err_msg=name)


COL_FROM_FORWARD = _conv.ColState.COL_FROM_FORWARD
PATHS = {"fast": _conv.ConvPaths.FAST_PATHS, "plain": _conv.ConvPaths.PLAIN_PATH}
has_direct = pytest.mark.skipif(_conv.direct_simd() == "baseline",
                                reason="the direct kernels run only on CPUs with AVX2+FMA "
                                       "(and not with FASTNN_ISA=baseline)")


def _expected_algorithms(xs, ws, stride, padding, dtype, need_dx):
    # docs/kernels.md's rules, restated independently of conv.pyx's dispatch
    n, _, _, _ = xs
    _, _, p, q = ops.conv2d_output_shape(xs, ws, stride, padding)
    direct = (np.dtype(dtype) == np.float32 and stride == 1 and padding == 0 and q >= 8
              and _conv.direct_simd() != "baseline")
    return {"forward": "direct" if direct else "im2col",
            "dw": "direct" if direct and n * p * q >= 512 else "im2col",
            "dx": None if not need_dx else "direct" if direct else "im2col"}


@pytest.mark.parametrize("xs,ws", DIRECT_CASES + [((3, 2, 9, 12), (4, 2, 3, 6))], ids=IDS + ["Q=7"])
@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 0), (1, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("need_dx", [True, False])
def test_dispatch_follows_the_documented_rules(xs, ws, stride, padding, dtype, need_dx):
    got = ops.conv2d_algorithms(xs, ws, stride, padding, dtype, need_dx=need_dx)
    assert got == _expected_algorithms(xs, ws, stride, padding, dtype, need_dx)
    plain = ops.conv2d_algorithms(xs, ws, stride, padding, dtype, need_dx=need_dx, paths="plain")
    assert plain == {"forward": "im2col", "dw": "im2col", "dx": "im2col" if need_dx else None}


@has_direct
def test_the_cases_cover_every_fast_path():
    seen = {(name, algo) for xs, ws in DIRECT_CASES
            for name, algo in ops.conv2d_algorithms(xs, ws).items()}
    assert {("forward", "direct"), ("dw", "direct"), ("dw", "im2col"), ("dx", "direct")} <= seen


@pytest.mark.parametrize("xs,ws", DIRECT_CASES, ids=IDS)
def test_direct_matches_reference(xs, ws, rng):
    x, w, b, dy = _case(rng, xs, ws)
    _assert_close(ops.conv2d_forward(x, w, b), ref.conv2d_forward(x, w, b), "y")
    for name, got, want in zip("dx dw db".split(), ops.conv2d_backward(dy, x, w),
                               ref.conv2d_backward(dy, x, w)):
        _assert_close(got, want, name)


@has_direct
@pytest.mark.parametrize("need_dx", [True, False])
@pytest.mark.parametrize("xs,ws", DIRECT_CASES, ids=IDS)
def test_fast_paths_equal_the_plain_path(xs, ws, need_dx, rng):
    # Each fast piece against the im2col + GEMM piece on the same input: equal within float32
    # rounding of the same sums in another order; db is the same sum either way, bit for bit.
    x, w, b, dy = _case(rng, xs, ws)
    fast = (ops.conv2d_forward(x, w, b), *ops.conv2d_backward(dy, x, w, need_dx=need_dx))
    plain = (ops.conv2d_forward(x, w, b, paths="plain"),
             *ops.conv2d_backward(dy, x, w, need_dx=need_dx, paths="plain"))
    for name, a, c in zip("y dx dw".split(), fast, plain):
        if need_dx or name != "dx":
            _assert_close(a, c, name)
    np.testing.assert_array_equal(fast[3], plain[3], err_msg="db")
    if not need_dx:
        assert fast[1] is None and plain[1] is None


@pytest.mark.parametrize("paths", ["fast", "plain"])
@pytest.mark.parametrize("n", [3, 16])  # fast backward: dW by GEMM (reads the im2col it makes), dW direct
def test_col_from_forward_is_not_trusted_where_the_forward_may_run_direct(n, paths, rng):
    # The direct forward leaves col untouched, so a backward told COL_FROM_FORWARD must make
    # its own im2col there, whichever paths either call was given.
    xs, ws = (n, 20, 12, 12), (50, 20, 5, 5)
    x, w, b, dy = _case(rng, xs, ws)
    work = ops.conv2d_workspace(xs, ws, 1, 0, np.float32)
    work["col"][...] = np.nan
    y = np.empty(dy.shape, np.float32)
    _conv.conv2d_forward(y, x, w, b, 1, 1, 0, 0, work["col"], work["tmp"], 1)
    if _conv.direct_simd() != "baseline":
        assert np.isnan(work["col"]).all()
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    _conv.conv2d_backward(dx, dw, db, dy, x, w, 1, 1, 0, 0, work["col"], work["tmp"], work["dwt"],
                          1, col_state=COL_FROM_FORWARD, paths=PATHS[paths])
    if n == 16 and paths == "fast" and _conv.direct_simd() != "baseline":
        assert np.isnan(work["col"]).all()  # all-direct backward: no scratch at all
    for name, got, want in zip("dx dw db".split(), (dx, dw, db), ref.conv2d_backward(dy, x, w)):
        _assert_close(got, want, name)


def test_raw_kernels_refuse_unknown_options(rng):
    xs, ws = (2, 1, 6, 10), (2, 1, 3, 3)
    x, w, b, dy = _case(rng, xs, ws)
    work = ops.conv2d_workspace(xs, ws, 1, 0, np.float32)
    y, dx, dw, db = np.empty(dy.shape, np.float32), np.empty_like(x), np.empty_like(w), np.empty_like(b)
    with pytest.raises(ValueError, match="paths must be ConvPaths.FAST_PATHS"):
        _conv.conv2d_forward(y, x, w, b, 1, 1, 0, 0, work["col"], work["tmp"], 1, paths=2)
    with pytest.raises(ValueError, match="col_state must be"):
        _conv.conv2d_backward(dx, dw, db, dy, x, w, 1, 1, 0, 0, work["col"], work["tmp"],
                              work["dwt"], 1, col_state=2)
    with pytest.raises(ValueError, match="paths must be one of 'fast', 'plain', got 'direct'"):
        ops.conv2d_forward(x, w, b, paths="direct")
    with pytest.raises(ValueError, match="paths"):
        ops.conv2d_backward(dy, x, w, paths=True)
    with pytest.raises(TypeError, match="dtype"):
        ops.conv2d_algorithms(xs, ws, dtype=np.int32)
    assert _conv.direct_simd() in ("avx512f+fma", "avx2+fma", "baseline")


@pytest.mark.parametrize("xs,ws", [((2, 2, 5, 10), (3, 2, 3, 3)), ((1, 1, 4, 13), (2, 1, 2, 2))])
def test_direct_backward_matches_finite_differences(xs, ws, rng):
    x, w, b, dy = _case(rng, xs, ws)
    # The loss is linear in x, w and b, so central differences have no truncation error; it is
    # summed in float64 so the only noise is float32 rounding of the convolution itself.
    loss = lambda: float(np.sum(ops.conv2d_forward(x, w, b).astype(np.float64) * dy))
    dx, dw, db = ops.conv2d_backward(dy, x, w)
    # Relative to the whole gradient's norm: an entry that cancels to ~1e-3 keeps float32's
    # absolute rounding, which an elementwise relative test would blow up.
    for got, a in [(dx, x), (dw, w), (db, b)]:
        numeric = ref.numeric_grad(loss, a, eps=0.5)
        assert np.linalg.norm(got - numeric) / np.linalg.norm(numeric) < 1e-5


@pytest.mark.parametrize("xs,ws", [((64, 1, 28, 28), (20, 1, 5, 5)), ((5, 2, 9, 25), (7, 2, 3, 1))])
def test_direct_is_bitwise_the_same_on_one_and_two_threads(xs, ws, rng, threads):
    # Forward units and dW tiles each belong to one thread and sum in a fixed order.
    x, w, b, dy = _case(rng, xs, ws)
    results = []
    for n in (1, 2):
        threads(n)
        results.append((ops.conv2d_forward(x, w, b), *ops.conv2d_backward(dy, x, w)))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)
