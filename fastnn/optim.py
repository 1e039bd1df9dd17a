"""Optimizers over the model's one flat parameter array: one fused kernel pass per step."""
import numpy as np

from . import _optim
from ._runtime import get_num_threads
from .ops import _check as check


class Optimizer:
    """Base class. `bind` gives the flat arrays and allocates state once."""

    needs_gradients = True

    def bind(self, params, grads):
        self.params, self.grads = params, grads

    def step(self):
        raise NotImplementedError

    def state_dict(self):
        """Arrays and numbers that make a resumed run identical (saved in checkpoints)."""
        return {}

    def load_state_dict(self, state):
        for key, value in state.items():
            target = getattr(self, key)
            if isinstance(target, np.ndarray):
                if target.shape != np.shape(value):
                    raise ValueError(f"{type(self).__name__}: saved {key} has shape "
                                     f"{np.shape(value)}, expected {target.shape}")
                target[...] = value
            else:
                setattr(self, key, type(target)(value))

    def get_config(self):
        raise NotImplementedError


class SGD(Optimizer):
    """PyTorch SGD: g = grad + weight_decay * p; v = momentum * v + g; p -= lr * v."""

    def __init__(self, lr=0.01, momentum=0.0, weight_decay=0.0):
        self.lr = check.finite_float("SGD", "lr", lr, minimum=0)
        self.momentum = check.finite_float("SGD", "momentum", momentum, minimum=0)
        self.weight_decay = check.finite_float("SGD", "weight_decay", weight_decay, minimum=0)
        if self.momentum >= 1:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum}")

    def bind(self, params, grads):
        super().bind(params, grads)
        self.velocity = np.zeros_like(params) if self.momentum else None

    def step(self):
        _optim.sgd_update(self.params, self.grads, self.velocity, self.lr, self.momentum,
                          self.weight_decay, get_num_threads())

    def state_dict(self):
        return {"velocity": self.velocity} if self.momentum else {}

    # For fastnn._train_step (the one-call step of Dense stacks): its state arrays, and the
    # arguments of one update (read every step, so lr may change during training).
    fused_kind = "SGD"

    def fused_state(self):
        return self.velocity, None

    def fused_args(self):
        return self.lr, self.momentum, self.weight_decay, 0.0, 0.0, 0.0, 0

    def get_config(self):
        return {"lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay}


class Adam(Optimizer):
    """PyTorch Adam with bias correction; weight_decay adds weight_decay * p to the gradient
    (L2, as torch.optim.Adam; not AdamW's decoupled decay)."""

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        self.lr = check.finite_float("Adam", "lr", lr, minimum=0)
        self.beta1 = check.finite_float("Adam", "beta1", beta1, minimum=0)
        self.beta2 = check.finite_float("Adam", "beta2", beta2, minimum=0)
        self.eps = check.finite_float("Adam", "eps", eps, minimum=0)
        self.weight_decay = check.finite_float("Adam", "weight_decay", weight_decay, minimum=0)
        if self.beta1 >= 1 or self.beta2 >= 1:
            raise ValueError(f"Adam: betas must be in [0, 1), got ({beta1}, {beta2})")

    def bind(self, params, grads):
        super().bind(params, grads)
        self.m, self.v, self.t = np.zeros_like(params), np.zeros_like(params), 0

    def step(self):
        self.t += 1
        _optim.adam_update(self.params, self.grads, self.m, self.v, self.t, self.lr,
                           self.beta1, self.beta2, self.eps, self.weight_decay, get_num_threads())

    def state_dict(self):
        return {"m": self.m, "v": self.v, "t": self.t}

    fused_kind = "Adam"  # see SGD.fused_kind

    def fused_state(self):
        return self.m, self.v

    def fused_args(self):
        self.t += 1  # as step() does
        return self.lr, 0.0, self.weight_decay, self.beta1, self.beta2, self.eps, self.t

    def get_config(self):
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay}


class RandomSearch(Optimizer):
    """Derivative-free: each step draws delta uniform in [-step, step] for every weight, tries
    w + delta and w - delta on the batch, and keeps the better one if it lowers the loss."""

    needs_gradients = False

    def __init__(self, step=0.1, seed=None):
        self.step_size = check.finite_float("RandomSearch", "step", step, minimum=0)
        if self.step_size == 0:
            raise ValueError("RandomSearch: step must be > 0")
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def bind(self, params, grads):
        super().bind(params, grads)
        self.delta = np.empty_like(params)
        self.best = np.empty_like(params)

    def search(self, batch_loss, current_loss):
        """One step. `batch_loss()` is the batch loss at the current params; returns the loss
        of the params it keeps (current_loss when neither candidate is better)."""
        self.rng.random(out=self.delta, dtype=self.delta.dtype)
        self.delta *= 2 * self.step_size
        self.delta -= self.step_size
        np.copyto(self.best, self.params)
        np.add(self.best, self.delta, out=self.params)
        loss_plus = batch_loss()
        np.subtract(self.best, self.delta, out=self.params)
        loss_minus = batch_loss()
        if min(loss_plus, loss_minus) >= current_loss:
            np.copyto(self.params, self.best)
            return current_loss
        if loss_plus < loss_minus:
            np.add(self.best, self.delta, out=self.params)
            return loss_plus
        return loss_minus  # params already hold best - delta

    def get_config(self):
        return {"step": self.step_size, "seed": self.seed}

    def state_dict(self):
        return {"rng_state": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng_state"]


OPTIMIZERS = {cls.__name__: cls for cls in (SGD, Adam, RandomSearch)}
