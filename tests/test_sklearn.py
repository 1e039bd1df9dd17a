"""fastnn.sklearn: scikit-learn's own estimator checks, scikit-learn's MLP as the reference for
the training step, loss curve and stopping rule, and the tools users put estimators in."""
import inspect
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is optional: pip install 'fastnn[sklearn]'")

from sklearn import neural_network  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils import check_random_state  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fastnn import Conv2D, Dense, Flatten, MaxPool2D, ReLU  # noqa: E402
from fastnn.datasets import mnist_subset  # noqa: E402
from fastnn.sklearn import MLPClassifier, MLPRegressor, NetClassifier, expected_failed_checks  # noqa: E402

# Small networks and one thread keep the checks fast on a shared 2-core machine.
CHECKED = [MLPClassifier(hidden_layer_sizes=(32,), n_threads=1),
           MLPRegressor(hidden_layer_sizes=(32,), n_threads=1),
           MLPRegressor(hidden_layer_sizes=(32,), n_threads=1, dtype="float64"),
           NetClassifier(n_threads=1)]


def _with_expected_failures(estimators):
    if "expected_failed_checks" in inspect.signature(parametrize_with_checks).parameters:
        return parametrize_with_checks(estimators, expected_failed_checks=expected_failed_checks)
    return parametrize_with_checks(estimators)  # scikit-learn < 1.6 reads the _xfail_checks tag


@_with_expected_failures(CHECKED)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return train_test_split(x, y, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def mnist_small():
    data = mnist_subset()
    x = data.train.x.reshape(len(data.train.x), -1).astype(np.float32) / 255
    return x, data.train.y, data.test.x.reshape(len(data.test.x), -1).astype(np.float32) / 255, data.test.y


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


# -- the training step against scikit-learn's ----------------------------------------------------
def _from_same_weights(ours_cls, theirs_cls, x, y, epochs, **params):
    """Both libraries train `epochs` epochs (no shuffling) from the same initial weights: ours
    fits once with a vanishing learning rate (weights unchanged), theirs copies them."""
    common = dict(hidden_layer_sizes=(20, 10), activation="tanh", shuffle=False, warm_start=True, **params)
    lr = common.pop("learning_rate_init")
    ours = _quiet(ours_cls(**common, learning_rate_init=1e-300, max_iter=1, dtype="float64", random_state=0).fit, x, y)
    # fastnn's momentum is classical (PyTorch's), scikit-learn's without Nesterov
    theirs = _quiet(theirs_cls(**common, learning_rate_init=lr, max_iter=1, random_state=0,
                               nesterovs_momentum=False).fit, x, y)
    theirs.coefs_, theirs.intercepts_ = ours.coefs_, ours.intercepts_
    _quiet(ours.set_params(learning_rate_init=lr, max_iter=epochs).fit, x, y)
    _quiet(theirs.set_params(max_iter=epochs).fit, x, y)
    return ours, theirs


def _assert_same_weights(ours, theirs, **tol):
    for got, want in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(got, want, **tol)


@pytest.mark.parametrize("task", ["multiclass", "binary", "regression"])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_training_equals_sklearns_mlp(task, solver, rng):
    # Gaussian inputs: no all-zero column, so Adam's epsilon (placed as PyTorch does, inside
    # scikit-learn's bias correction there) never decides a step; epsilon=1e-30 hides it.
    x = rng.standard_normal((150, 6))
    y = {"multiclass": (x[:, 0] > 0) + (x[:, 1] > 0), "binary": x[:, 0] + x[:, 2] > 0,
         "regression": x[:, 0] - 2 * x[:, 1]}[task]
    ours_cls, theirs_cls = (MLPRegressor, neural_network.MLPRegressor) if task == "regression" else \
        (MLPClassifier, neural_network.MLPClassifier)
    ours, theirs = _from_same_weights(ours_cls, theirs_cls, x, y, epochs=3, **_solver_params(solver))
    _assert_same_weights(ours, theirs, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_[-3:], theirs.loss_curve_[-3:], rtol=1e-12)
    assert ours.out_activation_ == theirs.out_activation_ and ours.n_outputs_ == theirs.n_outputs_


def _solver_params(solver):
    params = dict(solver=solver, alpha=0.0, batch_size=64, learning_rate_init=0.05, epsilon=1e-30)
    return params if solver == "adam" else dict(params, momentum=0.9)


def test_alpha_is_sklearns_l2_penalty(rng):
    # One full-batch step from biases at 0: fastnn's decay of biases (scikit-learn decays only
    # the weights) cannot show, so the step and the reported loss must be scikit-learn's.
    x = rng.standard_normal((120, 5))
    y = (x[:, 0] > 0) + (x[:, 1] > 0)
    ours, theirs = _from_same_weights(MLPClassifier, neural_network.MLPClassifier, x, y, epochs=1,
                                      solver="sgd", alpha=0.5, batch_size=120, learning_rate_init=0.1,
                                      momentum=0.0)
    _assert_same_weights(ours, theirs, rtol=1e-9, atol=1e-12)
    assert ours.loss_curve_[-1] == pytest.approx(theirs.loss_curve_[-1], rel=1e-12)
    unpenalized = _quiet(neural_network.MLPClassifier(**theirs.get_params()).set_params(alpha=0.0).fit, x, y)
    assert abs(unpenalized.loss_curve_[0] - theirs.loss_curve_[-1]) > 1e-3  # the penalty shows


@pytest.mark.parametrize("early_stopping", [False, True])
def test_stopping_rule_is_sklearns(early_stopping, digits):
    x, _, y, _ = digits
    params = dict(hidden_layer_sizes=(16,), tol=10.0, n_iter_no_change=3, max_iter=50,
                  early_stopping=early_stopping, random_state=0)
    ours = MLPClassifier(**params, n_threads=1).fit(x, y)
    theirs = neural_network.MLPClassifier(**params).fit(x, y)
    # epoch 1 improves on the initial inf; epochs 2-5 gain less than tol: 4 > n_iter_no_change
    assert ours.n_iter_ == theirs.n_iter_ == 5
    assert len(ours.loss_curve_) == 5
    if early_stopping:
        assert ours.best_loss_ is None and len(ours.validation_scores_) == 5
        assert ours.best_validation_score_ == max(ours.validation_scores_)
    else:
        assert ours.validation_scores_ is None and ours.best_loss_ == min(ours.loss_curve_)


def test_early_stopping_keeps_the_best_epochs_weights(digits):
    x, _, y, _ = digits
    est = MLPClassifier(hidden_layer_sizes=(16,), early_stopping=True, validation_fraction=0.2,
                        n_iter_no_change=2, max_iter=40, learning_rate_init=0.05, random_state=3,
                        n_threads=1).fit(x, y)
    # The split scikit-learn's way: the first draws of random_state's generator, stratified.
    classes = np.searchsorted(est.classes_, y)
    _, x_val, _, y_val = train_test_split(x, classes, random_state=check_random_state(3),
                                          test_size=0.2, stratify=classes)
    assert est.score(x_val, est.classes_[y_val]) == est.best_validation_score_
    assert est.validation_scores_[-1] < est.best_validation_score_ or est.n_iter_ == 40


def test_convergence_warning_when_max_iter_is_reached(digits):
    x, _, y, _ = digits
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(2\\)"):
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, n_threads=1).fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, tol=10.0, n_iter_no_change=2, n_threads=1).fit(x, y)


# -- behaviour -----------------------------------------------------------------------------------
def test_accuracy_comparable_to_sklearn_on_digits(digits):
    # Mean of 12 seeds (hidden 64, 30 epochs, adam): sklearn 0.9528, fastnn 0.9531.
    x_train, x_test, y_train, y_test = digits
    scores = {}
    for name, cls, extra in (("ours", MLPClassifier, dict(n_threads=1)), ("sklearn", neural_network.MLPClassifier, {})):
        scores[name] = np.mean([_quiet(make_pipeline(StandardScaler(), cls(hidden_layer_sizes=(64,), max_iter=30,
                                                                          random_state=seed, **extra)).fit,
                                       x_train, y_train).score(x_test, y_test) for seed in range(3)])
    assert scores["ours"] >= scores["sklearn"] - 0.02, scores


def test_same_random_state_same_model_and_predictions(digits):
    x, x_test, y, _ = digits
    make = lambda seed: _quiet(MLPClassifier(hidden_layer_sizes=(16,), max_iter=5, random_state=seed).fit, x, y)  # noqa: E731
    a, b, c = make(7), make(7), make(8)
    np.testing.assert_array_equal(a.predict_proba(x_test), b.predict_proba(x_test))
    assert a.loss_curve_ == b.loss_curve_ and a.loss_curve_ != c.loss_curve_


def test_string_labels_multiclass_and_binary(digits):
    x, x_test, y, y_test = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    est = _quiet(MLPClassifier(hidden_layer_sizes=(32,), max_iter=20, random_state=0, n_threads=1).fit, x, names[y])
    assert list(est.classes_) == sorted(names) and est.predict(x_test).dtype.kind == "U"
    assert est.score(x_test, names[y_test]) > 0.85  # sklearn's MLPClassifier: 0.82 with these settings
    odd = np.where(y % 2, "odd", "even")
    binary = _quiet(MLPClassifier(hidden_layer_sizes=(32,), max_iter=20, random_state=0, n_threads=1).fit, x, odd)
    proba = binary.predict_proba(x_test)
    assert binary.out_activation_ == "logistic" and binary.n_outputs_ == 1 and proba.shape == (len(x_test), 2)
    np.testing.assert_array_equal(binary.predict(x_test), binary.classes_[(proba[:, 1] > 0.5).astype(int)])
    assert binary.score(x_test, np.where(y_test % 2, "odd", "even")) > 0.85


def test_pipeline_grid_search_and_cross_validation_on_digits(digits):
    x, x_test, y, y_test = digits
    grid = GridSearchCV(make_pipeline(StandardScaler(), MLPClassifier(max_iter=15, random_state=0, n_threads=1)),
                        {"mlpclassifier__hidden_layer_sizes": [(8,), (64,)]}, cv=3)
    _quiet(grid.fit, x, y)
    assert grid.best_params_["mlpclassifier__hidden_layer_sizes"] == (64,)
    assert grid.score(x_test, y_test) > 0.88  # sklearn's MLPClassifier: 0.93, fastnn's: 0.90
    scores = _quiet(cross_val_score, make_pipeline(StandardScaler(), MLPRegressor(max_iter=20, random_state=0,
                                                                                 n_threads=1)), x, y, cv=3)
    assert scores.mean() > 0.5  # R^2 of digit-as-number regression


def test_cross_validation_on_the_mnist_subset(mnist_small):
    x, y, _, _ = mnist_small
    scores = _quiet(cross_val_score, MLPClassifier(hidden_layer_sizes=(50,), max_iter=10, random_state=0,
                                                   n_threads=1), x, y, cv=3)
    assert scores.min() > 0.85, scores


def lenet_small():
    return [Conv2D(6, 5), ReLU(), MaxPool2D(2), Flatten(), Dense(32, "relu")]


def test_net_classifier_on_images_flat_or_shaped(mnist_small):
    x, y, x_test, y_test = mnist_small
    params = dict(input_shape=(1, 28, 28), max_iter=3, batch_size=50, random_state=0, n_threads=1)
    templates = lenet_small()
    flat = _quiet(NetClassifier(templates, **params).fit, x, y)
    assert flat.score(x_test, y_test) > 0.85
    assert all(layer.input_shape is None for layer in templates)  # templates are not trained
    images = _quiet(NetClassifier(lenet_small, **params).fit, x.reshape(-1, 1, 28, 28), y)
    np.testing.assert_array_equal(flat.predict_proba(x_test), images.predict_proba(x_test.reshape(-1, 1, 28, 28)))
    np.testing.assert_array_equal(flat.predict_proba(x_test), images.predict_proba(x_test))
    assert flat.n_features_in_ == images.n_features_in_ == 784
    again = pickle.loads(pickle.dumps(images))
    np.testing.assert_array_equal(again.predict(x_test), images.predict(x_test))
    assert isinstance(clone(flat).layers[0], Conv2D) and clone(flat).layers[0] is not templates[0]


def test_pickle_keeps_predictions_and_training_state(digits):
    x, x_test, y, _ = digits
    for est in (MLPClassifier(hidden_layer_sizes=(16,), solver="adam"), MLPRegressor(hidden_layer_sizes=(16,), solver="sgd")):
        _quiet(est.set_params(max_iter=3, random_state=0, n_threads=1).fit, x, y)
        copy = pickle.loads(pickle.dumps(est))
        np.testing.assert_array_equal(copy.predict(x_test), est.predict(x_test))
        est.partial_fit(x, y)
        copy.partial_fit(x, y)  # the optimizer state came along: the next epoch is the same
        np.testing.assert_array_equal(copy.model_.params, est.model_.params)


def test_partial_fit(digits):
    x, x_test, y, y_test = digits
    x, x_test = x / 16, x_test / 16
    est = MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.01, random_state=0, n_threads=1)
    with pytest.raises(ValueError, match="classes must be passed"):
        est.partial_fit(x, y)
    est.partial_fit(x[y < 5], y[y < 5], classes=np.arange(10))
    assert list(est.classes_) == list(range(10)) and est.n_iter_ == 1
    for _ in range(10):
        est.partial_fit(x, y)
    # sklearn's MLPClassifier, the same calls: 0.944-0.967 over 3 seeds; fastnn's 0.953-0.960
    assert est.score(x_test, y_test) > 0.92 and len(est.loss_curve_) == 11
    with pytest.raises(ValueError, match="classes not in"):
        est.partial_fit(x[:5], np.full(5, 11))
    with pytest.raises(ValueError, match="early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(x, y, classes=np.arange(10))


def test_warm_start_continues_and_checks_classes(digits):
    x, _, y, _ = digits
    est = _quiet(MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, warm_start=True, random_state=0,
                               n_threads=1).fit, x, y)
    first = est.loss_curve_[:]
    _quiet(est.fit, x, y)
    assert est.loss_curve_[:3] == first and len(est.loss_curve_) == 6 and est.loss_curve_[-1] < first[-1]
    with pytest.raises(ValueError, match="same classes"):
        est.fit(x[y < 9], y[y < 9])


def test_threads_give_the_same_model_and_are_restored(digits, threads):
    import fastnn
    x, x_test, y, _ = digits
    threads(2)
    one = _quiet(MLPClassifier(hidden_layer_sizes=(64,), max_iter=3, random_state=0, n_threads=1).fit, x, y)
    assert fastnn.get_num_threads() == 2
    two = _quiet(MLPClassifier(hidden_layer_sizes=(64,), max_iter=3, random_state=0, n_threads=2).fit, x, y)
    np.testing.assert_allclose(one.predict_proba(x_test), two.predict_proba(x_test), rtol=1e-4, atol=1e-5)


def test_feature_names_from_a_dataframe(digits):
    pd = pytest.importorskip("pandas", reason="pandas is not a test dependency")
    x, _, y, _ = digits
    frame = pd.DataFrame(x, columns=[f"px{i}" for i in range(x.shape[1])])
    est = _quiet(MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, n_threads=1).fit, frame, y)
    assert list(est.feature_names_in_) == list(frame.columns)


@pytest.mark.parametrize("est,fit_args,exc,word", [
    (MLPClassifier(solver="lbfgs"), (), ValueError, "solver"),
    (MLPClassifier(activation="softmax"), (), ValueError, "activation"),
    (MLPClassifier(hidden_layer_sizes=(10, 0)), (), ValueError, "hidden_layer_sizes"),
    (MLPClassifier(batch_size="big"), (), ValueError, "batch_size"),
    (MLPClassifier(learning_rate_init=0), (), ValueError, "learning_rate_init"),
    (MLPClassifier(momentum=1.0), (), ValueError, "momentum"),
    (MLPClassifier(validation_fraction=0), (), ValueError, "validation_fraction"),
    (MLPClassifier(dtype="float16"), (), ValueError, "dtype"),
    (MLPClassifier(n_threads=0), (), ValueError, "n_threads"),
    (NetClassifier(layers="lenet"), (), TypeError, "layers"),
    (NetClassifier(layers=lambda: [Dense(4)] * 2), (), TypeError, "new, unbuilt"),
    (NetClassifier(input_shape=(1, 5, 5)), (), ValueError, "input_shape"),
    (MLPClassifier(), ("one class",), ValueError, "2 classes"),
])
def test_errors_name_the_argument(est, fit_args, exc, word, rng):
    x = rng.standard_normal((30, 16))
    y = np.zeros(30, int) if fit_args else np.arange(30) % 3
    with pytest.raises(exc, match=word):
        est.set_params(max_iter=1).fit(x, y)


def test_predict_errors(digits):
    x, _, y, _ = digits
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(x)
    est = _quiet(MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, n_threads=1).fit, x, y)
    with pytest.raises(ValueError, match="features"):
        est.predict(x[:, :10])
    net = _quiet(NetClassifier(input_shape=(1, 8, 8), max_iter=1, n_threads=1).fit, x, y)
    with pytest.raises(ValueError, match="per-sample shape"):
        net.predict(x.reshape(-1, 1, 4, 16))


def test_import_fastnn_does_not_import_sklearn():
    code = "import sys, fastnn; assert 'sklearn' not in sys.modules, 'sklearn imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_sklearn_is_a_clear_import_error():
    code = ("import sys; sys.modules['sklearn'] = None\n"
            "try:\n    import fastnn.sklearn\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert 'pip install "fastnn[sklearn]"' in out


def test_layer_templates_with_an_unpool_pairing(digits):
    from fastnn import MaxUnpool2D
    x, x_test, y, _ = digits
    pool = MaxPool2D(2)
    templates = [Conv2D(3, 3, padding=1), ReLU(), pool, MaxUnpool2D(pool), Flatten(), Dense(16, "relu")]
    by_object = _quiet(NetClassifier(templates, input_shape=(1, 8, 8), max_iter=2, random_state=0, n_threads=1).fit, x, y)
    templates[3] = MaxUnpool2D(2)  # the same pairing, by index
    by_index = _quiet(NetClassifier(templates, input_shape=(1, 8, 8), max_iter=2, random_state=0, n_threads=1).fit, x, y)
    np.testing.assert_array_equal(by_object.predict_proba(x_test), by_index.predict_proba(x_test))
    assert by_object.model_.layers[3].pool is by_object.model_.layers[2]  # its own pool, not the template's
    with pytest.raises(ValueError, match="MaxPool2D"):
        NetClassifier([Conv2D(3, 3), MaxUnpool2D(MaxPool2D(2))], input_shape=(1, 8, 8), max_iter=1).fit(x, y)
