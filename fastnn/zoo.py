"""Preset models reproducing the seed workloads (also `fastnn train --model NAME`).

Each preset names its network, loss, optimizer, data and training schedule; `build()` returns
a compiled Sequential. Targets are what the preset must reach (see README for measured runs).
"""
from dataclasses import dataclass, field

import numpy as np

from .layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU
from .losses import MSE, BinaryCrossEntropy, SoftmaxCrossEntropy
from .model import Sequential
from .optim import SGD, RandomSearch


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    data: str              # "mnist", "spiral" or "twoclass"
    layout: str            # "flat" (N, features) or "image" (N, 1, 28, 28)
    epochs: int
    batch_size: int
    lr: float
    hidden: int
    target: str
    make_layers: object = field(repr=False)
    make_loss: object = field(repr=False)
    momentum: float = 0.0
    loss_threshold: float = None  # stop as soon as a step's loss is below this
    search_step: float = 0.1      # RandomSearch perturbation size

    def config(self, hidden=None, lr=None, seed=None, optimizer="sgd", dtype=np.float32):
        """The preset as a run file (fastnn.config's schema, with its "fit" section): what
        `fastnn config --model NAME` prints and `fastnn train --config FILE` trains.
        `optimizer` is 'sgd' or 'random-search' (derivative-free; `lr` is then its step)."""
        hidden = self.hidden if hidden is None else hidden
        if optimizer == "sgd":
            opt = SGD(lr=self.lr if lr is None else lr, momentum=self.momentum)
        elif optimizer == "random-search":  # `lr` is the perturbation size
            opt = RandomSearch(step=self.search_step if lr is None else lr, seed=seed)
        else:
            raise ValueError(f"preset {self.name}: optimizer must be 'sgd' or 'random-search', got {optimizer!r}")
        unbuilt = Sequential(self.make_layers(hidden), loss=self.make_loss(), optimizer=opt, dtype=dtype, seed=seed)
        config = dict(unbuilt.get_config(), input_shape=list(self.input_shape))
        config["fit"] = {"epochs": self.epochs, "batch_size": self.batch_size, "shuffle": True,
                         "seed": seed, "data": self.data, "stop_below_loss": self.loss_threshold}
        return config

    def build(self, hidden=None, lr=None, seed=None, optimizer="sgd", dtype=np.float32):
        """A compiled, built model: exactly what its config() describes."""
        return Sequential.from_config(self.config(hidden, lr, seed, optimizer, dtype))

    @property
    def input_shape(self):
        return {"flat": (784,), "image": (1, 28, 28)}.get(self.layout, (2,))


# Dense layers carry their activation (fused kernel); Dense(n) + Sigmoid() computes the same.
def _mlp(hidden):
    return [Dense(hidden, "relu", init="he"), Dense(10, init="he")]


def _nielsen(hidden):
    return [Dense(hidden, "sigmoid", init="normal"), Dense(10, "sigmoid", init="normal")]


def _spiral(hidden):
    return [Dense(hidden, "sigmoid", init="glorot"), Dense(3, init="glorot")]


def _twoclass(hidden):
    return [Dense(hidden, "sigmoid", init="glorot"), Dense(1, init="glorot")]


def _lenet(hidden):
    return [Conv2D(20, 5), ReLU(), MaxPool2D(2), Conv2D(50, 5), ReLU(), MaxPool2D(2), Flatten(),
            Dense(hidden, "relu"), Dense(10)]


PRESETS = {p.name: p for p in [
    Preset("mlp", "784-50-10 ReLU, softmax CE, SGD lr 0.1, batch 100, 16 epochs", "mnist", "flat",
           epochs=16, batch_size=100, lr=0.1, hidden=50, target=">= 97.0% test accuracy",
           make_layers=_mlp, make_loss=SoftmaxCrossEntropy),
    Preset("nielsen", "784-30-10 sigmoid, quadratic cost, SGD eta 3.0, batch 10, 30 epochs, N(0,1) init",
           "mnist", "flat", epochs=30, batch_size=10, lr=3.0, hidden=30,
           target=">= 95.0% test accuracy at the best epoch (>= 96.0% with --hidden 100)",
           make_layers=_nielsen, make_loss=MSE),
    Preset("spiral", "2-10-3 sigmoid, softmax CE, SGD lr 1.0, batch 30, on the 3-class spiral",
           "spiral", "points", epochs=300, batch_size=30, lr=1.0, hidden=10,
           target=">= 95% train accuracy within 300 epochs",
           make_layers=_spiral, make_loss=SoftmaxCrossEntropy),
    Preset("twoclass", "2-6-1 logistic net, binary cross-entropy, gradient descent or random search",
           "twoclass", "points", epochs=5000, batch_size=100, lr=1.0, hidden=6,
           target="loss < 0.2 with both optimizers", make_layers=_twoclass,
           make_loss=BinaryCrossEntropy, loss_threshold=0.2),
    Preset("lenet", "conv20-ReLU-pool-conv50-ReLU-pool-fc500-ReLU-fc10, softmax CE, SGD lr 0.01 "
           "momentum 0.9, batch 64", "mnist", "image", epochs=10, batch_size=64, lr=0.01, hidden=500,
           target=">= 99.0% test accuracy within 10 epochs", make_layers=_lenet,
           make_loss=SoftmaxCrossEntropy, momentum=0.9),
]}


def get(name):
    """The preset called `name`; ValueError listing the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(PRESETS)}") from None
