"""Optimizers over the model's one flat parameter array: one fused kernel pass per step.

Every hyper-parameter is a validated setting: assigning `opt.lr = -5` or `opt.momentum = 7`
raises at once, whether the value comes from the user, a schedule or a file, so the compiled
update never sees a value it cannot handle. `load_state_dict` accepts only the keys that
`state_dict` writes, checked (types, ranges, finite values, array shapes and dtypes) before
anything is changed.
"""
import numbers
from typing import NamedTuple

import numpy as np

from . import _optim
from ._runtime import get_num_threads


class FusedUpdate(NamedTuple):
    """The settings of one update, in the order of fastnn._train_step.DenseTrainStep.step."""
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    beta1: float = 0.0
    beta2: float = 0.0
    eps: float = 0.0
    step: int = 0


def _real(owner, name, value, low, high=None, above=False):
    """A finite real number in [low, high) (high=None: no upper bound; above: > low); bools and
    strings are refused, not converted."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a number, got {type(value).__name__} {value!r:.80}")
    v = float(value)
    if not np.isfinite(v) or v < low or (above and v == low) or (high is not None and v >= high):
        bound = f"in [{low:g}, {high:g})" if high is not None else f"{'>' if above else '>='} {low:g}"
        raise ValueError(f"{owner}: {name} must be a finite number {bound}, got {value!r}")
    return v


def _count(owner, name, value):
    """A non-negative int (a step counter)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__} {value!r:.80}")
    if value < 0:
        raise ValueError(f"{owner}: {name} must be >= 0, got {value}")
    return int(value)


class Setting:
    """A hyper-parameter checked on every assignment: `check(owner, name, value)` returns the
    stored value or raises. After a change the optimizer's `_changed(name)` runs (SGD
    allocates its velocity there when momentum becomes > 0 after bind)."""

    def __init__(self, check):
        self.check = check

    def __set_name__(self, owner, name):
        self.name, self.slot = name, "_" + name

    def __get__(self, obj, owner=None):
        return self if obj is None else getattr(obj, self.slot)

    def __set__(self, obj, value):
        setattr(obj, self.slot, self.check(type(obj).__name__, self.name, value))
        obj._changed(self.name)


def _non_negative(owner, name, value):
    return _real(owner, name, value, 0.0)


def _unit(owner, name, value):  # momentum, betas: [0, 1)
    return _real(owner, name, value, 0.0, 1.0)


def _positive(owner, name, value):
    return _real(owner, name, value, 0.0, above=True)


class Optimizer:
    """Base class. `bind` gives the flat arrays and allocates state once."""

    needs_gradients = True
    fused_kind = None  # the one-call Dense step's name for this optimizer (None: it has none)

    def __init__(self):
        self.params = self.grads = None  # set by bind

    def bind(self, params, grads):
        """Attach the model's flat parameter and gradient arrays and allocate the optimizer's
        state once (the model calls this when it builds)."""
        self.params, self.grads = params, grads

    def _changed(self, name):
        """Called after a Setting changes; subclasses keep their state consistent here."""

    def start_step(self):
        """Advance the step counter (Adam's bias correction counts steps) and return this
        update's settings as a FusedUpdate. Called once per update, by step() and by the
        model's one-call Dense step."""
        raise NotImplementedError

    def step(self):
        """One update of the bound parameters from the bound gradients, in place."""
        raise NotImplementedError

    def state_dict(self):
        """Arrays and numbers that make a resumed run identical (saved in checkpoints)."""
        return {}

    def load_state_dict(self, state):
        """Restore what state_dict returned. Unknown keys, wrong types, out-of-range numbers,
        non-finite values and arrays of another shape or dtype raise (ValueError/TypeError)
        and leave the optimizer unchanged."""
        owner = type(self).__name__
        if not isinstance(state, dict):
            raise TypeError(f"{owner}: state must be a dict, got {type(state).__name__}")
        known = self._state_keys()
        unknown = sorted(map(str, set(state) - set(known)))
        if unknown:
            raise ValueError(f"{owner}: unknown state {', '.join(repr(k[:80]) for k in unknown[:5])}; "
                             f"known: {sorted(known)}")
        checked = {key: known[key](owner, key, value) for key, value in state.items()}
        self._apply_state(checked)

    def _state_keys(self):
        """{key: check(owner, key, value) -> value} of what state_dict may write."""
        return {}

    def _apply_state(self, checked):
        for key, value in checked.items():
            setattr(self, key, value)

    def _state_array(self, owner, name, value, minimum=None):
        """A saved state array: same shape and dtype as the parameters, finite (and >= minimum)."""
        if self.params is None:
            raise ValueError(f"{owner}: cannot load {name} before the optimizer is bound to parameters")
        if not isinstance(value, np.ndarray):
            raise TypeError(f"{owner}: {name} must be an array, got {type(value).__name__}")
        if value.shape != self.params.shape or value.dtype != self.params.dtype:
            raise ValueError(f"{owner}: saved {name} is {value.dtype} {value.shape}, expected "
                             f"{self.params.dtype} {self.params.shape} like the parameters")
        if not np.isfinite(value).all() or (minimum is not None and (value < minimum).any()):
            raise ValueError(f"{owner}: saved {name} holds non-finite"
                             f"{'' if minimum is None else ' or negative'} values")
        return value

    def get_config(self):
        """The constructor arguments, as plain data: `type(opt)(**opt.get_config())` rebuilds it."""
        raise NotImplementedError

    def fused_state(self):
        """(state1, state2): the flat state arrays of the one-call Dense step
        (fastnn._train_step); None where the optimizer has none."""
        return None, None


class SGD(Optimizer):
    """PyTorch SGD: g = grad + weight_decay * p; v = momentum * v + g; p -= lr * v.

    Raising momentum from 0 after the model is built allocates the velocity (zeros), as
    torch.optim.SGD starts its momentum buffer; lowering it to 0 keeps the velocity for later."""

    lr = Setting(_non_negative)
    momentum = Setting(_unit)
    weight_decay = Setting(_non_negative)

    def __init__(self, lr=0.01, momentum=0.0, weight_decay=0.0):
        self._update = None  # start_step's cached FusedUpdate
        super().__init__()
        self.velocity = None
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay

    def bind(self, params, grads):
        super().bind(params, grads)
        self.velocity = np.zeros_like(params) if self.momentum else None

    def _changed(self, name):
        self._update = None  # the settings changed: the next start_step makes a new FusedUpdate
        if name == "momentum" and self.momentum and self.params is not None and self.velocity is None:
            self.velocity = np.zeros_like(self.params)

    def start_step(self):
        # Made once per change of a setting, not per step (a step of a small net is ~20 us).
        if self._update is None:
            self._update = FusedUpdate(self.lr, self.momentum, self.weight_decay)
        return self._update

    def step(self):
        u = self.start_step()
        _optim.sgd_update(self.params, self.grads, self.velocity, u.lr, u.momentum,
                          u.weight_decay, get_num_threads())

    def state_dict(self):
        return {"velocity": self.velocity} if self.momentum else {}

    def _state_keys(self):
        return {"velocity": self._state_array}

    def _apply_state(self, checked):
        if "velocity" in checked:
            if self.velocity is None:
                self.velocity = np.zeros_like(self.params)
            self.velocity[...] = checked["velocity"]

    # For fastnn._train_step (the one-call step of Dense stacks): its state arrays.
    fused_kind = "SGD"

    def fused_state(self):
        return self.velocity, None

    def advance_steps(self, count):
        """`count` more updates were applied with start_step()'s settings (the one-call
        multi-step run): SGD counts nothing."""

    def get_config(self):
        return {"lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay}


class Adam(Optimizer):
    """PyTorch Adam with bias correction; `t` counts the updates made. weight_decay adds
    weight_decay * p to the gradient (L2, as torch.optim.Adam; not AdamW's decoupled decay)."""

    lr = Setting(_non_negative)
    beta1 = Setting(_unit)
    beta2 = Setting(_unit)
    eps = Setting(_non_negative)
    weight_decay = Setting(_non_negative)
    t = Setting(_count)

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__()
        self.m = self.v = None
        self.lr, self.beta1, self.beta2, self.eps, self.t = lr, beta1, beta2, eps, 0
        self.weight_decay = weight_decay

    def bind(self, params, grads):
        super().bind(params, grads)
        self.m, self.v, self.t = np.zeros_like(params), np.zeros_like(params), 0

    def start_step(self):
        self.t += 1
        return FusedUpdate(self.lr, weight_decay=self.weight_decay, beta1=self.beta1, beta2=self.beta2,
                           eps=self.eps, step=self.t)

    def step(self):
        u = self.start_step()
        _optim.adam_update(self.params, self.grads, self.m, self.v, u.step, u.lr,
                           u.beta1, u.beta2, u.eps, u.weight_decay, get_num_threads())

    def state_dict(self):
        return {"m": self.m, "v": self.v, "t": self.t}

    def _state_keys(self):
        return {"m": self._state_array, "t": _count,
                "v": lambda owner, key, value: self._state_array(owner, key, value, minimum=0)}

    def _apply_state(self, checked):
        for key in ("m", "v"):
            if key in checked:
                getattr(self, key)[...] = checked[key]
        if "t" in checked:
            self.t = checked["t"]

    fused_kind = "Adam"  # see SGD.fused_kind

    def fused_state(self):
        return self.m, self.v

    def advance_steps(self, count):
        """`count` more updates were applied after start_step() (steps t + 1 ... t + count)."""
        self.t += count

    def get_config(self):
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay}


class RandomSearch(Optimizer):
    """Derivative-free: each step draws delta uniform in [-step, step] for every weight, tries
    w + delta and w - delta on the batch, and keeps the better one if it lowers the loss."""

    needs_gradients = False
    step_size = Setting(_positive)

    def __init__(self, step=0.1, seed=None):
        super().__init__()
        self.step_size = _positive("RandomSearch", "step", step)  # checked under the argument's name
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.delta = self.best = None

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

    def _state_keys(self):
        return {"rng_state": self._rng_state}

    def _rng_state(self, owner, name, value):
        """A bit-generator state the generator accepts (tried on a scratch generator)."""
        scratch = np.random.default_rng()
        try:
            scratch.bit_generator.state = value
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"{owner}: saved {name} is not a {type(scratch.bit_generator).__name__} "
                             f"state: {str(exc)[:200]}") from None
        return value

    def _apply_state(self, checked):
        if "rng_state" in checked:
            self.rng.bit_generator.state = checked["rng_state"]


OPTIMIZERS = {cls.__name__: cls for cls in (SGD, Adam, RandomSearch)}
