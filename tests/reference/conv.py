"""conv2d oracle: direct convolution as a sum over kernel offsets (r, s), no im2col.

Cross-correlation like PyTorch: y[n, k, p, q] = b[k] + sum_{c, r, s} w[k, c, r, s] *
xpad[n, c, p*sh + r, q*sw + s], where xpad is x with zero padding.
"""
import numpy as np


def _pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)


def _window(xp, r, s, P, Q, sh, sw):
    """xp[:, :, p*sh + r, q*sw + s] for all p < P, q < Q: the input under kernel offset (r, s)."""
    return xp[:, :, r:r + sh * (P - 1) + 1:sh, s:s + sw * (Q - 1) + 1:sw]


def conv2d_forward(x, w, b, stride=1, padding=0):
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    P, Q = (H + 2 * ph - R) // sh + 1, (W + 2 * pw - S) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((N, K, P, Q), dtype=x.dtype)
    for r in range(R):
        for s in range(S):
            y += np.einsum("ncpq,kc->nkpq", _window(xp, r, s, P, Q, sh, sw), w[:, :, r, s])
    return y + b.reshape(1, K, 1, 1)


def conv2d_backward(dy, x, w, stride=1, padding=0):
    """-> (dx, dw, db) of sum(y * dy)."""
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    P, Q = dy.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for r in range(R):
        for s in range(S):
            dw[:, :, r, s] = np.einsum("nkpq,ncpq->kc", dy, _window(xp, r, s, P, Q, sh, sw))
            _window(dxp, r, s, P, Q, sh, sw)[...] += np.einsum("nkpq,kc->ncpq", dy, w[:, :, r, s])
    return dxp[:, :, ph:ph + H, pw:pw + W], dw, dy.sum(axis=(0, 2, 3))
