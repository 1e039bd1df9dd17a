"""Loss oracles, computed in float64 with the log-sum-exp shift."""
import numpy as np


def softmax(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_cross_entropy(logits, labels):
    x = logits.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))[:, 0]
    n = len(labels)
    loss = np.mean(lse - x[np.arange(n), labels])
    dlogits = softmax(x)
    dlogits[np.arange(n), labels] -= 1
    return loss, dlogits / n


def mse(pred, target):
    d = pred.astype(np.float64) - target
    n = pred.shape[0]
    return 0.5 * np.sum(d * d) / n, d / n


def bce_with_logits(logits, target):
    z, t = logits.astype(np.float64), target.astype(np.float64)
    loss = np.mean(np.logaddexp(0, z) - z * t)  # log(1 + e^z) - z t
    return loss, (np.exp(-np.logaddexp(0, -z)) - t) / z.size  # sigmoid without overflow


def count_correct(logits, labels):
    pred = (logits[:, 0] > 0).astype(np.int64) if logits.shape[1] == 1 else np.argmax(logits, axis=1)
    return int(np.sum(pred == labels))
