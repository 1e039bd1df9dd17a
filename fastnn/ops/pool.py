"""Max pooling and depooling ops, NCHW, no padding (PyTorch MaxPool2d(return_indices=True) and
MaxUnpool2d). argmax holds the flat index h*W + w of each max inside its (H, W) input plane."""
from .. import _pool
from .._runtime import get_num_threads
from . import _check as check

__all__ = ["maxpool2d_forward", "depool2d", "depool2d_backward"]


def maxpool2d_forward(x, kernel=2, stride=None):
    """x (N, C, H, W) -> (y (N, C, P, Q), argmax int64 (N, C, P, Q)), P = (H - kh)//sh + 1.

    kernel and stride are an int or an (h, w) pair; stride defaults to kernel. Windows may
    overlap (stride < kernel). Ties pick the first max in row-major order. Strided x is copied.
    """
    op = "maxpool2d_forward"
    x = check.float_array(op, "x", x, 4)
    kh, kw = check.pair(op, "kernel", kernel)
    sh, sw = (kh, kw) if stride is None else check.pair(op, "stride", stride)
    n, c, h, w = x.shape
    if kh > h or kw > w:
        raise ValueError(f"{op}: kernel {(kh, kw)} is larger than the input plane {(h, w)} "
                         f"(x.shape={x.shape})")
    shape = (n, c, (h - kh) // sh + 1, (w - kw) // sw + 1)
    y = check.output(op, "y", None, shape, x.dtype)
    argmax = check.output(op, "argmax", None, shape, "int64")
    _pool.maxpool2d_forward(y, argmax, x, kh, kw, sh, sw, get_num_threads())
    return y, argmax


def _argmax_in_plane(op, argmax, plane_size):
    # The kernels index with argmax unchecked: one min/max pass here keeps them in bounds.
    lo, hi = int(argmax.min()), int(argmax.max())
    if lo < 0 or hi >= plane_size:
        raise ValueError(f"{op}: argmax values must be in [0, {plane_size}) (H*W of the input "
                         f"plane), got range [{lo}, {hi}]")


def depool2d(values, argmax, input_shape):
    """values (N, C, P, Q), argmax (N, C, P, Q) -> out `input_shape` (N, C, H, W).

    out is zero except at argmax, where values are summed (overlapping windows that picked the
    same input add up, as in PyTorch MaxUnpool2d). This is also the max-pool backward
    (values = dy, out = dx).
    """
    op = "depool2d"
    values = check.float_array(op, "values", values, 4)
    argmax = check.int_array(op, "argmax", argmax, 4)
    check.shape_is(op, "argmax", argmax, values.shape)
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 4:
        raise ValueError(f"{op}: input_shape must be (N, C, H, W), got {input_shape!r}")
    n, c, h, w = (check.positive_int(op, "input_shape", s) for s in input_shape)
    if (n, c) != values.shape[:2] or h < values.shape[2] or w < values.shape[3]:
        raise ValueError(f"{op}: input_shape {tuple(input_shape)} does not fit values.shape="
                         f"{values.shape}: expected ({values.shape[0]}, {values.shape[1]}, "
                         f">={values.shape[2]}, >={values.shape[3]})")
    _argmax_in_plane(op, argmax, h * w)
    out = check.output(op, "out", None, (n, c, h, w), values.dtype)
    _pool.depool2d(out, values, argmax, get_num_threads())
    return out


def depool2d_backward(dout, argmax):
    """dout (N, C, H, W), argmax (N, C, P, Q) -> dvalues (N, C, P, Q) = dout gathered at argmax."""
    op = "depool2d_backward"
    dout = check.float_array(op, "dout", dout, 4)
    argmax = check.int_array(op, "argmax", argmax, 4)
    n, c, h, w = dout.shape
    check.shape_is(op, "argmax", argmax, (n, c, None, None))
    if argmax.size == 0:
        raise ValueError(f"{op}: argmax must not be empty (argmax.shape={argmax.shape})")
    _argmax_in_plane(op, argmax, h * w)
    dvalues = check.output(op, "dvalues", None, argmax.shape, dout.dtype)
    _pool.depool2d_backward(dvalues, dout, argmax, get_num_threads())
    return dvalues
