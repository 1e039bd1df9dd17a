"""Layers: small classes that validate once in build() and then call the raw kernels.

A layer's life: `__init__` takes hyper-parameters (validated); `build(input_shape, dtype)`
learns the per-sample input shape and returns the output shape; the model then binds views of
its flat parameter and gradient arrays (`bind`); `forward(x, training)` / `backward(dy, need_dx)`
write into buffers the layer owns, allocated the first time a batch size is seen and reused
after that (a few batch sizes are kept: training, the last partial batch, evaluation).

Activations may work in place on their input buffer. The model decides, once, in build (see
Sequential._in_place_plan): only on a buffer another layer owns (never the caller's array,
followed through views such as Flatten) and whose owner does not read it in backward. Each layer
states the facts that decision needs as class-level properties, never as instance attributes.
"""
from collections import OrderedDict

import numpy as np

from . import _activation, _conv, _dense, _pool
from ._runtime import get_num_threads
from .ops import _check as check
from .ops.conv import conv2d_output_shape, conv2d_workspace

_KEEP_BATCH_SHAPES = 4


def specialize(kernel, dtype):
    """The float32 or float64 version of a fused-type kernel: skips Cython's per-call dtype
    dispatch, and works when the first argument is None (dx of a first layer)."""
    try:
        return kernel["float" if np.dtype(dtype) == np.float32 else "double"]
    except TypeError:  # not a fused function
        return kernel


class Layer:
    """Base class. Subclasses set `param_shapes` in build() and implement the pass pair."""

    # Facts the model's in-place plan reads (Sequential._in_place_plan); subclasses override.
    output_views_input = False  # forward returns a view of its input (Flatten): no buffer of its own
    can_run_in_place = False    # forward may write its output over its input (activations)

    def __init__(self):
        self.input_shape = None     # per sample, without the batch axis
        self.output_shape = None
        self.dtype = None
        self.in_place = False       # decided by build(): output written over the input buffer
        self.param_shapes = OrderedDict()
        self.params = {}
        self.grads = {}
        self._buffers = OrderedDict()

    # -- construction -------------------------------------------------------------------------
    @property
    def backward_reads_output(self):
        """Its backward reads its own forward output (so nothing may overwrite that buffer)."""
        return False

    def build(self, input_shape, dtype, in_place=False):
        """Learn the per-sample input shape; returns the output shape. `in_place`: write the
        output over the input buffer (only where can_run_in_place; the model decides)."""
        if in_place and not self.can_run_in_place:
            raise ValueError(f"{type(self).__name__} cannot run in place")
        self.input_shape = tuple(input_shape)
        self.dtype = np.dtype(dtype)
        self.in_place = in_place
        self._buffers.clear()
        self.output_shape = self._build()
        return self.output_shape

    def _build(self):
        return self.input_shape

    def bind(self, params, grads):
        """Views into the model's flat arrays, one per entry of `param_shapes`."""
        self.params, self.grads = params, grads

    def init_params(self, rng):
        """Fill the bound parameter views with initial values."""

    def get_config(self):
        """The constructor arguments as JSON-safe data: type(layer)(**layer.get_config()) is
        the same layer, unbuilt."""
        return {}

    # -- buffers ------------------------------------------------------------------------------
    def buffers(self, n):
        """This layer's buffers for batch size n: allocated once, then reused. A smaller batch
        (an epoch's last one) gets views of a larger batch's buffers instead of new memory."""
        bufs = self._buffers.get(n)
        if bufs is None:
            larger = [m for m in self._buffers if m > n]
            bufs = self._views(self._buffers[min(larger)], n) if larger else self._allocate(n)
            self._buffers[n] = bufs
            if len(self._buffers) > _KEEP_BATCH_SHAPES:
                self._buffers.popitem(last=False)
        return bufs

    def _allocate(self, n):
        return {}

    def _views(self, bufs, n):
        """Batch-major buffers cut to their first n rows (C-contiguous views, no copy)."""
        return {k: v[:n] for k, v in bufs.items()}

    def release_buffers(self):
        """Drop the per-batch-size buffers (they are made again when next needed)."""
        self._buffers.clear()

    def _empty(self, n, shape):
        return np.empty((n,) + tuple(shape), dtype=self.dtype)

    # -- passes -------------------------------------------------------------------------------
    def forward(self, x, training=True):
        """The output for batch x (N, *input_shape): a buffer this layer owns and reuses (copy it
        to keep it). `training`: the batch will be followed by backward."""
        raise NotImplementedError

    def backward(self, dy, need_dx=True):
        """Given dy = d(loss)/d(output) of the last forward, write the parameter gradients into
        the bound gradient views and return d(loss)/d(input) (None when not need_dx). dy may be
        overwritten."""
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _init_weights(kind, w, fan_in, fan_out, rng):
    """He (ReLU nets), Glorot (sigmoid/tanh nets), or standard normal (Nielsen's book)."""
    if kind == "he":
        w[...] = rng.standard_normal(w.shape) * np.sqrt(2.0 / fan_in)
    elif kind == "glorot":
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        w[...] = rng.uniform(-limit, limit, w.shape)
    elif kind == "normal":
        w[...] = rng.standard_normal(w.shape)
    else:  # validated in __init__
        raise AssertionError(kind)


INITIALIZERS = ("he", "glorot", "normal")


def _check_init(layer, init):
    if init not in INITIALIZERS:
        raise ValueError(f"{layer}: init must be one of {INITIALIZERS}, got {init!r}")
    return init


ACTIVATIONS = {None: 0, "relu": 1, "sigmoid": 2, "tanh": 3}  # codes of src_c/_elementwise.pxd


class Dense(Layer):
    """Fully connected: y = activation(x @ w.T + b), w (units, inputs).

    activation: None, 'relu', 'sigmoid' or 'tanh', fused into the kernel (one pass, one call;
    the same result as a separate activation layer). init: 'he', 'glorot' or 'normal' ('normal'
    draws weights and biases from N(0, 1), as in Nielsen's book)."""

    def __init__(self, units, activation=None, init="he"):
        super().__init__()
        self.units = check.positive_int("Dense", "units", units)
        if activation not in ACTIVATIONS:
            raise ValueError(f"Dense: activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self._act = ACTIVATIONS[activation]
        self.init = _check_init("Dense", init)

    @property
    def backward_reads_output(self):
        return self.activation is not None  # act'(z) is computed from the output

    def _build(self):
        if len(self.input_shape) != 1:
            raise ValueError(f"Dense: input must be flat (features,), got per-sample shape "
                             f"{self.input_shape}; put a Flatten() before it")
        self.param_shapes = OrderedDict(w=(self.units, self.input_shape[0]), b=(self.units,))
        self._forward_kernel = specialize(_dense.dense_forward, self.dtype)
        self._backward_kernel = specialize(_dense.dense_backward, self.dtype)
        return (self.units,)

    def init_params(self, rng):
        fan_in = self.input_shape[0]
        _init_weights(self.init, self.params["w"], fan_in, self.units, rng)
        if self.init == "normal":
            self.params["b"][...] = rng.standard_normal(self.units)
        else:
            self.params["b"][...] = 0

    def get_config(self):
        return {"units": self.units, "activation": self.activation, "init": self.init}

    def _allocate(self, n):
        return {"y": self._empty(n, self.output_shape), "dx": self._empty(n, self.input_shape)}

    def forward(self, x, training=True):
        self.x = x
        y = self.buffers(x.shape[0])["y"]
        self._forward_kernel(y, x, self.params["w"], self.params["b"], self._act, get_num_threads())
        self.y = y
        return y

    def backward(self, dy, need_dx=True):
        dx = self.buffers(dy.shape[0])["dx"] if need_dx else None
        self._backward_kernel(dx, self.grads["w"], self.grads["b"], dy, self.x, self.params["w"],
                              self.y, self._act, get_num_threads())
        return dx


class Conv2D(Layer):
    """2-D convolution, NCHW, w (filters, channels, kh, kw), zero padding."""

    def __init__(self, filters, kernel_size, stride=1, padding=0, init="he"):
        super().__init__()
        self.filters = check.positive_int("Conv2D", "filters", filters)
        self.kernel_size = check.pair("Conv2D", "kernel_size", kernel_size)
        self.stride = check.pair("Conv2D", "stride", stride)
        self.padding = check.pair("Conv2D", "padding", padding, minimum=0)
        self.init = _check_init("Conv2D", init)

    def _build(self):
        if len(self.input_shape) != 3:
            raise ValueError(f"Conv2D: input must be (channels, height, width), got {self.input_shape}")
        c = self.input_shape[0]
        self.param_shapes = OrderedDict(w=(self.filters, c) + self.kernel_size, b=(self.filters,))
        self._forward_kernel = specialize(_conv.conv2d_forward, self.dtype)
        self._backward_kernel = specialize(_conv.conv2d_backward, self.dtype)
        out = conv2d_output_shape((1,) + self.input_shape, self.param_shapes["w"],
                                  self.stride, self.padding)
        return tuple(out[1:])

    def init_params(self, rng):
        c, (r, s) = self.input_shape[0], self.kernel_size
        _init_weights(self.init, self.params["w"], c * r * s, self.filters * r * s, rng)
        self.params["b"][...] = rng.standard_normal(self.filters) if self.init == "normal" else 0

    def get_config(self):
        return {"filters": self.filters, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "padding": list(self.padding), "init": self.init}

    def _allocate(self, n):
        workspace = conv2d_workspace((n,) + self.input_shape, self.param_shapes["w"],
                                     self.stride, self.padding, dtype=self.dtype)
        return {"y": self._empty(n, self.output_shape), "dx": self._empty(n, self.input_shape),
                "workspace": workspace}

    def _views(self, bufs, n):
        # The workspace is (rows, batch * P * Q): the first rows * n*P*Q elements of each flat
        # buffer, reshaped, are a contiguous (rows, n*P*Q) array.
        pq = self.output_shape[1] * self.output_shape[2]
        ws = bufs["workspace"]
        flat = {name: ws[name].reshape(-1)[:ws[name].shape[0] * n * pq].reshape(ws[name].shape[0], n * pq)
                for name in ("col", "tmp")}
        return {"y": bufs["y"][:n], "dx": bufs["dx"][:n], "workspace": dict(ws, **flat)}

    def forward(self, x, training=True):
        self.x = x
        bufs = self.buffers(x.shape[0])
        ws = bufs["workspace"]
        self._forward_kernel(bufs["y"], x, self.params["w"], self.params["b"], *self.stride,
                             *self.padding, ws["col"], ws["tmp"], get_num_threads())
        return bufs["y"]

    def backward(self, dy, need_dx=True):
        bufs = self.buffers(dy.shape[0])
        dx = bufs["dx"] if need_dx else None
        ws = bufs["workspace"]
        # col still holds im2col(x) from this batch's forward (same buffers, same x), so the
        # backward skips recomputing it.
        self._backward_kernel(dx, self.grads["w"], self.grads["b"], dy, self.x, self.params["w"],
                              *self.stride, *self.padding, ws["col"], ws["tmp"], ws["dwt"],
                              get_num_threads(), _conv.ColState.COL_FROM_FORWARD)
        return dx


class MaxPool2D(Layer):
    """Max pooling without padding; keeps the argmax of each window for backward (and for a
    paired MaxUnpool2D)."""

    def __init__(self, pool_size=2, stride=None):
        super().__init__()
        self.pool_size = check.pair("MaxPool2D", "pool_size", pool_size)
        self.stride = self.pool_size if stride is None else check.pair("MaxPool2D", "stride", stride)

    def _build(self):
        if len(self.input_shape) != 3:
            raise ValueError(f"MaxPool2D: input must be (channels, height, width), got {self.input_shape}")
        c, h, w = self.input_shape
        (kh, kw), (sh, sw) = self.pool_size, self.stride
        self._forward_kernel = specialize(_pool.maxpool2d_forward, self.dtype)
        self._backward_kernel = specialize(_pool.depool2d, self.dtype)
        if kh > h or kw > w:
            raise ValueError(f"MaxPool2D: pool_size {self.pool_size} is larger than the input {(h, w)}")
        return (c, (h - kh) // sh + 1, (w - kw) // sw + 1)

    def get_config(self):
        return {"pool_size": list(self.pool_size), "stride": list(self.stride)}

    def _allocate(self, n):
        return {"y": self._empty(n, self.output_shape), "dx": self._empty(n, self.input_shape),
                "argmax": np.empty((n,) + self.output_shape, dtype=np.int64)}

    def forward(self, x, training=True):
        bufs = self.buffers(x.shape[0])
        self.argmax = bufs["argmax"]
        self._forward_kernel(bufs["y"], bufs["argmax"], x, *self.pool_size, *self.stride,
                                get_num_threads())
        return bufs["y"]

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        bufs = self.buffers(dy.shape[0])
        self._backward_kernel(bufs["dx"], dy, bufs["argmax"], get_num_threads())
        return bufs["dx"]


class MaxUnpool2D(Layer):
    """Depooling: scatters its input back to the positions the paired MaxPool2D picked
    (PyTorch MaxUnpool2d). `pool` is that layer, or its index in the Sequential."""

    def __init__(self, pool):
        super().__init__()
        if not isinstance(pool, (MaxPool2D, int)) or isinstance(pool, bool):
            raise TypeError(f"MaxUnpool2D: pool must be a MaxPool2D layer or its index, got {pool!r}")
        self.pool = pool            # as given; link() resolves it to the layer
        self.pool_index = None      # its position in the model, set by link()

    def link(self, pool, index):
        """Called by the model: the MaxPool2D whose argmax this layer reads, at `index`."""
        if not isinstance(pool, MaxPool2D):
            raise TypeError(f"MaxUnpool2D: pool must be a MaxPool2D, got {type(pool).__name__}")
        self.pool, self.pool_index = pool, index

    def _build(self):
        if not isinstance(self.pool, MaxPool2D):
            raise ValueError("MaxUnpool2D: its MaxPool2D was not resolved; use it inside a Sequential")
        if self.input_shape != self.pool.output_shape:
            raise ValueError(f"MaxUnpool2D: input shape {self.input_shape} differs from its pool's "
                             f"output shape {self.pool.output_shape}")
        self._forward_kernel = specialize(_pool.depool2d, self.dtype)
        self._backward_kernel = specialize(_pool.depool2d_backward, self.dtype)
        return self.pool.input_shape

    def get_config(self):
        return {"pool": self.pool_index}

    def _allocate(self, n):
        return {"y": self._empty(n, self.output_shape), "dx": self._empty(n, self.input_shape)}

    def forward(self, x, training=True):
        y = self.buffers(x.shape[0])["y"]
        self._forward_kernel(y, x, self.pool.argmax, get_num_threads())
        return y

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        dx = self.buffers(dy.shape[0])["dx"]
        self._backward_kernel(dx, dy, self.pool.argmax, get_num_threads())
        return dx


Depool2D = MaxUnpool2D


class Flatten(Layer):
    """(C, H, W) -> (C*H*W,): a reshape view, no copy."""

    output_views_input = True

    def _build(self):
        return (int(np.prod(self.input_shape)),)

    def forward(self, x, training=True):
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, need_dx=True):
        return dy.reshape((dy.shape[0],) + self.input_shape) if need_dx else None


class _Activation(Layer):
    _forward = _backward = None  # raw kernels, set by subclasses
    can_run_in_place = True

    @property
    def backward_reads_output(self):
        return True  # relu/sigmoid/tanh derivatives are computed from y

    def _build(self):
        self._forward_kernel = specialize(type(self)._forward, self.dtype)
        self._backward_kernel = specialize(type(self)._backward, self.dtype)
        return self.input_shape

    def _allocate(self, n):
        # In place: no buffer of its own (build's in_place, planned by the model).
        return {} if self.in_place else {"y": self._empty(n, self.output_shape)}

    def forward(self, x, training=True):
        y = x if self.in_place else self.buffers(x.shape[0])["y"]
        self._forward_kernel(y.reshape(-1), x.reshape(-1), get_num_threads())
        self.y = y
        return y

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        # dx overwrites dy: dy is the next layer's dx buffer, read by nothing else.
        self._backward_kernel(dy.reshape(-1), dy.reshape(-1), self.y.reshape(-1), get_num_threads())
        return dy


class ReLU(_Activation):
    _forward, _backward = _activation.relu_forward, _activation.relu_backward


class Sigmoid(_Activation):
    _forward, _backward = _activation.sigmoid_forward, _activation.sigmoid_backward


class Tanh(_Activation):
    _forward, _backward = _activation.tanh_forward, _activation.tanh_backward


LAYERS = {cls.__name__: cls for cls in (Dense, Conv2D, MaxPool2D, MaxUnpool2D, Flatten, ReLU,
                                        Sigmoid, Tanh)}
