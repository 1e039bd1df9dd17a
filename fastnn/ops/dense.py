"""Dense (fully connected) ops, PyTorch layout: y = x @ w.T + b."""
from .. import _dense
from .._runtime import get_num_threads
from . import _check as check


def dense_forward(x, w, b, out=None):
    """x (N, I), w (O, I), b (O,) -> y (N, O). Non-contiguous inputs are copied."""
    op = "dense_forward"
    x = check.float_array(op, "x", x, 2)
    w = check.float_array(op, "w", w, 2)
    b = check.float_array(op, "b", b, 1)
    dtype = check.same_dtype(op, x=x, w=w, b=b)
    n, i = x.shape
    check.shape_is(op, "w", w, (None, i))
    o = w.shape[0]
    check.shape_is(op, "b", b, (o,))
    y = check.output(op, "out", out, (n, o), dtype)
    _dense.dense_forward(y, x, w, b, 0, get_num_threads())
    return y


def dense_backward(dy, x, w):
    """dy (N, O), x (N, I), w (O, I) -> (dx (N, I), dw (O, I), db (O,)). Copies strided inputs."""
    op = "dense_backward"
    dy = check.float_array(op, "dy", dy, 2)
    x = check.float_array(op, "x", x, 2)
    w = check.float_array(op, "w", w, 2)
    dtype = check.same_dtype(op, dy=dy, x=x, w=w)
    n, i = x.shape
    check.shape_is(op, "w", w, (None, i))
    o = w.shape[0]
    check.shape_is(op, "dy", dy, (n, o))
    dx = check.output(op, "dx", None, (n, i), dtype)
    dw = check.output(op, "dw", None, (o, i), dtype)
    db = check.output(op, "db", None, (o,), dtype)
    _dense.dense_backward(dx, dw, db, dy, x, w, None, 0, get_num_threads())
    return dx, dw, db
