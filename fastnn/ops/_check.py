"""Validation at the kernel boundary. Every public op checks here; kernels trust their inputs.

Messages name the op, the argument, what was received and what was expected.
Non-contiguous float arrays are copied to C order (documented in each op); anything else that
is not a float32/float64 ndarray is refused, never silently cast.
"""
import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)


def float_array(op, name, a, ndim=None):
    """`a` as a C-contiguous float32/float64 ndarray with `ndim` dims (copied if strided)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{op}: {name} must be a numpy.ndarray of float32 or float64, got {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must have dtype float32 or float64, got {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D, got {a.ndim}-D ({name}.shape={a.shape})")
    if a.size == 0:
        raise ValueError(f"{op}: {name} must not be empty ({name}.shape={a.shape})")
    return np.ascontiguousarray(a)


def int_array(op, name, a, ndim=None):
    """`a` as a C-contiguous int64 ndarray (integer dtypes are widened, floats refused)."""
    if not isinstance(a, np.ndarray) or not np.issubdtype(a.dtype, np.integer):
        got = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
        raise TypeError(f"{op}: {name} must be an integer numpy.ndarray, got {got}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D, got {a.ndim}-D ({name}.shape={a.shape})")
    return np.ascontiguousarray(a, dtype=np.int64)


def same_dtype(op, **arrays):
    """All arrays share one dtype; returns it."""
    dtypes = {name: a.dtype for name, a in arrays.items()}
    if len(set(dtypes.values())) > 1:
        described = ", ".join(f"{name} is {dt}" for name, dt in dtypes.items())
        raise TypeError(f"{op}: mixed dtypes ({described}); use all float32 or all float64")
    return next(iter(dtypes.values()))


def shape_is(op, name, a, expected):
    """`a.shape` equals `expected` (None in `expected` matches any size)."""
    if len(a.shape) != len(expected) or any(e is not None and e != s for s, e in zip(a.shape, expected)):
        shown = tuple("*" if e is None else e for e in expected)
        raise ValueError(f"{op}: {name} must have shape {shown}, got {a.shape}")


def positive_int(op, name, value, minimum=1):
    """`value` is an int >= minimum (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value}")
    return int(value)


def pair(op, name, value, minimum=1):
    """An int or a pair of ints (height, width), each >= minimum."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{op}: {name} must be an int or a (height, width) pair, got {value!r}")
        return positive_int(op, name, value[0], minimum), positive_int(op, name, value[1], minimum)
    v = positive_int(op, name, value, minimum)
    return v, v


def choice(op, name, value, choices):
    """choices[value]: `choices` maps each accepted name to what the kernel takes."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{op}: {name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return choices[value]


def finite_float(op, name, value, minimum=None):
    """A real number (optionally >= minimum)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: {name} must be a number, got {type(value).__name__}") from None
    if not np.isfinite(v):
        raise ValueError(f"{op}: {name} must be finite, got {value!r}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return v


def output(op, name, out, shape, dtype):
    """A fresh output array, or the caller's `out` after checking it fits."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray) or out.dtype != dtype or out.shape != tuple(shape) \
            or not out.flags.c_contiguous or not out.flags.writeable:
        got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise ValueError(f"{op}: {name} must be a writable C-contiguous {np.dtype(dtype)} array of "
                         f"shape {tuple(shape)}, got {got}")
    return out
