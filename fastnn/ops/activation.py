"""Element-wise activation ops on arrays of any shape.

Backward functions take the forward OUTPUT y (sigmoid' = y (1 - y), tanh' = 1 - y^2), so no
extra buffer is kept; relu_backward accepts x or y, which share their sign pattern.
Strided inputs are copied; the in-place variants (relu_, ...) refuse them instead, since an
update of a copy would be silently lost.
"""
from .. import _activation
from .._runtime import get_num_threads
from . import _check as check

__all__ = ["relu", "sigmoid", "tanh", "relu_", "sigmoid_", "tanh_",
           "relu_backward", "sigmoid_backward", "tanh_backward"]


def inplace_array(op, name, a):
    """`a` itself, refused unless it is a writable C-contiguous float32/float64 array."""
    check.float_array(op, name, a)
    if not a.flags.c_contiguous or not a.flags.writeable:
        raise ValueError(f"{op}: {name} is updated in place, so it must be a writable C-contiguous "
                         f"array, got strides {a.strides} for shape {a.shape} "
                         f"(writeable={a.flags.writeable}); pass np.ascontiguousarray({name}) and "
                         f"keep the result")
    return a


def _forward(op, kernel, x, out):
    x = check.float_array(op, "x", x)
    y = check.output(op, "out", out, x.shape, x.dtype)
    kernel(y.reshape(-1), x.reshape(-1), get_num_threads())
    return y


def _inplace(op, kernel, x):
    x = inplace_array(op, "x", x)
    kernel(x.reshape(-1), x.reshape(-1), get_num_threads())
    return x


def _backward(op, kernel, dy, y, y_name, out):
    dy = check.float_array(op, "dy", dy)
    y = check.float_array(op, y_name, y)
    check.same_dtype(op, dy=dy, **{y_name: y})
    check.shape_is(op, "dy", dy, y.shape)
    dx = check.output(op, "out", out, y.shape, y.dtype)
    kernel(dx.reshape(-1), dy.reshape(-1), y.reshape(-1), get_num_threads())
    return dx


def relu(x, out=None):
    """max(x, 0), same shape; out may be x."""
    return _forward("relu", _activation.relu_forward, x, out)


def sigmoid(x, out=None):
    """1 / (1 + exp(-x)), same shape; out may be x."""
    return _forward("sigmoid", _activation.sigmoid_forward, x, out)


def tanh(x, out=None):
    """tanh(x), same shape; out may be x."""
    return _forward("tanh", _activation.tanh_forward, x, out)


def relu_(x):
    """relu in place; returns x."""
    return _inplace("relu_", _activation.relu_forward, x)


def sigmoid_(x):
    """sigmoid in place; returns x."""
    return _inplace("sigmoid_", _activation.sigmoid_forward, x)


def tanh_(x):
    """tanh in place; returns x."""
    return _inplace("tanh_", _activation.tanh_forward, x)


def relu_backward(dy, y_or_x, out=None):
    """dx = dy where the relu input (or, equivalently, its output) is > 0, else 0."""
    return _backward("relu_backward", _activation.relu_backward, dy, y_or_x, "y_or_x", out)


def sigmoid_backward(dy, y, out=None):
    """dx = dy * y * (1 - y), with y = sigmoid(x) the forward OUTPUT."""
    return _backward("sigmoid_backward", _activation.sigmoid_backward, dy, y, "y", out)


def tanh_backward(dy, y, out=None):
    """dx = dy * (1 - y^2), with y = tanh(x) the forward OUTPUT."""
    return _backward("tanh_backward", _activation.tanh_backward, dy, y, "y", out)
