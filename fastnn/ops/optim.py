"""Optimizer steps in place on parameter arrays (PyTorch SGD and Adam formulas).

param and the optimizer state must be writable C-contiguous arrays: they are refused
otherwise, because updating a copy would silently do nothing.
"""
from .. import _optim
from .._runtime import get_num_threads
from . import _check as check
from .activation import inplace_array

__all__ = ["sgd_update", "adam_update"]


def _state(op, param, **arrays):
    """param and its same-shaped, same-dtype companions, flattened to views."""
    param = inplace_array(op, "param", param)
    for name, a in arrays.items():
        check.float_array(op, name, a)
        check.shape_is(op, name, a, param.shape)
    check.same_dtype(op, param=param, **arrays)
    return [param.reshape(-1)] + [a.reshape(-1) for a in arrays.values()]


def sgd_update(param, grad, lr, momentum=0.0, velocity=None, weight_decay=0.0):
    """One torch.optim.SGD step in place: g = grad + weight_decay * param;
    velocity = momentum * velocity + g (needs velocity when momentum > 0); param -= lr * velocity
    (param -= lr * g when momentum == 0, and velocity is not touched)."""
    op = "sgd_update"
    lr = check.finite_float(op, "lr", lr, minimum=0)
    momentum = check.finite_float(op, "momentum", momentum, minimum=0)
    weight_decay = check.finite_float(op, "weight_decay", weight_decay, minimum=0)
    grad = check.float_array(op, "grad", grad)
    if momentum:
        if velocity is None:
            raise ValueError(f"{op}: momentum={momentum} needs a velocity array (zeros at the "
                             f"first step) of param's shape")
        inplace_array(op, "velocity", velocity)
        p, g, vel = _state(op, param, grad=grad, velocity=velocity)
    else:
        (p, g), vel = _state(op, param, grad=grad), None
    _optim.sgd_update(p, g, vel, lr, momentum, weight_decay, get_num_threads())


def adam_update(param, grad, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    """One torch.optim.Adam step in place on param, m and v; step counts from 1:
    g = grad + weight_decay * param; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
    param -= lr / (1 - b1^step) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)."""
    op = "adam_update"
    step = check.positive_int(op, "step", step, minimum=1)
    lr = check.finite_float(op, "lr", lr, minimum=0)
    eps = check.finite_float(op, "eps", eps, minimum=0)
    weight_decay = check.finite_float(op, "weight_decay", weight_decay, minimum=0)
    for name, beta in (("beta1", beta1), ("beta2", beta2)):
        if not 0 <= check.finite_float(op, name, beta) < 1:
            raise ValueError(f"{op}: {name} must be in [0, 1), got {beta!r}")
    grad = check.float_array(op, "grad", grad)
    inplace_array(op, "m", m)
    inplace_array(op, "v", v)
    p, g, m, v = _state(op, param, grad=grad, m=m, v=v)
    _optim.adam_update(p, g, m, v, step, lr, float(beta1), float(beta2), eps, weight_decay,
                       get_num_threads())
