"""Gradient-check helpers shared by every family."""
import numpy as np


def numeric_grad(f, a, eps=1e-6, indices=None):
    """Central differences of scalar f() with respect to every element of `a` (changed in place
    and restored), or only to the flat `indices` given (then: an array of those derivatives)."""
    flat = a.reshape(-1)
    picks = range(flat.size) if indices is None else indices
    derivatives = []
    for k in picks:
        old = flat[k]
        flat[k] = old + eps
        plus = f()
        flat[k] = old - eps
        minus = f()
        flat[k] = old
        derivatives.append((plus - minus) / (2 * eps))
    derivatives = np.array(derivatives, dtype=a.dtype)
    return derivatives.reshape(a.shape) if indices is None else derivatives


def rel_error(a, b):
    """max |a - b| / max(|a|, |b|, 1e-8), elementwise: the gradient-check measure."""
    return float(np.max(np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-8)))
