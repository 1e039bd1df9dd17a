"""Loss ops: each returns (mean loss as a Python float, gradient of that loss w.r.t. its input).

Gradients already include the 1/N of the mean, so they feed a layer's backward directly.
"""
from .. import _loss
from .._runtime import get_num_threads
from . import _check as check

__all__ = ["softmax", "softmax_cross_entropy", "mse", "bce_with_logits", "count_correct"]


def _labels(op, labels, n, k):
    labels = check.int_array(op, "labels", labels, 1)
    check.shape_is(op, "labels", labels, (n,))
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= k:
        raise ValueError(f"{op}: labels must be class ids in [0, {k}), got range [{lo}, {hi}]")
    return labels


def softmax(x, out=None):
    """x (N, K) -> softmax of each row (N, K), stable for any finite x; out may be x."""
    op = "softmax"
    x = check.float_array(op, "x", x, 2)
    y = check.output(op, "out", out, x.shape, x.dtype)
    _loss.softmax_forward(y, x, get_num_threads())
    return y


def softmax_cross_entropy(logits, labels):
    """logits (N, K), int labels (N,) in [0, K) -> (mean cross-entropy of softmax(logits),
    dlogits (N, K) = (softmax - onehot) / N). Stable for logits of any finite size."""
    op = "softmax_cross_entropy"
    logits = check.float_array(op, "logits", logits, 2)
    labels = _labels(op, labels, *logits.shape)
    dlogits = check.output(op, "dlogits", None, logits.shape, logits.dtype)
    loss = _loss.softmax_cross_entropy(dlogits, logits, labels, get_num_threads())
    return loss, dlogits


def _pair(op, a_name, a, b_name, b):
    a = check.float_array(op, a_name, a)
    b = check.float_array(op, b_name, b)
    check.same_dtype(op, **{a_name: a, b_name: b})
    check.shape_is(op, b_name, b, a.shape)
    return a, b


def mse(pred, target):
    """pred, target (N, ...) -> (mean over N of 0.5 * sum over the rest of (pred - target)^2,
    dpred = (pred - target) / N)."""
    op = "mse"
    pred, target = _pair(op, "pred", pred, "target", target)
    dpred = check.output(op, "dpred", None, pred.shape, pred.dtype)
    return _loss.mse(dpred, pred, target, get_num_threads()), dpred


def bce_with_logits(logits, target):
    """logits z, target t (same shape, t in [0, 1]) -> (mean over all elements of
    -t log sigmoid(z) - (1 - t) log(1 - sigmoid(z)), dlogits = (sigmoid(z) - t) / z.size).
    Computed as max(z, 0) - z t + log1p(exp(-|z|)): finite for any finite z."""
    op = "bce_with_logits"
    logits, target = _pair(op, "logits", logits, "target", target)
    dlogits = check.output(op, "dlogits", None, logits.shape, logits.dtype)
    return _loss.bce_with_logits(dlogits, logits, target, get_num_threads()), dlogits


def count_correct(logits, labels):
    """logits (N, K), int labels (N,) -> rows whose argmax (first on ties) is the label; for one
    column (binary logits), rows where (logit > 0) equals the 0/1 label."""
    op = "count_correct"
    logits = check.float_array(op, "logits", logits, 2)
    labels = _labels(op, labels, logits.shape[0], max(logits.shape[1], 2))
    return _loss.count_correct(logits, labels)
