"""Gradient-check helpers shared by every family."""
import numpy as np


def numeric_grad(f, a, eps=1e-6):
    """Central differences of scalar f() with respect to every element of `a` (changed in place)."""
    grad = np.zeros_like(a)
    flat, gflat = a.reshape(-1), grad.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        plus = f()
        flat[k] = old - eps
        minus = f()
        flat[k] = old
        gflat[k] = (plus - minus) / (2 * eps)
    return grad


def rel_error(a, b):
    """max |a - b| / max(|a|, |b|, 1e-8), elementwise: the gradient-check measure."""
    return float(np.max(np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-8)))
