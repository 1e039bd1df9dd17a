"""The direct float32 convolution (src_c/fastnn_direct_conv.h): stride 1, no padding, output rows
of >= 8 columns. Checked against the numpy reference, against the im2col + GEMM path on the same
input, and by finite differences, over the tails of its register tiles."""
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


@pytest.fixture
def im2col_only():
    previous = _conv.set_direct(False)
    yield
    _conv.set_direct(previous)


def test_set_direct_returns_the_previous_setting():
    assert _conv.set_direct(False) is True
    assert _conv.set_direct(True) is False
    assert _conv.direct_simd() in ("avx2+fma", "baseline")


@pytest.mark.parametrize("xs,ws", DIRECT_CASES, ids=IDS)
def test_direct_matches_reference(xs, ws, rng):
    x, w, b, dy = _case(rng, xs, ws)
    _assert_close(ops.conv2d_forward(x, w, b), ref.conv2d_forward(x, w, b), "y")
    for name, got, want in zip("dx dw db".split(), ops.conv2d_backward(dy, x, w),
                               ref.conv2d_backward(dy, x, w)):
        _assert_close(got, want, name)


@pytest.mark.parametrize("xs,ws", DIRECT_CASES, ids=IDS)
def test_direct_agrees_with_im2col_path(xs, ws, rng, request):
    x, w, b, dy = _case(rng, xs, ws)
    direct = (ops.conv2d_forward(x, w, b), *ops.conv2d_backward(dy, x, w))
    request.getfixturevalue("im2col_only")
    gemm = (ops.conv2d_forward(x, w, b), *ops.conv2d_backward(dy, x, w))
    for name, a, c in zip("y dx dw db".split(), direct, gemm):
        _assert_close(a, c, name)


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


@pytest.mark.parametrize("n", [3, 16])  # dW by GEMM (reads the im2col it makes), dW direct
def test_direct_forward_skips_im2col_and_backward_does_not_trust_col(n, rng):
    # The direct forward leaves col untouched (so it must not be trusted by a col_ready backward).
    xs, ws = (n, 20, 12, 12), (50, 20, 5, 5)
    x, w, b, dy = _case(rng, xs, ws)
    work = ops.conv2d_workspace(xs, ws, 1, 0, np.float32)
    work["col"][...] = np.nan
    y = np.empty(dy.shape, np.float32)
    _conv.conv2d_forward(y, x, w, b, 1, 1, 0, 0, work["col"], work["tmp"], 1)
    assert np.isnan(work["col"]).all()
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    _conv.conv2d_backward(dx, dw, db, dy, x, w, 1, 1, 0, 0, work["col"], work["tmp"], work["dwt"],
                          1, col_ready=True)
    if n == 16:  # all-direct backward: no scratch at all
        assert np.isnan(work["col"]).all()
    for name, got, want in zip("dx dw db".split(), (dx, dw, db), ref.conv2d_backward(dy, x, w)):
        _assert_close(got, want, name)


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
