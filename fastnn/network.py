"""Network: the core of a Sequential model: build, forward/backward over preallocated buffers,
train_step, predict/evaluate, and its config. Training loops, files and checkpoints live above
it (fastnn/train/, fastnn/model.py) and use only its public methods.

Parameters and gradients live in two flat arrays with one view per layer parameter (llm.c's
malloc_and_point_parameters): one memset-free backward (every backward overwrites), one fused
optimizer pass, trivial save/load. Nothing on the training path allocates numpy arrays once a
batch size has been seen.
"""
import threading

import numpy as np

from . import _train_step, config
from ._runtime import adapt_threads, get_num_threads
from .layers import Dense, Layer, MaxPool2D, MaxUnpool2D
from .losses import Loss
from .optim import Optimizer
from .ops import _check as check

EVAL_BATCH = 256  # evaluate/predict chunk size before the model has trained (then: its batch)
# evaluate/predict never give a batch buffers beyond this (unless training's already exist): a
# LeNet batch of 1000 took 373 MB and ran 1.4x slower per image than chunks of 8-256, whose
# throughput was flat (its buffers outgrow the caches).
EVAL_BUFFER_BYTES = 16 << 20


def _nbytes(buffers):
    """Bytes of the arrays in a layer's buffer dict (nested dicts: a conv's workspace)."""
    return sum(_nbytes(v) if isinstance(v, dict) else v.nbytes for v in buffers.values())


class Network:
    """A stack of layers with one loss and one optimizer (fastnn.Sequential adds fit and files).

    `Network(layers, loss=..., optimizer=..., input_shape=..., dtype=np.float32, seed=None)`;
    the model builds (allocates parameters) when it knows the per-sample input shape: from
    `input_shape` or from the first data it sees. `seed` fixes the initial weights.
    """

    def __init__(self, layers, loss=None, optimizer=None, input_shape=None, dtype=np.float32, seed=None):
        layers = list(layers)
        if not layers or not all(isinstance(layer, Layer) for layer in layers):
            raise TypeError("Sequential: layers must be a non-empty list of fastnn layers")
        if loss is not None and not isinstance(loss, Loss):
            raise TypeError(f"Sequential: loss must be a fastnn loss, got {type(loss).__name__}")
        if optimizer is not None and not isinstance(optimizer, Optimizer):
            raise TypeError(f"Sequential: optimizer must be a fastnn optimizer, got {type(optimizer).__name__}")
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise TypeError(f"Sequential: dtype must be float32 or float64, got {dtype}")
        self.layers, self.loss, self.optimizer = layers, loss, optimizer
        self.dtype, self.seed = np.dtype(dtype), seed
        self.input_shape = None
        self.output_shape = None
        self.params = self.grads = None  # flat arrays, allocated by build()
        self.train_batch_size = None  # set by reserve(): the batch size training runs at
        self.last_correct = None  # correct predictions of the last train_step's batch
        self._lock = threading.RLock()  # buffers are per model: one caller at a time
        self._fused_steps = None  # {batch size: _train_step.DenseTrainStep} when eligible
        self._sample_bytes = None  # layer buffer bytes per sample (for _eval_batch)
        self._resolve_unpool_links()
        if input_shape is not None:
            self.build(input_shape)

    # -- building ------------------------------------------------------------------------------
    def _resolve_unpool_links(self):
        if len({id(layer) for layer in self.layers}) != len(self.layers):
            raise ValueError("Sequential: the same layer object appears twice; each position needs "
                             "its own layer (its buffers and weights are its own)")
        for i, layer in enumerate(self.layers):
            if isinstance(layer, MaxUnpool2D):
                if isinstance(layer.pool, int):
                    if not 0 <= layer.pool < i or not isinstance(self.layers[layer.pool], MaxPool2D):
                        raise ValueError(f"MaxUnpool2D at {i}: pool={layer.pool} is not the index "
                                         f"of an earlier MaxPool2D")
                    index = layer.pool
                else:
                    index = next((j for j, other in enumerate(self.layers[:i]) if other is layer.pool), None)
                    if index is None:
                        raise ValueError(f"MaxUnpool2D at {i}: its MaxPool2D is not earlier in this model")
                layer.link(self.layers[index], index)

    def _in_place_plan(self):
        """For each layer: may it write its output over its input buffer? Only when that buffer
        belongs to an earlier layer of this model (not the caller's array: views such as Flatten
        pass ownership through) whose backward does not read it."""
        plan, owner = [], None  # owner: the layer whose buffer holds the current activations
        for layer in self.layers:
            in_place = (layer.can_run_in_place and owner is not None
                        and not owner.backward_reads_output)
            plan.append(in_place)
            if not layer.output_views_input:  # in place too: the buffer now holds its output
                owner = layer
        return plan

    def build(self, input_shape, expect_params=None):
        """Allocate parameters for per-sample `input_shape` (e.g. (784,) or (1, 28, 28)).
        `expect_params`: the parameter count the caller has weights for (a model file); any
        other count is refused before anything is allocated."""
        shape = tuple(int(s) for s in input_shape)
        if not shape or min(shape) < 1:
            raise ValueError(f"Sequential.build: input_shape must be positive sizes, got {input_shape}")
        if self.input_shape == shape:
            return
        for layer, in_place in zip(self.layers, self._in_place_plan()):
            shape = layer.build(shape, self.dtype, in_place=in_place)
        sizes = [int(np.prod(s, dtype=object)) for layer in self.layers for s in layer.param_shapes.values()]
        if expect_params is not None and sum(sizes) != expect_params:
            raise ValueError(f"Sequential.build: the architecture has {sum(sizes):,} parameters, "
                             f"the weights given hold {expect_params:,}")
        try:
            params, grads = np.zeros(sum(sizes), dtype=self.dtype), np.zeros(sum(sizes), dtype=self.dtype)
        except (MemoryError, ValueError):
            raise MemoryError(f"Sequential.build: {sum(sizes):,} parameters (and as many gradients) "
                              f"do not fit in memory as {self.dtype}") from None
        self.input_shape = tuple(int(s) for s in input_shape)
        self.output_shape = shape
        self.params, self.grads = params, grads
        offset = 0
        for layer in self.layers:
            views, grad_views = {}, {}
            for name, pshape in layer.param_shapes.items():
                size = int(np.prod(pshape))
                views[name] = self.params[offset:offset + size].reshape(pshape)
                grad_views[name] = self.grads[offset:offset + size].reshape(pshape)
                offset += size
            layer.bind(views, grad_views)
        rng = np.random.default_rng(self.seed)
        for layer in self.layers:
            layer.init_params(rng)
        if self.optimizer is not None:
            self.optimizer.bind(self.params, self.grads)
        self._reset_fused_steps()
        self._sample_bytes = None

    def compile(self, loss, optimizer):
        """Set (or replace) the loss and optimizer."""
        self.loss, self.optimizer = loss, optimizer
        if self.input_shape is not None:
            optimizer.bind(self.params, self.grads)
        self._reset_fused_steps()
        return self

    @property
    def num_params(self):
        """Number of trainable parameters (0 before the model is built)."""
        return 0 if self.input_shape is None else self.params.size

    def summary(self, print_fn=print):
        """Print layers, output shapes and parameter counts; returns the text."""
        if self.input_shape is None:
            raise RuntimeError("summary: the model is not built; pass input_shape or call build()")
        lines = [f"{'layer':<28}{'output shape':<20}{'params':>10}", "-" * 58]
        for layer in self.layers:
            count = sum(int(np.prod(s)) for s in layer.param_shapes.values())
            lines.append(f"{repr(layer)[:27]:<28}{str(layer.output_shape):<20}{count:>10,}")
        lines += ["-" * 58, f"input {self.input_shape}, {self.num_params:,} parameters, {self.dtype}"]
        text = "\n".join(lines)
        print_fn(text)
        return text

    # -- one batch -----------------------------------------------------------------------------
    def forward(self, x, training=False):
        """The last layer's output for batch x (a buffer the model reuses: copy to keep it).
        x of another dtype or layout is converted (predict does it in chunks)."""
        return self._forward(self._check_batch("forward", x)[0], training)

    def _forward(self, x, training):
        # x checked by the caller: the model's dtype, C-contiguous, (N,) + input_shape
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def _check_batch(self, who, x, y=None):
        """(x, y) ready for the kernels; the checks of _check_data, skipped only for the exact
        layout the kernels take (then only labels are range-checked: they index arrays)."""
        if type(x) is not np.ndarray or x.dtype != self.dtype or not x.flags.c_contiguous \
                or x.shape[1:] != self.input_shape or x.shape[0] == 0 or \
                (y is not None and (type(y) is not np.ndarray or not y.flags.c_contiguous
                                    or y.dtype.kind in "iu" and y.dtype != np.int64)):
            x, y = self._check_data(who, x, y)
            x = np.ascontiguousarray(x, dtype=self.dtype)
        elif y is not None:
            if y.shape[0] != x.shape[0]:
                raise ValueError(f"{who}: x has {x.shape[0]} samples but y has {y.shape[0]}")
            self.loss.check_targets(y, self.output_shape)
        return x, y

    def backward(self):
        """Gradients of the last loss call into self.grads."""
        dy = self.loss.grad
        last = len(self.layers) - 1
        for i in range(last, -1, -1):
            dy = self.layers[i].backward(dy, need_dx=i > 0)

    def train_step(self, x, y, before_update=None, *, validate=True):
        """One optimizer step on batch (x, y); returns the batch loss before the step and
        leaves the batch's correct-prediction count in `last_correct`.

        `before_update(loss, samples, correct)` runs between the backward pass and the update,
        on the gradients in `grads` (fastnn.distributed averages them over the ranks there).
        It takes the layer-by-layer path: the one-call Dense step updates inside its backward.
        validate=False: the caller has checked the batch (fit checks the data once, not per
        step): x in the model's dtype, C-contiguous, labels int64 in range."""
        if self.loss is None or self.optimizer is None:
            raise RuntimeError("train_step: the model needs a loss and an optimizer")
        if validate:
            x, y = self._check_batch("train_step", x, y)
        fused = self._fused_step(x, y) if before_update is None else None
        if fused is not None:
            loss, self.last_correct = fused.step(x, y, *self.optimizer.start_step(), get_num_threads())
            return loss
        if before_update is not None and not self.optimizer.needs_gradients:
            raise TypeError(f"train_step: before_update needs a gradient-based optimizer, not "
                            f"{type(self.optimizer).__name__}")
        output = self._forward(x, training=True)
        loss = self.loss(output, y)
        self.last_correct = self.loss.count_correct(output, y)
        if self.optimizer.needs_gradients:
            self.backward()
            if before_update is not None:
                before_update(loss, x.shape[0], self.last_correct)
            self.optimizer.step()
            return loss
        return self.optimizer.search(lambda: self.loss(self._forward(x, training=True), y), loss)

    def _reset_fused_steps(self):
        """Dense stacks in float32 with a fused loss and optimizer train in one kernel call
        (fastnn._train_step): decided here, once; plans are made per batch size."""
        eligible = (self.dtype == np.float32 and all(type(layer) is Dense for layer in self.layers)
                    and self.loss is not None and self.loss.name in _train_step.LOSS_KINDS
                    and self.optimizer is not None and self.optimizer.fused_kind in _train_step.OPTIMIZER_KINDS)
        self._fused_steps = {} if eligible else None

    def _fused_step(self, x, y):
        """The one-call step for this batch, or None when the layer-by-layer path must run."""
        if not self._takes_fused(x, y):
            return None
        return self._fused_plan(x.shape[0])

    def _takes_fused(self, x, y):
        """Whether the one-call Dense step can read x and y as they are (no copy)."""
        return (self._fused_steps is not None and type(x) is np.ndarray and x.dtype == np.float32
                and x.ndim == 2 and x.flags.c_contiguous and type(y) is np.ndarray
                and y.dtype == np.int64 and y.ndim == 1 and y.flags.c_contiguous
                and x.shape[1:] == self.input_shape)

    def _fused_plan(self, n):
        """The one-call step's plan (its buffers) for batch size n."""
        steps = self._fused_steps
        step = steps.get(n)
        if step is None or not step.uses_state(*self.optimizer.fused_state()):  # momentum set later: new velocity
            if len(steps) >= 2:  # the training batch and an epoch's short last one
                steps.clear()
            buffers = [_train_step.DenseBuffers(layer.buffers(n)["y"], layer.buffers(n)["dx"] if i else None,
                                                layer.params["w"], layer.params["b"], layer.grads["w"],
                                                layer.grads["b"], layer._act)
                       for i, layer in enumerate(self.layers)]
            dout = np.empty((n,) + self.output_shape, self.dtype)
            step = steps[n] = _train_step.DenseTrainStep(
                buffers, dout, self.params, self.grads, *self.optimizer.fused_state(),
                _train_step.LOSS_KINDS[self.loss.name], _train_step.OPTIMIZER_KINDS[self.optimizer.fused_kind])
        return step

    def _step_runner(self, x, y, batch_size):
        """A function run(order, first, count) -> (losses, correct) that trains `count` steps on
        batches first, first + 1, ... of an epoch over (x, y) in one compiled call (order: the
        epoch's row permutation or None), or None when this model or these arrays need the
        step-by-step path. Full batches of `batch_size` only. fit checked x and y."""
        if self.loss is None or self.optimizer is None or not self._takes_fused(x, y):
            return None
        optimizer = self.optimizer

        def run(order, first, count):
            plan = self._fused_plan(batch_size)
            losses, correct = np.empty(count), np.empty(count, np.int64)
            update = optimizer.start_step()
            done = plan.run(x, y, order, first, losses, correct, *update, get_num_threads())
            optimizer.advance_steps(done - 1)  # start_step counted the first
            self.last_correct = int(correct[done - 1])
            return losses[:done], correct[:done]
        return run

    # -- validation of user data -----------------------------------------------------------------
    def _check_data(self, who, x, y=None):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{who}: x must be a numpy array, got {type(x).__name__}")
        if x.ndim < 2 or x.shape[0] == 0:
            raise ValueError(f"{who}: x must be (samples, ...) with at least one sample, got {x.shape}")
        if x.dtype.kind not in "fiu":
            raise TypeError(f"{who}: x must be numeric, got dtype {x.dtype}")
        if self.input_shape is None:
            self.build(x.shape[1:])
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"{who}: x must have per-sample shape {self.input_shape}, got {x.shape[1:]} "
                             f"(x.shape={x.shape})")
        if y is not None:
            if not isinstance(y, np.ndarray):
                raise TypeError(f"{who}: y must be a numpy array, got {type(y).__name__}")
            if y.shape[0] != x.shape[0]:
                raise ValueError(f"{who}: x has {x.shape[0]} samples but y has {y.shape[0]}")
            if self.loss is None:
                raise RuntimeError(f"{who}: the model has no loss; pass loss= or call compile()")
            if y.dtype.kind not in "fiub":
                raise TypeError(f"{who}: y must hold numbers, got dtype {y.dtype}")
            self.loss.check_targets(y, self.output_shape)
            # The kernels read labels as contiguous int64: copy strided views (y[::-1], Y[:, 0])
            # and other integer types once, here, as x is copied into batches.
            y = np.ascontiguousarray(y, dtype=np.int64 if y.dtype.kind in "iu" else None)
        return x, y

    def _batches(self, x, y, batch_size, order=None, first=0):
        """(xb, yb) batches in `order` (or sequence), gathered into reused staging buffers,
        from batch `first` on. `order` may cover part of x (a distributed rank's shard)."""
        n = x.shape[0] if order is None else len(order)
        staging = {}
        for start in range(first * batch_size, n, batch_size):
            stop = min(start + batch_size, n)
            if order is None and x.dtype == self.dtype and x.flags.c_contiguous:
                yield x[start:stop], (None if y is None else y[start:stop])
                continue
            m = stop - start
            if m not in staging:
                staging[m] = (np.empty((m,) + x.shape[1:], x.dtype), np.empty((m,) + x.shape[1:], self.dtype),
                              None if y is None else np.empty((m,) + y.shape[1:], y.dtype))
            raw, xb, yb = staging[m]
            if order is None:
                raw[...] = x[start:stop]
            else:
                rows = order[start:stop]
                x.take(rows, axis=0, out=raw, mode="clip")  # the method: no dispatch wrapper per batch
                if y is not None:
                    y.take(rows, axis=0, out=yb, mode="clip")
            if raw.dtype == self.dtype:
                xb = raw
            else:
                np.copyto(xb, raw, casting="unsafe")
            if order is None and y is not None:
                yb = y[start:stop]
            yield xb, yb

    def reserve(self, batch_size):
        """Record the batch size training runs at: evaluate/predict default to it (its buffers
        exist by then). Called by the fit loop."""
        self.train_batch_size = check.positive_int("reserve", "batch_size", batch_size)

    # -- inference -----------------------------------------------------------------------------
    def _eval_batch(self, who, batch_size):
        """The chunk evaluate/predict run at: `batch_size`, by default the training batch size
        (its buffers already exist), and never more than EVAL_BUFFER_BYTES of layer buffers
        beyond those. Any chunk gives the same results up to float rounding."""
        trained = self.train_batch_size
        wanted = (trained or EVAL_BATCH) if batch_size is None else check.positive_int(who, "batch_size", batch_size)
        if self._sample_bytes is None:
            self._sample_bytes = max(1, sum(_nbytes(layer._allocate(1)) for layer in self.layers))
        return min(wanted, max(EVAL_BUFFER_BYTES // self._sample_bytes, trained or 1))

    def _outputs(self, x, batch_size, fn):
        x, _ = self._check_data("predict", x)
        batch_size = self._eval_batch("predict", batch_size)
        adapt_threads()
        with self._lock:
            if len(x) <= batch_size and x.dtype == self.dtype and x.flags.c_contiguous:
                # One batch as given (batch-1 serving): no staging, generator or concatenate.
                return fn(self._forward(x, training=False))
            parts = [fn(self._forward(xb, training=False)) for xb, _ in self._batches(x, None, batch_size)]
        return np.concatenate(parts)

    def predict(self, x, batch_size=None):
        """Class ids (argmax, or > threshold for one output), for any number of samples."""
        return self._outputs(x, batch_size, self.loss.predictions)

    def predict_proba(self, x, batch_size=None):
        """Class probabilities (softmax / sigmoid; raw outputs for MSE), any number of samples."""
        return self._outputs(x, batch_size, self.loss.probabilities)

    def predict_raw(self, x, batch_size=None):
        """The last layer's outputs, copied."""
        return self._outputs(x, batch_size, np.array)

    def evaluate(self, x, y=None, batch_size=None):
        """{'loss': mean loss, 'accuracy': fraction correct or None, 'correct', 'total'}.
        `x` is an array (with `y`), or an iterable of (x, y) batches such as
        fastnn.data.IdxBatches, which keeps memory flat for large test sets."""
        if y is None and not isinstance(x, np.ndarray):
            return self.evaluate_batches(x)
        x, y = self._check_data("evaluate", x, y)
        batch_size = self._eval_batch("evaluate", batch_size)
        return self._evaluate(self._batches(x, y, batch_size))

    def evaluate_batches(self, batches):
        """evaluate() over an iterable of (x, y) batches (each checked like evaluate's data)."""
        return self._evaluate(self._check_batch("evaluate", xb, yb) for xb, yb in batches)

    def _evaluate(self, batches):
        # batches in the kernels' layout: checked by the caller
        if self.loss is None:
            raise RuntimeError("evaluate: the model has no loss; pass loss= or call compile()")
        total_loss, correct, total = 0.0, 0, 0
        adapt_threads()
        with self._lock:
            for xb, yb in batches:
                out = self._forward(xb, training=False)
                total_loss += self.loss(out, yb) * len(xb)
                c = self.loss.count_correct(out, yb)
                correct = None if c is None or correct is None else correct + c
                total += len(xb)
        if total == 0:
            raise ValueError("evaluate: no samples")
        return {"loss": total_loss / total, "accuracy": None if correct is None else correct / total,
                "correct": correct, "total": total}

    # -- config ------------------------------------------------------------------------------
    def get_config(self):
        """The architecture, loss and optimizer as JSON-safe data (fastnn.config's schema)."""
        return config.model_config(self)

    @classmethod
    def from_config(cls, cfg, dtype=None):
        """A new, built (when the config has an input_shape) model from get_config()'s data;
        ConfigError (a ValueError) names the key that is wrong."""
        return cls(**config.parse_model(cfg, dtype=dtype))

    def copy(self, dtype=None):
        """An independent model with the same architecture and weights (optionally cast)."""
        clone = type(self).from_config(self.get_config(), dtype=dtype or self.dtype)
        if self.input_shape is not None:
            clone.params[...] = self.params
        return clone

    # pickle and copy.deepcopy: architecture, weights and optimizer state (buffers are rebuilt).
    def __reduce__(self):
        state = None
        if self.input_shape is not None:
            opt = {} if self.optimizer is None else {
                k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self.optimizer.state_dict().items()}
            state = (self.params.copy(), opt)
        return _rebuild, (type(self), self.get_config(), state)

    def __deepcopy__(self, memo):
        return _rebuild(*self.__reduce__()[1])


def _rebuild(cls, cfg, state):
    model = cls.from_config(cfg)
    if state is not None:
        params, opt = state
        model.params[...] = params
        if opt:
            model.optimizer.load_state_dict(opt)
    return model
