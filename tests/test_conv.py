import numpy as np
import pytest

from fastnn import _conv, ops

import reference as ref
from support import TOL

# (x shape, w shape, stride, padding): odd and non-square sizes, strides, paddings, 1 channel.
CASES = [
    ((2, 3, 7, 9), (4, 3, 3, 2), 1, 0),
    ((2, 3, 7, 9), (4, 3, 3, 2), 2, 1),
    ((1, 1, 5, 5), (2, 1, 3, 3), (2, 1), (1, 2)),
    ((3, 2, 8, 6), (5, 2, 1, 4), (1, 3), (2, 0)),
    ((1, 1, 28, 28), (6, 1, 5, 5), 1, 2),
    ((4, 5, 6, 11), (3, 5, 6, 3), (3, 2), 1),
    ((2, 4, 4, 4), (3, 4, 4, 4), 1, 0),       # kernel covers the image: P = Q = 1
    ((2, 2, 3, 3), (3, 2, 5, 5), 1, 1),       # kernel larger than the input, padding makes room
    ((3, 20, 12, 12), (7, 20, 5, 5), 1, 0),   # LeNet's second convolution, small batch
    ((2, 3, 9, 7), (2, 3, 2, 3), 2, 2),
]
IDS = [f"x{c[0]}-w{c[1]}-s{c[2]}-p{c[3]}".replace(" ", "") for c in CASES]


def _random(rng, dtype, *shapes):
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


@pytest.mark.parametrize("xs,ws,stride,padding", CASES, ids=IDS)
def test_conv2d_forward_matches_reference(xs, ws, stride, padding, dtype, rng):
    x, w, b = _random(rng, dtype, xs, ws, ws[:1])
    y = ops.conv2d_forward(x, w, b, stride, padding)
    assert y.shape == ops.conv2d_output_shape(xs, ws, stride, padding) and y.dtype == dtype
    np.testing.assert_allclose(y, ref.conv2d_forward(x, w, b, stride, padding), **TOL[dtype])


@pytest.mark.parametrize("xs,ws,stride,padding", CASES, ids=IDS)
def test_conv2d_backward_matches_reference(xs, ws, stride, padding, dtype, rng):
    x, w = _random(rng, dtype, xs, ws)
    (dy,) = _random(rng, dtype, ops.conv2d_output_shape(xs, ws, stride, padding))
    got = ops.conv2d_backward(dy, x, w, stride, padding)
    for name, g, want in zip("dx dw db".split(), got, ref.conv2d_backward(dy, x, w, stride, padding)):
        assert g.dtype == dtype, name
        np.testing.assert_allclose(g, want, **TOL[dtype], err_msg=name)


@pytest.mark.parametrize("xs,ws,stride,padding", [
    ((2, 2, 5, 4), (3, 2, 3, 2), 1, 0),
    ((1, 1, 6, 5), (2, 1, 3, 3), 2, 1),
    ((2, 3, 4, 5), (2, 3, 2, 3), (1, 2), (2, 1)),
])
def test_conv2d_backward_matches_finite_differences(xs, ws, stride, padding, rng):
    x, w, b = _random(rng, np.float64, xs, ws, ws[:1])
    (dy,) = _random(rng, np.float64, ops.conv2d_output_shape(xs, ws, stride, padding))
    loss = lambda: float(np.sum(ops.conv2d_forward(x, w, b, stride, padding) * dy))
    dx, dw, db = ops.conv2d_backward(dy, x, w, stride, padding)
    # The loss is linear in each of x, w, b, so central differences have no truncation error
    # and a larger eps only cuts rounding noise (which eps=1e-6 puts at ~1e-5 on tiny entries).
    assert ref.rel_error(dx, ref.numeric_grad(loss, x, eps=1e-3)) < 1e-6
    assert ref.rel_error(dw, ref.numeric_grad(loss, w, eps=1e-3)) < 1e-6
    assert ref.rel_error(db, ref.numeric_grad(loss, b, eps=1e-3)) < 1e-6


def test_reference_backward_matches_finite_differences(rng):
    # The oracle is checked too, so a shared mistake cannot hide.
    x, w, b = _random(rng, np.float64, (1, 2, 5, 4), (2, 2, 3, 2), (2,))
    (dy,) = _random(rng, np.float64, ops.conv2d_output_shape(x.shape, w.shape, 2, 1))
    loss = lambda: float(np.sum(ref.conv2d_forward(x, w, b, 2, 1) * dy))
    dx, dw, db = ref.conv2d_backward(dy, x, w, 2, 1)
    for got, a in [(dx, x), (dw, w), (db, b)]:
        assert ref.rel_error(got, ref.numeric_grad(loss, a, eps=1e-3)) < 1e-6


def _raw_setup(rng, dtype, xs, ws, stride, padding):
    x, w, b = _random(rng, dtype, xs, ws, ws[:1])
    y_shape = ops.conv2d_output_shape(xs, ws, stride, padding)
    (dy,) = _random(rng, dtype, y_shape)
    work = ops.conv2d_workspace(xs, ws, stride, padding, dtype)
    return x, w, b, dy, np.empty(y_shape, dtype), work


def test_raw_backward_without_dx_and_with_col_from_forward(dtype, rng):
    xs, ws, stride, padding = (3, 2, 9, 8), (4, 2, 3, 2), (2, 1), (1, 0)
    x, w, b, dy, y, work = _raw_setup(rng, dtype, xs, ws, stride, padding)
    _, want_dw, want_db = ref.conv2d_backward(dy, x, w, stride, padding)
    dw, db = np.full_like(w, np.nan), np.full_like(b, np.nan)  # overwritten, never accumulated
    _conv.conv2d_backward(None, dw, db, dy, x, w, 2, 1, 1, 0, work["col"], work["tmp"],
                          work["dwt"], 2)
    np.testing.assert_allclose(dw, want_dw, **TOL[dtype])
    np.testing.assert_allclose(db, want_db, **TOL[dtype])
    # Forward leaves im2col(x) in col; backward may then skip it.
    _conv.conv2d_forward(y, x, w, b, 2, 1, 1, 0, work["col"], work["tmp"], 2)
    dx = np.full_like(x, np.nan)
    _conv.conv2d_backward(dx, dw, db, dy, x, w, 2, 1, 1, 0, work["col"], work["tmp"],
                          work["dwt"], 2, col_state=_conv.ColState.COL_FROM_FORWARD)
    np.testing.assert_allclose(dw, want_dw, **TOL[dtype])
    np.testing.assert_allclose(dx, ref.conv2d_backward(dy, x, w, stride, padding)[0], **TOL[dtype])


def test_ops_backward_need_dx_false(rng):
    x, w = _random(rng, np.float64, (2, 1, 6, 6), (3, 1, 3, 3))
    (dy,) = _random(rng, np.float64, (2, 3, 4, 4))
    dx, dw, db = ops.conv2d_backward(dy, x, w, need_dx=False)
    assert dx is None
    np.testing.assert_allclose(dw, ref.conv2d_backward(dy, x, w)[1], **TOL[np.float64])


@pytest.mark.parametrize("xs,ws,stride,padding", [((64, 20, 12, 12), (50, 20, 5, 5), 1, 0),
                                                  ((16, 3, 31, 29), (8, 3, 3, 5), (2, 1), 2)])
def test_conv2d_same_result_on_one_and_two_threads(xs, ws, stride, padding, rng, threads):
    x, w, b, dy, _, _ = _raw_setup(rng, np.float32, xs, ws, stride, padding)
    results = []
    for n in (1, 2):
        threads(n)
        results.append((ops.conv2d_forward(x, w, b, stride, padding),
                        *ops.conv2d_backward(dy, x, w, stride, padding)))
    for one, two in zip(*results):
        np.testing.assert_allclose(one, two, rtol=1e-5, atol=1e-4)


def test_conv2d_copies_non_contiguous_input_and_writes_out(rng):
    x = rng.standard_normal((2, 3, 8, 10))[:, :, :, ::2]
    w, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    out = np.empty((2, 4, 6, 3))
    assert ops.conv2d_forward(x, w, b, out=out) is out
    np.testing.assert_allclose(out, ref.conv2d_forward(x, w, b), **TOL[np.float64])
    dx, _, _ = ops.conv2d_backward(np.ones((2, 4, 6, 3))[:, ::-1], x, w)
    np.testing.assert_allclose(dx, ref.conv2d_backward(np.ones((2, 4, 6, 3)), x, w)[0],
                               **TOL[np.float64])


def test_workspace_shapes_and_output_shape():
    work = ops.conv2d_workspace((64, 20, 12, 12), (50, 20, 5, 5), dtype=np.float64)
    assert {k: v.shape for k, v in work.items()} == {"col": (500, 4096), "tmp": (50, 4096),
                                                     "dwt": (500, 50)}
    assert all(v.dtype == np.float64 for v in work.values())
    assert ops.conv2d_output_shape((1, 1, 7, 8), (1, 1, 3, 2), stride=(2, 3), padding=1) == (1, 1, 4, 3)


def _bad(x=(64, 1, 28, 28), w=(20, 1, 5, 5), b=(20,), dtype=np.float32):
    return [np.ones(s, dtype) for s in (x, w, b)]


@pytest.mark.parametrize("args,kwargs,exc,word", [
    (_bad(w=(20, 3, 5, 5)), {}, ValueError, r"w has 3 channels but x has 1 \(x.shape=\(64, 1, 28, 28\)\)"),
    (_bad(x=(64, 28, 28)), {}, ValueError, "x must be 4-D"),
    (_bad(w=(20, 5, 5)), {}, ValueError, "w must be 4-D"),
    (_bad(b=(21,)), {}, ValueError, r"b must have shape \(20,\)"),
    (_bad(b=(20, 1)), {}, ValueError, "b must be 1-D"),
    (_bad(x=(0, 1, 28, 28)), {}, ValueError, "empty"),
    (_bad(), {"stride": 0}, ValueError, "stride must be >= 1"),
    (_bad(), {"stride": (1, 0)}, ValueError, "stride"),
    (_bad(), {"stride": (1, 2, 3)}, ValueError, "pair"),
    (_bad(), {"stride": 1.5}, TypeError, "stride must be an int"),
    (_bad(), {"padding": -1}, ValueError, "padding must be >= 0"),
    (_bad(w=(20, 1, 31, 5)), {}, ValueError, "kernel .* larger than the padded input"),
    (_bad(w=(20, 1, 31, 5)), {"padding": (1, 0)}, ValueError, "larger"),
    (_bad(), {"out": np.empty((64, 20, 24, 23), np.float32)}, ValueError, "out"),
    (_bad(), {"out": np.empty((64, 20, 24, 24))}, ValueError, "float32"),
])
def test_conv2d_forward_rejects_bad_input(args, kwargs, exc, word):
    with pytest.raises(exc, match=word):
        ops.conv2d_forward(*args, **kwargs)


def test_conv2d_rejects_mixed_and_non_float_dtypes():
    x, w, b = _bad()
    with pytest.raises(TypeError, match="mixed"):
        ops.conv2d_forward(x, w.astype(np.float64), b)
    with pytest.raises(TypeError, match="dtype"):
        ops.conv2d_forward(x.astype(np.int32), w, b)
    with pytest.raises(TypeError, match="ndarray"):
        ops.conv2d_forward(x.tolist(), w, b)
    with pytest.raises(TypeError, match="mixed"):
        ops.conv2d_backward(np.ones((64, 20, 24, 24)), x, w)
    with pytest.raises(TypeError, match="dtype"):
        ops.conv2d_workspace(x.shape, w.shape, dtype=np.int64)


def test_conv2d_backward_rejects_bad_input():
    x, w, _ = _bad()
    with pytest.raises(ValueError, match=r"dy must have shape \(64, 20, 24, 24\), got \(64, 20, 24, 23\)"):
        ops.conv2d_backward(np.ones((64, 20, 24, 23), np.float32), x, w)
    with pytest.raises(ValueError, match="dy must be 4-D"):
        ops.conv2d_backward(np.ones((64, 20, 576), np.float32), x, w)
    with pytest.raises(ValueError, match="channels"):
        ops.conv2d_backward(np.ones((64, 20, 24, 24), np.float32), x, np.ones((20, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match="padding"):
        ops.conv2d_backward(np.ones((64, 20, 24, 24), np.float32), x, w, padding=(0, -2))


def test_shape_helpers_reject_bad_shapes():
    with pytest.raises(ValueError, match="x_shape"):
        ops.conv2d_output_shape((1, 28, 28), (1, 1, 3, 3))
    with pytest.raises(ValueError, match="w_shape"):
        ops.conv2d_workspace((1, 1, 28, 28), (1, 0, 3, 3))
    with pytest.raises(ValueError, match="channels"):
        ops.conv2d_workspace((1, 2, 28, 28), (1, 1, 3, 3))


def test_raw_kernels_refuse_wrong_sizes_instead_of_writing_out_of_bounds(rng):
    x, w, b, dy, y, work = _raw_setup(rng, np.float32, (2, 3, 8, 8), (4, 3, 3, 3), 1, 0)
    small = ops.conv2d_workspace((1, 3, 8, 8), (4, 3, 3, 3))
    with pytest.raises(ValueError, match="col"):
        _conv.conv2d_forward(y, x, w, b, 1, 1, 0, 0, small["col"], small["tmp"], 1)
    with pytest.raises(ValueError, match="output"):
        _conv.conv2d_forward(y, x, w, b, 2, 1, 0, 0, work["col"], work["tmp"], 1)
    with pytest.raises(ValueError, match="stride"):
        _conv.conv2d_forward(y, x, w, b, 0, 1, 0, 0, work["col"], work["tmp"], 1)
    with pytest.raises(ValueError, match="b has 3"):
        _conv.conv2d_forward(y, x, w, b[:3], 1, 1, 0, 0, work["col"], work["tmp"], 1)
    with pytest.raises(ValueError, match="dwt"):
        _conv.conv2d_backward(None, np.empty_like(w), np.empty_like(b), dy, x, w, 1, 1, 0, 0,
                              work["col"], work["tmp"], small["dwt"][:5], 1)
    with pytest.raises(ValueError, match="dx"):
        _conv.conv2d_backward(np.empty((2, 3, 8, 7), np.float32), np.empty_like(w), np.empty_like(b),
                              dy, x, w, 1, 1, 0, 0, work["col"], work["tmp"], work["dwt"], 1)
