"""Plain vectorized numpy networks written from scratch: the baseline fastnn users come from.

What a careful user writes without a framework: one matmul per Dense product, im2col through
`sliding_window_view` + one matmul per convolution, col2im and max-pool backward as one strided
add per kernel tap (R*S vectorized adds, never a per-element loop). float32 throughout. No
buffer reuse tricks: every pass allocates its outputs, as such code does.

Layers mirror fastnn's (same weight layouts: Dense w (units, inputs), Conv2D w (K, C, R, S));
`Net.from_spec` builds one from `baselines.spec_of(model)` and fastnn's initial weights.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _activate(z, activation):
    """In place on z (a fresh matmul result)."""
    if activation == "relu":
        np.maximum(z, 0, out=z)
    elif activation == "sigmoid":
        np.negative(z, out=z)
        np.exp(z, out=z)
        z += 1
        np.reciprocal(z, out=z)
    elif activation == "tanh":
        np.tanh(z, out=z)
    return z


def _activation_grad(dy, y, activation):
    """d loss / d pre-activation from d loss / d y and the activation's output y."""
    if activation == "relu":
        return dy * (y > 0)
    if activation == "sigmoid":
        return dy * y * (1 - y)
    if activation == "tanh":
        return dy * (1 - y * y)
    return dy


class Dense:
    def __init__(self, w, b, activation=None):
        self.params = {"w": w, "b": b}
        self.activation = activation

    def forward(self, x):
        self.x = x
        self.y = _activate(x @ self.params["w"].T + self.params["b"], self.activation)
        return self.y

    def backward(self, dy, need_dx=True):
        dz = _activation_grad(dy, self.y, self.activation)
        self.grads = {"w": dz.T @ self.x, "b": dz.sum(axis=0)}
        return dz @ self.params["w"] if need_dx else None


def conv2d_forward(x, w, b, stride=(1, 1), padding=(0, 0)):
    """x (N, C, H, W), w (K, C, R, S) -> y (N, K, P, Q) and the im2col matrix (N*P*Q, C*R*S)."""
    (sh, sw), (ph, pw) = stride, padding
    k, c, r, s = w.shape
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = sliding_window_view(x, (r, s), axis=(2, 3))[:, :, ::sh, ::sw]  # (N, C, P, Q, R, S)
    n, _, p, q = win.shape[:4]
    col = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * p * q, c * r * s)
    y = col @ w.reshape(k, -1).T + b  # (N*P*Q, K)
    return y.reshape(n, p, q, k).transpose(0, 3, 1, 2), col


def conv2d_backward(dy, col, x_shape, w, stride=(1, 1), padding=(0, 0), need_dx=True):
    """dy (N, K, P, Q) -> (dx or None, dw, db); `col` is conv2d_forward's im2col matrix."""
    (sh, sw), (ph, pw) = stride, padding
    k, c, r, s = w.shape
    n, _, p, q = dy.shape
    dy2 = dy.transpose(0, 2, 3, 1).reshape(n * p * q, k)
    dw = (dy2.T @ col).reshape(w.shape)
    db = dy.sum(axis=(0, 2, 3))
    if not need_dx:
        return None, dw, db
    dcol = (dy2 @ w.reshape(k, -1)).reshape(n, p, q, c, r, s).transpose(0, 3, 4, 5, 1, 2)
    _, _, h, wd = x_shape
    dx = np.zeros((n, c, h + 2 * ph, wd + 2 * pw), dy.dtype)
    for i in range(r):  # col2im: one strided add per kernel tap
        for j in range(s):
            dx[:, :, i:i + sh * p:sh, j:j + sw * q:sw] += dcol[:, :, i, j]
    return dx[:, :, ph:ph + h, pw:pw + wd], dw, db


class Conv2D:
    def __init__(self, w, b, stride=(1, 1), padding=(0, 0)):
        self.params = {"w": w, "b": b}
        self.stride, self.padding = tuple(stride), tuple(padding)

    def forward(self, x):
        self.x_shape = x.shape
        y, self.col = conv2d_forward(x, self.params["w"], self.params["b"], self.stride, self.padding)
        return y

    def backward(self, dy, need_dx=True):
        dx, dw, db = conv2d_backward(dy, self.col, self.x_shape, self.params["w"], self.stride,
                                     self.padding, need_dx)
        self.grads = {"w": dw, "b": db}
        return dx


def maxpool2d_forward(x, pool=(2, 2), stride=(2, 2)):
    """x (N, C, H, W) -> y (N, C, P, Q) and the index of each window's first max (row-major)."""
    (kh, kw), (sh, sw) = pool, stride
    win = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    win = win.reshape(win.shape[:4] + (kh * kw,))
    idx = win.argmax(axis=-1)
    return np.take_along_axis(win, idx[..., None], axis=-1)[..., 0], idx


def maxpool2d_backward(dy, idx, x_shape, pool=(2, 2), stride=(2, 2)):
    """Routes dy to each window's max: one strided add per window position (kh*kw adds)."""
    (kh, kw), (sh, sw) = pool, stride
    _, _, p, q = dy.shape
    dx = np.zeros(x_shape, dy.dtype)
    for i in range(kh):
        for j in range(kw):
            dx[:, :, i:i + sh * p:sh, j:j + sw * q:sw] += dy * (idx == i * kw + j)
    return dx


class MaxPool2D:
    params = {}

    def __init__(self, pool_size=(2, 2), stride=(2, 2)):
        self.pool, self.stride = tuple(pool_size), tuple(stride)

    def forward(self, x):
        self.x_shape = x.shape
        y, self.idx = maxpool2d_forward(x, self.pool, self.stride)
        return y

    def backward(self, dy, need_dx=True):
        return maxpool2d_backward(dy, self.idx, self.x_shape, self.pool, self.stride) if need_dx else None


class Activation:
    params = {}

    def __init__(self, activation):
        self.activation = activation

    def forward(self, x):
        self.y = _activate(x.copy(), self.activation)
        return self.y

    def backward(self, dy, need_dx=True):
        return _activation_grad(dy, self.y, self.activation) if need_dx else None


class Flatten:
    params = {}

    def forward(self, x):
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, dy, need_dx=True):
        return dy.reshape(self.shape) if need_dx else None


def softmax_cross_entropy(logits, labels):
    """Mean loss over the batch and its gradient w.r.t. the logits (stable: max subtracted)."""
    n, rows = len(logits), np.arange(len(logits))
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    total = e.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(total[:, 0]) - z[rows, labels]))
    grad = e / total
    grad[rows, labels] -= 1
    grad /= n
    return loss, grad


def mse_labels(out, labels):
    """Mean over the batch of 0.5 * ||out - one_hot(labels)||^2 (Nielsen's quadratic cost)."""
    diff = out.copy()
    diff[np.arange(len(out)), labels] -= 1
    loss = 0.5 * float(np.sum(diff * diff)) / len(out)
    diff /= len(out)
    return loss, diff


LOSSES = {"SoftmaxCrossEntropy": softmax_cross_entropy, "MSE": mse_labels}


class Net:
    """Layers + loss + SGD (PyTorch's form: v = momentum * v + g; p -= lr * v)."""

    def __init__(self, layers, loss, lr, momentum=0.0):
        self.layers, self.loss, self.lr, self.momentum = layers, LOSSES[loss], lr, momentum
        self.velocity = [np.zeros_like(p) for p in self.parameters()] if momentum else None

    @classmethod
    def from_spec(cls, spec, weights, dtype=np.float32):
        """`spec` and `weights` as baselines.spec_of / weights_of give them (weights are copied;
        float64 only for the equal-math tests)."""
        weights = iter(np.array(w, dtype=dtype) for w in weights)
        layers = []
        for layer in spec["layers"]:
            kind = layer["kind"]
            if kind == "Dense":
                layers.append(Dense(next(weights), next(weights), layer["activation"]))
            elif kind == "Conv2D":
                layers.append(Conv2D(next(weights), next(weights), layer["stride"], layer["padding"]))
            elif kind == "MaxPool2D":
                layers.append(MaxPool2D(layer["pool_size"], layer["stride"]))
            elif kind in ("ReLU", "Sigmoid", "Tanh"):
                layers.append(Activation(kind.lower()))
            elif kind == "Flatten":
                layers.append(Flatten())
            else:
                raise ValueError(f"numpy baseline: no layer {kind!r}")
        return cls(layers, spec["loss"], spec["lr"], spec["momentum"])

    def parameters(self):
        return [layer.params[k] for layer in self.layers for k in sorted(layer.params, reverse=True)]

    def gradients(self):
        return [layer.grads[k] for layer in self.layers for k in sorted(layer.params, reverse=True)]

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    predict = forward

    def loss_and_gradients(self, x, y):
        """Batch loss; leaves each layer's gradients in `layer.grads`."""
        loss, d = self.loss(self.forward(x), y)
        for i in range(len(self.layers) - 1, -1, -1):
            d = self.layers[i].backward(d, need_dx=i > 0)
        return loss

    def train_step(self, x, y):
        loss = self.loss_and_gradients(x, y)
        for i, (p, g) in enumerate(zip(self.parameters(), self.gradients())):
            if self.momentum:
                v = self.velocity[i]
                v *= self.momentum
                v += g
                g = v
            p -= self.lr * g
        return loss
