"""What the fastnn.sklearn estimators share: parameter checks, input validation with
scikit-learn's own helpers, the epoch loop with scikit-learn's stopping rule, threads.

The loop calls the public `Sequential.fit` once per epoch (epochs=1, a shuffle seed drawn from
the estimator's random state), so scikit-learn's per-epoch bookkeeping (loss_curve_, tol and
n_iter_no_change, early stopping on a validation score) sits around fastnn's own training step.
Pickling needs nothing here: a fastnn model pickles as its configuration, weights and optimizer
state (Network.__reduce__), so a fitted estimator pickles, deep-copies and clones as usual.
"""
import contextlib
import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .. import SGD, Adam, Dense, Sequential, get_num_threads, set_num_threads
from ..ops import _check as check

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data
except ImportError:  # 1.3 - 1.5: the same helper, as an estimator method
    def validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

SEED_RANGE = 2**31 - 1
# predict runs in chunks of this many samples, always: float32 GEMMs round differently for
# different chunk sizes, and a pickled copy (which never saw the training batch) must agree.
PREDICT_BATCH = 256
SOLVERS = ("sgd", "adam")
NO_Y = "no_validation"  # scikit-learn's marker for "validate X alone" (y=None is an error)
DTYPES = ("float32", "float64")


@contextlib.contextmanager
def threads(n_threads):
    """fastnn's thread count set to `n_threads` for the block (None: left as it is)."""
    if n_threads is None:
        yield
        return
    before = get_num_threads()
    set_num_threads(n_threads)
    try:
        yield
    finally:
        set_num_threads(before)


def _squared_norm(a):
    # Not a @ a: that wakes numpy's BLAS threads, which then spin beside fastnn's own (measured
    # 28 ms per call on a busy 2-core machine, for 40k float64 numbers).
    return float(np.square(a, dtype=np.float64).sum())


def _fraction(who, name, value, low_open=False):
    """A number in [0, 1) ((0, 1) with low_open)."""
    v = check.finite_float(who, name, value, minimum=0)
    if v >= 1 or (low_open and v == 0):
        raise ValueError(f"{who}: {name} must be in {'(' if low_open else '['}0, 1), got {value!r}")
    return v


def check_training_params(est):
    """Refuse bad hyper-parameters at fit time (scikit-learn's convention: __init__ only stores),
    each error naming the parameter, what came and what is accepted."""
    who = type(est).__name__
    if est.solver not in SOLVERS:
        raise ValueError(f"{who}: solver must be one of {SOLVERS} (fastnn has no 'lbfgs'), got {est.solver!r}")
    check.finite_float(who, "alpha", est.alpha, minimum=0)
    if not (isinstance(est.batch_size, str) and est.batch_size == "auto"):
        if isinstance(est.batch_size, str):
            raise ValueError(f"{who}: batch_size must be 'auto' or an int >= 1, got {est.batch_size!r}")
        check.positive_int(who, "batch_size", est.batch_size)
    if check.finite_float(who, "learning_rate_init", est.learning_rate_init, minimum=0) == 0:
        raise ValueError(f"{who}: learning_rate_init must be > 0, got {est.learning_rate_init!r}")
    for name in ("momentum", "beta_1", "beta_2"):
        _fraction(who, name, getattr(est, name))
    check.finite_float(who, "epsilon", est.epsilon, minimum=0)
    check.positive_int(who, "max_iter", est.max_iter)
    check.finite_float(who, "tol", est.tol, minimum=0)
    check.positive_int(who, "n_iter_no_change", est.n_iter_no_change)
    _fraction(who, "validation_fraction", est.validation_fraction, low_open=True)
    if est.n_threads is not None:
        check.positive_int(who, "n_threads", est.n_threads)
    try:
        dtype = np.dtype(est.dtype).name
    except TypeError:
        dtype = None
    if dtype not in DTYPES:
        raise ValueError(f"{who}: dtype must be one of {DTYPES}, got {est.dtype!r}")


class NetEstimator(BaseEstimator):
    """Base of the fastnn.sklearn estimators. Subclasses give `_hidden_layers()`,
    `_encode_targets(y, first, incremental, classes)` -> (targets, n_outputs, fastnn loss) and
    `_validation_score(x, targets)` (what early stopping maximizes)."""

    _accepts_images = False  # NetClassifier: X may be (n, C, H, W), or flat and reshaped
    _multi_output = False    # y may be 2-D (MLPRegressor)

    # -- training --------------------------------------------------------------------------------
    def fit(self, X, y):
        """Train for up to max_iter epochs (from the current weights with warm_start=True)."""
        return self._fit(X, y, incremental=False)

    def _fit(self, X, y, incremental, classes=None):
        check_training_params(self)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        first = not hasattr(self, "model_") or not (self.warm_start or incremental)
        x, y = self._validate(X, y, reset=first)
        # As scikit-learn: a fresh random state from random_state on every fit / partial_fit.
        rng = check_random_state(self.random_state)
        with threads(self.n_threads):
            targets, n_outputs, loss = self._encode_targets(y, first, incremental, classes)
            x_val = t_val = None
            if self.early_stopping:
                x, x_val, targets, t_val = train_test_split(
                    x, targets, random_state=rng, test_size=self.validation_fraction,
                    stratify=targets if self._stratify else None)
                if x_val.shape[0] < 2:
                    raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                                     "or the size of your dataset.")
            batch = self._batch(x.shape[0])
            if first:
                self._start(x.shape[1:], n_outputs, loss, batch, rng)
            elif not incremental:  # warm start: a new optimizer on the current weights (as sklearn)
                self.model_.compile(self.model_.loss, self._optimizer(batch))
            self._run_epochs(x, targets, x_val, t_val, batch, incremental, rng)
        return self

    _stratify = False  # classifiers: the early-stopping split keeps the class proportions

    def _batch(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
        return int(min(self.batch_size, n))

    def _optimizer(self, batch):
        # scikit-learn's gradient is (sum of sample gradients + alpha * W) / batch: the penalty
        # per step is alpha / batch, fastnn's weight_decay (on biases too: one flat array).
        decay = self.alpha / batch
        if self.solver == "sgd":
            return SGD(lr=self.learning_rate_init, momentum=self.momentum, weight_decay=decay)
        return Adam(lr=self.learning_rate_init, beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon,
                    weight_decay=decay)

    def _start(self, sample_shape, n_outputs, loss, batch, rng):
        """A new network and fresh training records (the first fit or partial_fit)."""
        layers = list(self._hidden_layers()) + [Dense(n_outputs, init="glorot")]
        self.model_ = Sequential(layers, loss=loss, optimizer=self._optimizer(batch),
                                 input_shape=sample_shape, dtype=np.dtype(self.dtype).name,
                                 seed=int(rng.randint(SEED_RANGE)))
        self.n_outputs_, self.n_layers_ = n_outputs, len(layers) + 1
        self.n_iter_, self.t_, self.loss_curve_ = 0, 0, []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
        else:
            self.validation_scores_, self.best_validation_score_, self.best_loss_ = None, None, np.inf
        self._best_params = None

    def _run_epochs(self, x, targets, x_val, t_val, batch, incremental, rng):
        """scikit-learn's _fit_stochastic around one fastnn epoch at a time."""
        model, n = self.model_, x.shape[0]
        penalty_per_norm = 0.5 * self.alpha * (-(-n // batch)) / n  # how sklearn adds the L2 term
        self.n_iter_ = 0
        for _ in range(1 if incremental else self.max_iter):
            seed = int(rng.randint(SEED_RANGE)) if self.shuffle else None
            # scikit-learn adds each batch's penalty with the weights the batch starts from; here
            # the epoch's start (equal for one batch per epoch, close otherwise)
            penalty = penalty_per_norm * _squared_norm(model.params) if self.alpha else 0.0
            history = model.fit(x, targets, epochs=1, batch_size=batch, shuffle=bool(self.shuffle),
                                seed=seed, verbose=0)
            loss = float(history.epoch_train_loss[-1]) + penalty
            self.n_iter_ += 1
            self.t_ += n
            self.loss_curve_.append(loss)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
            if self._no_improvement(x_val, t_val):
                if self.verbose:
                    what = "Validation score" if x_val is not None else "Training loss"
                    print(f"{what} did not improve more than tol={self.tol:f} for "
                          f"{self.n_iter_no_change} consecutive epochs. Stopping.")
                break
            if not incremental and self.n_iter_ == self.max_iter:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and "
                              f"the optimization hasn't converged yet.", ConvergenceWarning)
        if x_val is not None and self._best_params is not None:
            model.params[...] = self._best_params  # early stopping keeps the best epoch's weights

    def _no_improvement(self, x_val, t_val):
        """scikit-learn's _update_no_improvement_count; True when training should stop."""
        if x_val is not None:
            score = self._validation_score(x_val, t_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            worse = score < self.best_validation_score_ + self.tol
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = self.model_.params.copy()
        else:
            loss = self.loss_curve_[-1]
            worse = loss > self.best_loss_ - self.tol
            self.best_loss_ = min(self.best_loss_, loss)
        self._no_improvement_count = self._no_improvement_count + 1 if worse else 0
        return self._no_improvement_count > self.n_iter_no_change

    # -- input -----------------------------------------------------------------------------------
    def _validate(self, X, y=NO_Y, reset=False):
        """X checked by scikit-learn (sets or checks n_features_in_ / feature_names_in_) as a
        C-contiguous array of the model's dtype shaped (n,) + the per-sample input shape."""
        image_shape = None
        if self._accepts_images and isinstance(X, np.ndarray) and X.ndim > 2:
            image_shape = X.shape[1:]
            X = X.reshape(X.shape[0], -1)
        dtype = np.dtype(self.dtype).name
        options = dict(dtype=[dtype] + [d for d in DTYPES if d != dtype], order="C")
        if y is NO_Y:
            X = validate_data(self, X, reset=reset, **options)
        else:
            X, y = validate_data(self, X, y, reset=reset, multi_output=self._multi_output,
                                 y_numeric=not self._stratify, **options)
        shape = self._sample_shape_of(X.shape[1], image_shape, reset)
        x = np.ascontiguousarray(X, dtype=dtype).reshape((X.shape[0],) + shape)
        return x if y is NO_Y else (x, y)

    def _sample_shape_of(self, n_features, image_shape, reset):
        if not reset:
            shape = self._sample_shape
            if image_shape is not None and image_shape != shape:
                raise ValueError(f"{type(self).__name__}: X has per-sample shape {image_shape}, the "
                                 f"model was fitted on {shape}")
            return shape
        shape = getattr(self, "input_shape", None) or image_shape or (n_features,)
        shape = tuple(check.positive_int(type(self).__name__, "input_shape", s)
                      for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
        if image_shape is not None and image_shape != shape:
            raise ValueError(f"{type(self).__name__}: X has per-sample shape {image_shape} but "
                             f"input_shape={shape}")
        if int(np.prod(shape)) != n_features:
            raise ValueError(f"{type(self).__name__}: input_shape={shape} holds {int(np.prod(shape))} "
                             f"features but X has {n_features} per sample")
        self._sample_shape = shape
        return shape

    # -- inference -------------------------------------------------------------------------------
    def _raw(self, X, how="predict_raw"):
        """The network's outputs (`how`: predict_raw or predict_proba) for validated X."""
        check_is_fitted(self, "model_")
        x = self._validate(X)
        with threads(self.n_threads):
            return getattr(self.model_, how)(x, batch_size=PREDICT_BATCH)
