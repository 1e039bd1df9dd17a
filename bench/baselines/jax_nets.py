"""The same networks in JAX (CPU, float32), the way a JAX user writes them: a pure loss
function, `jax.value_and_grad`, SGD as a tree update, the step compiled with `jax.jit` (state
buffers donated), and, as the strongest form, a whole epoch compiled as one `jax.lax.scan` over
the pre-gathered batches (no Python per step).

Import this module only where jax is installed (a benchmark venv, started by
bench/baselines/worker.py): jax is never a fastnn dependency. Its thread count is fixed when
the XLA CPU client starts, so the worker sets it (CPU affinity, PJRT_NPROC) before importing.
"""
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

ACTIVATIONS = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, None: lambda z: z}


def _dense(x, w, b, activation):
    return ACTIVATIONS[activation](x @ w.T + b)  # w (units, inputs), as fastnn stores it


def _conv2d(x, w, b, stride, padding):
    # x (N, C, H, W), w (K, C, R, S) -> (N, K, P, Q)
    pads = [(padding[0], padding[0]), (padding[1], padding[1])]
    y = lax.conv_general_dilated(x, w, tuple(stride), pads, dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y + b[None, :, None, None]


def _maxpool2d(x, pool, stride):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1) + tuple(pool), (1, 1) + tuple(stride), "VALID")


def forward_fn(spec):
    """forward(params, x) for the layers of `spec` (baselines.spec_of); params: w, b per layer."""
    layers = spec["layers"]
    for layer in layers:
        if layer["kind"] not in ("Dense", "Conv2D", "MaxPool2D", "ReLU", "Sigmoid", "Tanh", "Flatten"):
            raise ValueError(f"jax baseline: no layer {layer['kind']!r}")

    def forward(params, x):
        i = 0
        for layer in layers:
            kind = layer["kind"]
            if kind == "Dense":
                x, i = _dense(x, params[i], params[i + 1], layer["activation"]), i + 2
            elif kind == "Conv2D":
                x, i = _conv2d(x, params[i], params[i + 1], layer["stride"], layer["padding"]), i + 2
            elif kind == "MaxPool2D":
                x = _maxpool2d(x, layer["pool_size"], layer["stride"])
            elif kind == "Flatten":
                x = x.reshape(x.shape[0], -1)
            else:
                x = ACTIVATIONS[kind.lower()](x)
        return x
    return forward


def loss_fn(spec, forward):
    """Mean batch loss, as fastnn's: softmax cross-entropy, or MSE = 0.5 * ||out - one_hot||^2."""
    mse = spec["loss"] == "MSE"

    def loss(params, x, y):
        out = forward(params, x)
        if mse:
            diff = out - jax.nn.one_hot(y, out.shape[1], dtype=out.dtype)
            return 0.5 * jnp.sum(diff * diff) / out.shape[0]
        logp = jax.nn.log_softmax(out)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
    return loss


def step_fn(spec, loss):
    """step((params, velocity), (x, y)) -> (new state, loss): SGD in PyTorch's form
    (v = momentum * v + g; p -= lr * v), the form fastnn's optimizer has."""
    lr, momentum = spec["lr"], spec["momentum"]
    grad = jax.value_and_grad(loss)

    def step(state, batch):
        params, velocity = state
        value, grads = grad(params, *batch)
        if momentum:
            velocity = [momentum * v + g for v, g in zip(velocity, grads)]
            grads = velocity
        return ([p - lr * g for p, g in zip(params, grads)], velocity), value
    return step


class Net:
    """Built from `baselines.spec_of(model)` and fastnn's weights (copied, float32)."""

    def __init__(self, spec, weights):
        forward = forward_fn(spec)
        step = step_fn(spec, loss_fn(spec, forward))
        self.momentum = spec["momentum"]
        self.reset(weights)
        self._step = jax.jit(step, donate_argnums=0)
        self._epoch = jax.jit(lambda state, xs, ys: lax.scan(step, state, (xs, ys)), donate_argnums=0)
        self._forward = jax.jit(forward)

    def reset(self, weights):
        """Parameters back to `weights` (copied), velocity to zero: after compiling, which steps."""
        params = [jnp.asarray(np.array(w, np.float32)) for w in weights]
        self.state = (params, [jnp.zeros_like(p) for p in params] if self.momentum else [])

    @staticmethod
    def device_batches(batches):
        """The batch list as device arrays (labels int32, JAX's default integer width)."""
        return [(jnp.asarray(x), jnp.asarray(np.asarray(y, np.int32))) for x, y in batches]

    @staticmethod
    def stacked(batches):
        """(xs, ys) with a leading step axis, the form lax.scan walks over."""
        return (jnp.asarray(np.stack([x for x, _ in batches])),
                jnp.asarray(np.stack([np.asarray(y, np.int32) for _, y in batches])))

    def train_step(self, x, y):
        """One jitted step, dispatched asynchronously: call block() before reading a clock."""
        self.state, loss = self._step(self.state, (x, y))
        return loss

    def epoch(self, xs, ys):
        """All the steps of (xs, ys) in one compiled call; the per-step losses."""
        self.state, losses = self._epoch(self.state, xs, ys)
        return losses

    def block(self):
        jax.block_until_ready(self.state)

    def predict(self, x):
        return np.asarray(self._forward(self.state[0], x))

    def parameters(self):
        return [np.asarray(p) for p in self.state[0]]
