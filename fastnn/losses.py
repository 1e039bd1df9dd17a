"""Losses: each turns the last layer's output and the targets into a mean loss and writes the
gradient d(mean loss)/d(output) into a buffer it owns (one per batch size, reused)."""
from collections import OrderedDict

import numpy as np

from . import _loss
from ._runtime import get_num_threads


class Loss:
    """Base class. `targets` may be int class labels (N,) or float arrays shaped like the output."""

    name = None

    def __init__(self):
        self._buffers = OrderedDict()

    def _buffer(self, key, shape, dtype):
        """A reused buffer, one per (key, shape, dtype)."""
        full_key = (key, tuple(shape), np.dtype(dtype))
        buf = self._buffers.get(full_key)
        if buf is None:
            buf = np.empty(shape, dtype=dtype)
            self._buffers[full_key] = buf
            if len(self._buffers) > 16:
                self._buffers.popitem(last=False)
        return buf

    def __call__(self, output, targets):
        """Mean loss over the batch; the gradient is left in `self.grad`."""
        raise NotImplementedError

    def check_targets(self, targets, output_shape):
        """Raise ValueError when `targets` cannot go with outputs of per-sample `output_shape`."""

    def probabilities(self, output):
        """What predict_proba returns for this loss (a new array)."""
        return np.array(output)

    def predictions(self, output):
        """Class ids from outputs: argmax per row, or output > threshold for one column."""
        if output.ndim == 2 and output.shape[1] == 1:
            return (output[:, 0] > self._threshold).astype(np.int64)
        return np.argmax(output.reshape(output.shape[0], -1), axis=1)

    _threshold = 0.5

    def count_correct(self, output, targets):
        """Correct predictions in the batch, or None when the targets are not class labels."""
        if targets.dtype.kind not in "iu":
            if targets.ndim == 2 and output.shape[1] > 1:  # one-hot targets
                return int(np.count_nonzero(self.predictions(output) == np.argmax(targets, axis=1)))
            return None
        if output.shape[1] == 1:
            return int(np.count_nonzero((output[:, 0] > self._threshold) == (targets != 0)))
        return _loss.count_correct(output, targets)

    def get_config(self):
        """Constructor arguments as JSON-safe data (losses have none)."""
        return {}


def _labels(targets, num_classes, who):
    if targets.dtype.kind not in "iu":
        raise TypeError(f"{who}: targets must be integer class labels, got dtype {targets.dtype}")
    if targets.ndim != 1:
        raise ValueError(f"{who}: class labels must be 1-D (samples,), got shape {targets.shape}"
                         + ("; pass y.ravel()" if targets.ndim == 2 and targets.shape[1] == 1 else ""))
    if targets.size and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(f"{who}: labels must be in [0, {num_classes}), got "
                         f"[{targets.min()}, {targets.max()}]")


class SoftmaxCrossEntropy(Loss):
    """Softmax over the last layer's logits + cross-entropy with int labels, fused and stable."""

    name = "SoftmaxCrossEntropy"

    def check_targets(self, targets, output_shape):
        if len(output_shape) != 1 or output_shape[0] < 2:
            raise ValueError(f"SoftmaxCrossEntropy: needs a flat output of >= 2 classes, got {output_shape}")
        _labels(targets, output_shape[0], "SoftmaxCrossEntropy")

    def __call__(self, output, targets):
        self.grad = self._buffer("grad", output.shape, output.dtype)
        return _loss.softmax_cross_entropy(self.grad, output, targets, get_num_threads())

    def probabilities(self, output):
        y = np.empty_like(output)
        _loss.softmax_forward(y, output, get_num_threads())
        return y

    _threshold = 0.0


class MSE(Loss):
    """Quadratic cost: mean over the batch of 0.5 * sum over outputs of (output - target)^2.
    Int labels are turned into one-hot targets (Nielsen's network)."""

    name = "MSE"

    def check_targets(self, targets, output_shape):
        if targets.dtype.kind in "iu":
            if len(output_shape) != 1:
                raise ValueError(f"MSE: int labels need a flat output, got {output_shape}")
            _labels(targets, output_shape[0], "MSE")
        elif tuple(targets.shape[1:]) != tuple(output_shape):
            raise ValueError(f"MSE: targets must have per-sample shape {output_shape}, "
                             f"got {targets.shape[1:]}")

    def __call__(self, output, targets):
        self.grad = self._buffer("grad", output.shape, output.dtype)
        if targets.dtype.kind in "iu":  # one-hot targets, implicit in the kernel
            return _loss.mse_labels(self.grad, output, targets, get_num_threads())
        if targets.dtype != output.dtype:
            cast = self._buffer("cast", output.shape, output.dtype)
            np.copyto(cast, targets.reshape(output.shape))
            targets = cast
        return _loss.mse(self.grad, output, targets, get_num_threads())


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy on one logit per sample (the sigmoid is inside the loss, stable).
    Targets are 0/1 labels or probabilities."""

    name = "BinaryCrossEntropy"
    _threshold = 0.0

    def check_targets(self, targets, output_shape):
        if tuple(output_shape) != (1,):
            raise ValueError(f"BinaryCrossEntropy: needs one output per sample, got {output_shape}")
        if targets.size and (targets.min() < 0 or targets.max() > 1):
            raise ValueError("BinaryCrossEntropy: targets must be in [0, 1]")

    def __call__(self, output, targets):
        self.grad = self._buffer("grad", output.shape, output.dtype)
        target = self._buffer("target", output.shape, output.dtype)
        np.copyto(target, targets.reshape(output.shape), casting="unsafe")
        return _loss.bce_with_logits(self.grad, output, target, get_num_threads())

    def probabilities(self, output):
        return np.exp(-np.logaddexp(0, -output))  # 1 / (1 + e^-x) without overflow for x << 0


LOSSES = {cls.name: cls for cls in (SoftmaxCrossEntropy, MSE, BinaryCrossEntropy)}
