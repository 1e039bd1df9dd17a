"""scikit-learn's MLPClassifier on the same network: solver "sgd", the preset's batch size and
learning rate, constant schedule, alpha 0 (no L2), Nesterov off, no shuffling (the batches in
fastnn's order), fastnn's initial weights. One `partial_fit` call is one pass over the data it
is given, batched by sklearn itself: the epoch a user of sklearn runs.

Expressible: Dense stacks with one hidden activation (relu, sigmoid, tanh), a linear last layer
and softmax cross-entropy (MLPClassifier's only multiclass loss), i.e. the mlp and spiral
presets; anything else raises ValueError. Threads: threadpoolctl on its BLAS (the worker).
Import only where scikit-learn is installed: it is never needed by fastnn's benchmarks.
"""
import warnings

import numpy as np

SKLEARN_ACTIVATION = {"relu": "relu", "sigmoid": "logistic", "tanh": "tanh"}


def hyper_parameters(spec, batch):
    """MLPClassifier's arguments for `spec`, or ValueError naming what it cannot express."""
    layers = spec["layers"]
    if any(layer["kind"] != "Dense" for layer in layers):
        raise ValueError("sklearn baseline: Dense layers only, got "
                         + ", ".join(layer["kind"] for layer in layers))
    if spec["loss"] != "SoftmaxCrossEntropy":
        raise ValueError(f"sklearn baseline: softmax cross-entropy only, got {spec['loss']}")
    hidden = {layer["activation"] for layer in layers[:-1]}
    if len(hidden) != 1 or None in hidden or layers[-1]["activation"] is not None:
        raise ValueError("sklearn baseline: one hidden activation and a linear last layer expected")
    return {"hidden_layer_sizes": tuple(layer["units"] for layer in layers[:-1]),
            "activation": SKLEARN_ACTIVATION[hidden.pop()], "solver": "sgd", "batch_size": batch,
            "learning_rate": "constant", "learning_rate_init": spec["lr"], "momentum": spec["momentum"],
            "nesterovs_momentum": False, "alpha": 0.0, "shuffle": False, "max_iter": 1,
            "early_stopping": False}


class Net:
    """Built from `baselines.spec_of(model)` and fastnn's weights (copied, float32)."""

    def __init__(self, spec, weights, batch):
        from sklearn.neural_network import MLPClassifier
        self.clf = MLPClassifier(**hyper_parameters(spec, batch))
        classes = spec["layers"][-1]["units"]
        self.classes = np.arange(classes)
        # sklearn draws its own initial weights on the first partial_fit: let it allocate them
        # (and its optimizer, which holds references to these arrays), then overwrite them in
        # place with fastnn's. The SGD optimizer's velocity is reset below.
        inputs = int(np.prod(spec["input_shape"]))
        self.clf.partial_fit(np.zeros((1, inputs), np.float32), np.zeros(1, np.int64), classes=self.classes)
        ws, bs = weights[0::2], weights[1::2]
        for coef, w in zip(self.clf.coefs_, ws):
            np.copyto(coef, np.asarray(w, np.float32).T)  # sklearn's coef is (inputs, units)
        for intercept, b in zip(self.clf.intercepts_, bs):
            np.copyto(intercept, np.asarray(b, np.float32))
        for v in self.clf._optimizer.velocities:
            v[...] = 0

    def fit_epoch(self, x, y):
        """One pass over (x, y) in order, batched by sklearn; the mean training loss."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: one pass is the point
            self.clf.partial_fit(x, y)
        return self.clf.loss_

    train_step = fit_epoch  # given one batch, one pass is one step

    def predict(self, x):
        return self.clf.predict_proba(x)

    def parameters(self):
        """fastnn's order and layouts: w (units, inputs), b per layer."""
        out = []
        for coef, intercept in zip(self.clf.coefs_, self.clf.intercepts_):
            out += [coef.T.copy(), intercept.copy()]
        return out
