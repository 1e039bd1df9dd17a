"""Optimizer oracles: torch.optim.SGD / Adam formulas in numpy, returning new arrays."""
import numpy as np


def sgd_update(param, grad, velocity, lr, momentum=0.0, weight_decay=0.0):
    """-> (param, velocity) after one step."""
    g = grad + weight_decay * param
    if momentum:
        velocity = momentum * velocity + g
        g = velocity
    return param - lr * g, velocity


def adam_update(param, grad, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    """-> (param, m, v) after step `step` (from 1)."""
    grad = grad + weight_decay * param
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    bc1, bc2 = 1 - beta1 ** step, 1 - beta2 ** step
    denom = np.sqrt(v) / np.sqrt(bc2) + eps
    return param - lr / bc1 * m / denom, m, v
