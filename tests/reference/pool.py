"""Max pooling / depooling oracles: naive loops over every window."""
import numpy as np


def maxpool2d_forward(x, kernel, stride):
    """-> (y, argmax) with argmax = h*W + w of the first max (row-major) in each window."""
    (kh, kw), (sh, sw) = kernel, stride
    n, c, h, w = x.shape
    p, q = (h - kh) // sh + 1, (w - kw) // sw + 1
    y = np.empty((n, c, p, q), x.dtype)
    argmax = np.empty((n, c, p, q), np.int64)
    for i in range(n):
        for j in range(c):
            for a in range(p):
                for b in range(q):
                    window = x[i, j, a * sh:a * sh + kh, b * sw:b * sw + kw]
                    r, s = np.unravel_index(np.argmax(window), window.shape)
                    y[i, j, a, b] = window[r, s]
                    argmax[i, j, a, b] = (a * sh + r) * w + b * sw + s
    return y, argmax


def depool2d(values, argmax, input_shape):
    """Zeros of input_shape with values summed in at argmax (MaxUnpool2d with overlap)."""
    out = np.zeros(input_shape, values.dtype)
    n, c, h, w = input_shape
    for i in range(n):
        for j in range(c):
            np.add.at(out[i, j].reshape(-1), argmax[i, j].reshape(-1), values[i, j].reshape(-1))
    return out


def depool2d_backward(dout, argmax):
    n, c = dout.shape[:2]
    flat = dout.reshape(n, c, -1)
    return np.take_along_axis(flat, argmax.reshape(n, c, -1), axis=2).reshape(argmax.shape)
