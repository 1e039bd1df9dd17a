"""conv2d ops, NCHW, PyTorch semantics (cross-correlation, zero padding, no dilation/groups).

x (N, C, H, W), w (K, C, R, S), b (K,) -> y (N, K, P, Q), P = (H + 2*pad_h - R) // stride_h + 1.
The compiled kernels (fastnn._conv) need two scratch arrays; `conv2d_workspace` makes them so a
layer allocates once at build time and then calls the raw kernels directly:

    ws = conv2d_workspace(x_shape, w_shape, stride, padding, dtype)
    _conv.conv2d_forward(y, x, w, b, sh, sw, ph, pw, ws["col"], ws["tmp"], num_threads)
    _conv.conv2d_backward(dx_or_None, dw, db, dy, x, w, sh, sw, ph, pw, ws["col"], ws["tmp"],
                          ws["dwt"], num_threads, col_state=_conv.ColState.COL_FROM_FORWARD)

COL_FROM_FORWARD skips backward's im2col; pass it only when the layer's last conv2d_forward on
this workspace saw the same x (the usual forward-then-backward of one batch).

Each piece (forward, dW, dX) runs the direct kernels or im2col + GEMM by fixed rules
(`conv2d_algorithms` tells which; docs/kernels.md states them). paths="plain" forces im2col +
GEMM everywhere: the reference the direct kernels are tested against.
"""
import numpy as np

from .. import _conv
from .._runtime import get_num_threads
from . import _check as check

__all__ = ["conv2d_forward", "conv2d_backward", "conv2d_output_shape", "conv2d_workspace",
           "conv2d_algorithms"]

_INT_MAX = 2**31 - 1  # OpenBLAS (LP64) takes int sizes and leading dimensions
PATHS = {"fast": _conv.ConvPaths.FAST_PATHS, "plain": _conv.ConvPaths.PLAIN_PATH}


def _shape4(op, name, shape):
    """A shape given as 4 positive ints."""
    if not isinstance(shape, (tuple, list)) or len(shape) != 4:
        raise ValueError(f"{op}: {name} must be a 4-tuple of ints, got {shape!r}")
    return tuple(check.positive_int(op, name, v) for v in shape)


def _geometry(op, x_shape, w_shape, stride, padding):
    """Checked ((sh, sw), (ph, pw), (N, K, P, Q)) for an x of x_shape and a w of w_shape."""
    (sh, sw), (ph, pw) = check.pair(op, "stride", stride, 1), check.pair(op, "padding", padding, 0)
    n, c, h, wd = x_shape
    k, wc, r, s = w_shape
    if wc != c:
        raise ValueError(f"{op}: w has {wc} channels but x has {c} (x.shape={tuple(x_shape)})")
    if r > h + 2 * ph or s > wd + 2 * pw:
        raise ValueError(f"{op}: kernel ({r}, {s}) is larger than the padded input "
                         f"({h + 2 * ph}, {wd + 2 * pw}) (x.shape={tuple(x_shape)}, "
                         f"padding=({ph}, {pw}))")
    p, q = (h + 2 * ph - r) // sh + 1, (wd + 2 * pw - s) // sw + 1
    if max(n * p * q, c * r * s, k) > _INT_MAX:
        raise ValueError(f"{op}: N*P*Q={n * p * q} or C*R*S={c * r * s} exceeds the 2**31-1 "
                         f"BLAS limit (x.shape={tuple(x_shape)}, w.shape={tuple(w_shape)})")
    return (sh, sw), (ph, pw), (n, k, p, q)


def conv2d_output_shape(x_shape, w_shape, stride=1, padding=0):
    """(N, K, P, Q) of conv2d over an x of x_shape (N, C, H, W) and a w of w_shape (K, C, R, S)."""
    op = "conv2d_output_shape"
    return _geometry(op, _shape4(op, "x_shape", x_shape), _shape4(op, "w_shape", w_shape),
                     stride, padding)[2]


def conv2d_workspace(x_shape, w_shape, stride=1, padding=0, dtype=np.float32):
    """Scratch for the raw kernels, a dict of `dtype` arrays:
    {"col": (C*R*S, N*P*Q), "tmp": (K, N*P*Q), "dwt": (C*R*S, K)} (layouts in src_c/conv.pxd).

    Allocate once per layer and reuse for every forward and backward call.
    Size: (C*R*S + K) * N*P*Q + C*R*S*K elements.
    """
    op = "conv2d_workspace"
    x_shape, w_shape = _shape4(op, "x_shape", x_shape), _shape4(op, "w_shape", w_shape)
    n, k, p, q = _geometry(op, x_shape, w_shape, stride, padding)[2]
    dtype = np.dtype(dtype)
    if dtype not in check.FLOAT_DTYPES:
        raise TypeError(f"{op}: dtype must be float32 or float64, got {dtype}")
    _, c, _, _ = x_shape
    _, _, r, s = w_shape
    return {"col": np.empty((c * r * s, n * p * q), dtype), "tmp": np.empty((k, n * p * q), dtype),
            "dwt": np.empty((c * r * s, k), dtype)}


def conv2d_algorithms(x_shape, w_shape, stride=1, padding=0, dtype=np.float32, need_dx=True,
                      paths="fast"):
    """{"forward", "dw", "dx": "direct", "im2col" or None}: the algorithm each piece of conv2d
    runs for these sizes (dx is None when need_dx is False), from the kernels' own dispatch."""
    op = "conv2d_algorithms"
    x_shape, w_shape = _shape4(op, "x_shape", x_shape), _shape4(op, "w_shape", w_shape)
    strides, pads, _ = _geometry(op, x_shape, w_shape, stride, padding)
    dtype = np.dtype(dtype)
    if dtype not in check.FLOAT_DTYPES:
        raise TypeError(f"{op}: dtype must be float32 or float64, got {dtype}")
    return _conv.conv2d_algorithms(x_shape, w_shape, strides, pads, dtype.name,
                                   need_dx=bool(need_dx), paths=check.choice(op, "paths", paths, PATHS))


def conv2d_forward(x, w, b, stride=1, padding=0, out=None, paths="fast"):
    """x (N, C, H, W), w (K, C, R, S), b (K,) -> y (N, K, P, Q).

    stride, padding: int or (height, width) pair. Non-contiguous inputs are copied.
    paths: "fast" (the default) or "plain" (im2col + GEMM only; see conv2d_algorithms).
    Allocates its scratch each call; layers use conv2d_workspace and fastnn._conv instead.
    """
    op = "conv2d_forward"
    path = check.choice(op, "paths", paths, PATHS)
    x = check.float_array(op, "x", x, 4)
    w = check.float_array(op, "w", w, 4)
    b = check.float_array(op, "b", b, 1)
    dtype = check.same_dtype(op, x=x, w=w, b=b)
    (sh, sw), (ph, pw), y_shape = _geometry(op, x.shape, w.shape, stride, padding)
    check.shape_is(op, "b", b, (w.shape[0],))
    y = check.output(op, "out", out, y_shape, dtype)
    ws = conv2d_workspace(x.shape, w.shape, stride, padding, dtype)
    _conv.conv2d_forward(y, x, w, b, sh, sw, ph, pw, ws["col"], ws["tmp"], get_num_threads(),
                         paths=path)
    return y


def conv2d_backward(dy, x, w, stride=1, padding=0, need_dx=True, paths="fast"):
    """dy (N, K, P, Q), x (N, C, H, W), w (K, C, R, S) -> (dx, dw, db) of sum(y * dy).

    dx is None when need_dx is False (a first layer: no dX is computed).
    stride, padding: int or (height, width) pair. Non-contiguous inputs are copied.
    paths: as conv2d_forward's.
    """
    op = "conv2d_backward"
    path = check.choice(op, "paths", paths, PATHS)
    dy = check.float_array(op, "dy", dy, 4)
    x = check.float_array(op, "x", x, 4)
    w = check.float_array(op, "w", w, 4)
    dtype = check.same_dtype(op, dy=dy, x=x, w=w)
    (sh, sw), (ph, pw), y_shape = _geometry(op, x.shape, w.shape, stride, padding)
    check.shape_is(op, "dy", dy, y_shape)
    dx = np.empty(x.shape, dtype) if need_dx else None
    dw, db = np.empty(w.shape, dtype), np.empty(w.shape[0], dtype)
    ws = conv2d_workspace(x.shape, w.shape, stride, padding, dtype)
    _conv.conv2d_backward(dx, dw, db, dy, x, w, sh, sw, ph, pw, ws["col"], ws["tmp"], ws["dwt"],
                          get_num_threads(), paths=path)
    return dx, dw, db
