"""MLPClassifier, MLPRegressor and NetClassifier: scikit-learn estimators on fastnn networks.

Each network is the hidden layers (Dense stacks from hidden_layer_sizes, or any fastnn layers
for NetClassifier) plus an output Dense the estimator adds for the targets: one logit trained
with binary cross-entropy for two classes (scikit-learn's own choice: one logistic output),
one logit per class with softmax cross-entropy for more, one linear output per target column
with the quadratic cost for regression.
"""
import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils.multiclass import _check_partial_fit_first_call, check_classification_targets

from .. import MSE, BinaryCrossEntropy, Dense, Flatten, MaxUnpool2D, SoftmaxCrossEntropy
from ..layers import Layer
from ..ops import _check as check
from ._base import PREDICT_BATCH, NetEstimator

ACTIVATIONS = {"relu": "relu", "logistic": "sigmoid", "tanh": "tanh", "identity": None}



def expected_failed_checks(estimator):
    """{check name: reason} of sklearn.utils.estimator_checks that `estimator` is known to fail
    (for parametrize_with_checks(expected_failed_checks=...) and the _xfail_checks tag)."""
    failed = {}
    if isinstance(estimator, MLPRegressor) and np.dtype(estimator.dtype) == np.float32:
        failed["check_methods_subset_invariance"] = (
            "float32 GEMMs round differently for a batch of 1 and a batch of 20 (a few 1e-7, the "
            "check allows 1e-7); passes with dtype='float64'")
    return failed


def _more_tags(est, **tags):
    """The tags of scikit-learn < 1.6 (newer versions read __sklearn_tags__)."""
    return dict(tags, _xfail_checks=expected_failed_checks(est))


def _store_params(est, params):
    """__init__'s arguments as attributes of the same names, unchanged (scikit-learn's rule)."""
    for name, value in params.items():
        if name != "self" and not name.startswith("__"):
            setattr(est, name, value)


def _dense_stack(est):
    """Dense layers of hidden_layer_sizes with `activation`, Glorot-uniform weights as
    scikit-learn's (He init scored 1 point lower on digits, 0.945 vs 0.953, mean of 6 seeds)."""
    who = type(est).__name__
    if est.activation not in ACTIVATIONS:
        raise ValueError(f"{who}: activation must be one of {tuple(ACTIVATIONS)}, got {est.activation!r}")
    sizes = est.hidden_layer_sizes
    sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
    return [Dense(check.positive_int(who, "hidden_layer_sizes", s), ACTIVATIONS[est.activation], init="glorot")
            for s in sizes]


def _fresh_copies(templates):
    """New, unbuilt layers configured as `templates` (which stay untouched, so clones and
    refits never share a layer)."""
    copies = []
    for layer in templates:
        if isinstance(layer, MaxUnpool2D):  # its config names its MaxPool2D by position
            pool = layer.pool
            if not isinstance(pool, int):
                pool = next((i for i, t in enumerate(templates) if t is pool), None)
                if pool is None:
                    raise ValueError("NetClassifier: a MaxUnpool2D's MaxPool2D is not in layers")
            copies.append(MaxUnpool2D(pool))
        else:
            copies.append(type(layer)(**layer.get_config()))
    return copies


class _DenseWeights:
    """scikit-learn's coefs_ / intercepts_ views of an MLP's Dense layers (copies)."""

    @property
    def coefs_(self):
        """Weight matrices, (inputs, units) per layer, as scikit-learn's MLP has them."""
        return [layer.params["w"].T.copy() for layer in self.model_.layers]

    @property
    def intercepts_(self):
        """Bias vectors, one per layer."""
        return [layer.params["b"].copy() for layer in self.model_.layers]


class _Classifier(ClassifierMixin, NetEstimator):
    _stratify = True

    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y). `classes` (every label there will be) is required on the
        first call and may be omitted afterwards."""
        _check_partial_fit_first_call(self, classes)  # sets classes_ on the first call
        return self._fit(X, y, incremental=True)

    def _encode_targets(self, y, first, incremental, classes):
        who = type(self).__name__
        check_classification_targets(y)
        labels = np.unique(y)
        if incremental:
            if np.setdiff1d(labels, self.classes_).size:
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {labels}.")
        elif first:
            self.classes_ = labels
        elif not np.array_equal(labels, self.classes_):
            raise ValueError(f"warm_start can only be used where `y` has the same classes as in the "
                             f"previous call to fit. Previously got {self.classes_}, `y` has {labels}")
        if len(self.classes_) < 2:
            raise ValueError(f"{who}: needs at least 2 classes to learn from, y has 1 class: {self.classes_}")
        targets = np.searchsorted(self.classes_, y).astype(np.int64)
        if len(self.classes_) == 2:
            self.out_activation_ = "logistic"
            return targets, 1, BinaryCrossEntropy()
        self.out_activation_ = "softmax"
        return targets, len(self.classes_), SoftmaxCrossEntropy()

    def _validation_score(self, x, targets):
        return self.model_.evaluate(x, targets, batch_size=PREDICT_BATCH)["accuracy"]

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in the order of classes_."""
        p = self._raw(X, "predict_proba").astype(np.float64)
        if p.shape[1] == 1:  # two classes: the logistic output is P(classes_[1])
            p = np.hstack([1 - p, p])
        return p / p.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        """log of predict_proba."""
        return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most probable class of each sample (an element of classes_)."""
        proba = self.predict_proba(X)  # first: NotFittedError before classes_ is looked at
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_tags__(self):  # scikit-learn >= 1.6 (which wants it beside _more_tags)
        return super().__sklearn_tags__()

    def _more_tags(self):
        return _more_tags(self)


class MLPClassifier(_DenseWeights, _Classifier):
    """sklearn.neural_network.MLPClassifier on fastnn: same parameter names (solvers 'sgd' and
    'adam'), plus n_threads (fastnn's thread count during fit/predict; None: unchanged) and
    dtype ('float32', the fast path, or 'float64'). See docs/sklearn.md for the differences."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate_init=0.001, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, n_threads=None, dtype="float32"):
        _store_params(self, locals())

    def _hidden_layers(self):
        return _dense_stack(self)


class MLPRegressor(_DenseWeights, RegressorMixin, NetEstimator):
    """sklearn.neural_network.MLPRegressor on fastnn (squared error, identity output); the
    parameters are MLPClassifier's."""

    __init__ = MLPClassifier.__init__
    _multi_output = True

    def _hidden_layers(self):
        return _dense_stack(self)

    def partial_fit(self, X, y):
        """One epoch over (X, y)."""
        return self._fit(X, y, incremental=True)

    def _encode_targets(self, y, first, incremental, classes):
        t = np.asarray(y, dtype=np.dtype(self.dtype).name)
        t = np.ascontiguousarray(t.reshape(-1, 1) if t.ndim == 1 else t)
        if not first and t.shape[1] != self.n_outputs_:
            raise ValueError(f"MLPRegressor: y has {t.shape[1]} outputs, the model was fitted with "
                             f"{self.n_outputs_}")
        self.out_activation_ = "identity"
        return t, t.shape[1], MSE()

    def _validation_score(self, x, targets):
        return r2_score(targets, self.model_.predict_raw(x, batch_size=PREDICT_BATCH))

    def predict(self, X):
        """Predicted targets: (n_samples,) for one output, (n_samples, n_outputs) otherwise."""
        y = self._raw(X).astype(np.float64)
        return y.ravel() if y.shape[1] == 1 else y

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self):
        return _more_tags(self, multioutput=True)


class NetClassifier(_Classifier):
    """A classifier on any fastnn network. `layers` is the network without its output layer
    (the estimator appends Dense(1 or n_classes)): None (Flatten, Dense(100, 'relu')), a list of
    fastnn layers used as templates (each fit builds new layers from their configuration), or a
    function returning new layers (a module-level function pickles; a lambda does not).
    `input_shape` is the per-sample shape, e.g. (1, 28, 28): flat X of as many features is
    reshaped to it; X may also come as (n,) + input_shape. Training parameters are MLPClassifier's.
    """

    _accepts_images = True

    def __init__(self, layers=None, input_shape=None, *, solver="adam", alpha=0.0001, batch_size="auto",
                 learning_rate_init=0.001, max_iter=200, shuffle=True, random_state=None, tol=1e-4,
                 verbose=False, warm_start=False, momentum=0.9, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 n_threads=None, dtype="float32"):
        _store_params(self, locals())

    def _hidden_layers(self):
        layers = self.layers
        if layers is None:
            return [Flatten(), Dense(100, "relu")]  # Flatten: images work too
        if callable(layers):
            made = list(layers())
            if len({id(layer) for layer in made}) != len(made) or \
                    not all(isinstance(layer, Layer) and layer.input_shape is None for layer in made):
                raise TypeError("NetClassifier: layers() must return new, unbuilt fastnn layers on "
                                "every call (it returned something else, a layer twice, or layers "
                                "already in a network)")
            return made
        if isinstance(layers, (list, tuple)) and layers and all(isinstance(layer, Layer) for layer in layers):
            return _fresh_copies(layers)
        raise TypeError(f"NetClassifier: layers must be None, a list of fastnn layers or a function "
                        f"returning one, got {type(layers).__name__}")
