"""Whole-network oracle: forward, loss, backward and one optimizer step in float64 numpy.

A network is a list of plain tuples (a spec), not fastnn layers, so the oracle shares nothing
with the code under test but the conventions (PyTorch's, written in each family's oracle):
    ("dense", units, activation)        activation None, "relu", "sigmoid" or "tanh" (fused)
    ("conv", filters, (kh, kw), (sh, sw), (ph, pw))
    ("pool", (kh, kw), (sh, sw))         max pooling, no padding, first max of a window wins
    ("unpool", index)                    scatter back through the pool at spec[index]
    ("flatten",), ("relu",), ("sigmoid",), ("tanh",)
Parameters are per layer {"w", "b"} (empty for layers without): `split_params` cuts them from
one flat array in layer order, w before b, as fastnn's model.params lays them out.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .activation import relu, relu_backward, sigmoid, sigmoid_backward, tanh, tanh_backward
from .conv import conv2d_backward, conv2d_forward
from .loss import bce_with_logits, mse, softmax_cross_entropy
from .optim import adam_update, sgd_update
from .pool import depool2d, depool2d_backward, maxpool2d_forward

__all__ = ["output_shapes", "param_shapes", "split_params", "join_params", "net_forward", "net_backward",
           "net_loss", "gradient_bound", "ReferenceOptimizer"]

_ACT = {"relu": (relu, relu_backward), "sigmoid": (sigmoid, sigmoid_backward),
        "tanh": (tanh, tanh_backward)}


def output_shapes(spec, input_shape):
    """Per-sample shape after each layer (the oracle's own arithmetic)."""
    shapes, shape = [], tuple(input_shape)
    for i, layer in enumerate(spec):
        kind = layer[0]
        if kind == "dense":
            shape = (layer[1],)
        elif kind == "conv":
            _, k, (kh, kw), (sh, sw), (ph, pw) = layer
            shape = (k, (shape[1] + 2 * ph - kh) // sh + 1, (shape[2] + 2 * pw - kw) // sw + 1)
        elif kind == "pool":
            _, (kh, kw), (sh, sw) = layer
            shape = (shape[0], (shape[1] - kh) // sh + 1, (shape[2] - kw) // sw + 1)
        elif kind == "unpool":
            pool = layer[1]
            shape = tuple(input_shape) if pool == 0 else shapes[pool - 1]
        elif kind == "flatten":
            shape = (int(np.prod(shape)),)
        shapes.append(shape)
    return shapes


def param_shapes(spec, input_shape):
    """[{name: shape}] per layer, in fastnn's flat order (w, then b)."""
    ins = [tuple(input_shape)] + output_shapes(spec, input_shape)[:-1]
    result = []
    for layer, shape in zip(spec, ins):
        if layer[0] == "dense":
            result.append({"w": (layer[1], shape[0]), "b": (layer[1],)})
        elif layer[0] == "conv":
            result.append({"w": (layer[1], shape[0]) + tuple(layer[2]), "b": (layer[1],)})
        else:
            result.append({})
    return result


def split_params(spec, input_shape, flat):
    """Per-layer {name: float64 array} cut from one flat parameter (or gradient) array."""
    flat = np.asarray(flat, dtype=np.float64)
    shapes = param_shapes(spec, input_shape)
    total = sum(int(np.prod(s)) for layer in shapes for s in layer.values())
    if total != flat.size:
        raise ValueError(f"split_params: the spec has {total} parameters, the array {flat.size}")
    result, offset = [], 0
    for layer in shapes:
        arrays = {}
        for name, shape in layer.items():
            size = int(np.prod(shape))
            arrays[name] = flat[offset:offset + size].reshape(shape)
            offset += size
        result.append(arrays)
    return result


def join_params(per_layer):
    """The inverse of split_params: one flat float64 array, layer order, w before b."""
    parts = [np.ravel(a) for arrays in per_layer for a in arrays.values()]
    return np.concatenate(parts) if parts else np.zeros(0)


def _pool_gap(x, kernel, stride):
    """Smallest distance between a window's max and its largest other distinct value: where it
    is tiny, rounding may move the argmax (exact ties break the same way everywhere)."""
    (kh, kw), (sh, sw) = kernel, stride
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    windows = windows.reshape(windows.shape[:4] + (-1,))
    top = windows.max(axis=-1, keepdims=True)
    below = np.where(windows < top, windows, -np.inf).max(axis=-1)
    return float(np.min(top[..., 0] - below))


def _relu_gap(z):
    """Smallest |z| over nonzero pre-activations (exact zeros have the same derivative, 0, in
    every implementation)."""
    nonzero = np.abs(z[z != 0])
    return float(nonzero.min()) if nonzero.size else np.inf


def net_forward(spec, params, x):
    """-> (output, cache). cache["margin"] is how far the forward stayed from kinks (ReLU at 0,
    max-pool near-ties): skip comparisons whose margin is below the rounding noise."""
    x = np.asarray(x, dtype=np.float64)
    inputs, outputs, argmax, margin = [], [], {}, np.inf
    for i, (layer, p) in enumerate(zip(spec, params)):
        kind = layer[0]
        inputs.append(x)
        if kind == "dense":
            x = x @ p["w"].T + p["b"]
            if layer[2] == "relu":
                margin = min(margin, _relu_gap(x))
            x = _ACT[layer[2]][0](x) if layer[2] else x
        elif kind == "conv":
            x = conv2d_forward(x, p["w"], p["b"], layer[3], layer[4])
        elif kind == "pool":
            margin = min(margin, _pool_gap(x, layer[1], layer[2]))
            x, argmax[i] = maxpool2d_forward(x, layer[1], layer[2])
        elif kind == "unpool":
            x = depool2d(x, argmax[layer[1]], inputs[layer[1]].shape)
        elif kind == "flatten":
            x = x.reshape(x.shape[0], -1)
        else:
            if kind == "relu":
                margin = min(margin, _relu_gap(x))
            x = _ACT[kind][0](x)
        outputs.append(x)
    return x, {"inputs": inputs, "outputs": outputs, "argmax": argmax, "margin": margin}


def net_backward(spec, params, cache, dout, derivatives=True):
    """-> (per-layer {name: gradient}, dx) of sum(output * dout). derivatives=False passes dy
    through the activations unchanged (for gradient_bound)."""
    grads = [{} for _ in spec]
    dy = np.asarray(dout, dtype=np.float64)
    for i in range(len(spec) - 1, -1, -1):
        layer, kind = spec[i], spec[i][0]
        x, y = cache["inputs"][i], cache["outputs"][i]
        if kind == "dense":
            if layer[2] and derivatives:
                dy = _ACT[layer[2]][1](dy, y)
            grads[i] = {"w": dy.T @ x, "b": dy.sum(axis=0)}
            dy = dy @ params[i]["w"]
        elif kind == "conv":
            dy, dw, db = conv2d_backward(dy, x, params[i]["w"], layer[3], layer[4])
            grads[i] = {"w": dw, "b": db}
        elif kind == "pool":
            dy = depool2d(dy, cache["argmax"][i], x.shape)
        elif kind == "unpool":
            dy = depool2d_backward(dy, cache["argmax"][layer[1]])
        elif kind == "flatten":
            dy = dy.reshape(x.shape)
        elif derivatives:
            dy = _ACT[kind][1](dy, y)
    return grads, dy


def gradient_bound(spec, params, cache, dout_bound):
    """Per-layer bounds on the sum of |terms| behind each parameter gradient: the backward of
    magnitudes (|x|, |w|, `dout_bound`), every activation derivative taken as its bound 1. A
    gradient computed in floating point is off by a small multiple of eps times this (the
    classic bound for sums of products), however much the terms cancel or a saturated
    activation shrinks the gradient itself."""
    magnitudes = [{name: np.abs(a) for name, a in p.items()} for p in params]
    cache = dict(cache, inputs=[np.abs(x) for x in cache["inputs"]])
    return net_backward(spec, magnitudes, cache, np.abs(dout_bound), derivatives=False)[0]


def net_loss(kind, output, targets):
    """-> (mean loss, d loss / d output). kind: "sce" (int labels), "mse" (int labels are
    one-hot, else float targets of the output's shape), "bce" (one logit, 0/1 or probabilities)."""
    output = np.asarray(output, dtype=np.float64)
    n = output.shape[0]
    if kind == "sce":
        return softmax_cross_entropy(output, targets)
    if kind == "mse":
        if targets.dtype.kind in "iu":
            target = np.zeros_like(output)
            target[np.arange(n), targets] = 1.0
        else:
            target = targets.reshape(output.shape).astype(np.float64)
        return mse(output, target)
    if kind == "bce":
        return bce_with_logits(output, targets.reshape(output.shape))
    raise ValueError(f"net_loss: unknown loss {kind!r}")


class ReferenceOptimizer:
    """One optimizer's state over a flat float64 parameter array: SGD (lr, momentum,
    weight_decay) or Adam (lr, beta1, beta2, eps), by the oracles in optim.py."""

    def __init__(self, kind, size, **config):
        if kind not in ("sgd", "adam"):
            raise ValueError(f"ReferenceOptimizer: unknown optimizer {kind!r}")
        self.kind, self.config, self.t = kind, config, 0
        self.state = [np.zeros(size), np.zeros(size)]

    def step(self, params, grads):
        """-> the parameters after one step (params and grads are not changed)."""
        params, grads = np.asarray(params, np.float64), np.asarray(grads, np.float64)
        if self.kind == "sgd":
            params, self.state[0] = sgd_update(params, grads, self.state[0], **self.config)
            return params
        self.t += 1
        params, self.state[0], self.state[1] = adam_update(params, grads, *self.state, self.t,
                                                            **self.config)
        return params
