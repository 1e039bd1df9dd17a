"""fastnn.sklearn.MLPClassifier vs scikit-learn's MLPClassifier: train time and test accuracy.

    python bench/sklearn_compare.py [--threads 1 2] [--epochs 5] [--repeats 1] [--train N]

Same everything: 784-50-10 ReLU, solver 'sgd' (learning rate 0.1, no momentum: the two libraries'
momentum formulas differ, Nesterov in scikit-learn's default), alpha 0, batch 100, the same
number of epochs (tol=0 and n_iter_no_change=epochs: the stopping rule cannot end a run early),
shuffled with random_state 0, float32 inputs for both (scikit-learn then trains in float32).
Data: full MNIST when FASTNN_DATA (or fastnn's cache) has it, else the bundled 3,000/1,000
subset. Threads: fastnn's n_threads; scikit-learn's BLAS via threadpoolctl. The contenders
alternate in a rotating order per repeat, with a pause between them (BLAS workers spin for a
moment after their last call); each time is the median of the repeats. Wall clock only.
"""
import argparse
import os
import statistics
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baselines.cases import thread_limit  # noqa: E402

SETTLE = 0.25  # s between contenders (see bench/compare.py)
PARAMS = dict(hidden_layer_sizes=(50,), activation="relu", solver="sgd", learning_rate_init=0.1,
              momentum=0.0, alpha=0.0, batch_size=100, shuffle=True, random_state=0, tol=0.0)


def mnist(train=None):
    """(x_train, y_train, x_test, y_test, description): float32 in [0, 1], flat 784."""
    from fastnn.datasets import mnist_or_subset
    data, full = mnist_or_subset()

    def flat(split, n=None):
        x, y = split.x[:n], split.y[:n]
        return x.reshape(len(x), -1).astype(np.float32) / 255, y
    x_train, y_train = flat(data.train, train)
    x_test, y_test = flat(data.test)
    what = "full MNIST" if full else "the bundled MNIST subset (set FASTNN_DATA for the full set)"
    return x_train, y_train, x_test, y_test, f"{what}: {len(x_train)} train, {len(x_test)} test"


def contenders(epochs, threads):
    """{name: (make estimator, thread limiter)} with identical settings."""
    from sklearn.neural_network import MLPClassifier as SkMLP

    from fastnn.sklearn import MLPClassifier
    params = dict(PARAMS, max_iter=epochs, n_iter_no_change=epochs)
    return {"fastnn": (lambda: MLPClassifier(**params, n_threads=threads), lambda: thread_limit("fastnn", threads)),
            "sklearn": (lambda: SkMLP(**params, nesterovs_momentum=False, learning_rate="constant"),
                        lambda: thread_limit("numpy", threads))}


def fit_timed(make, limit, x, y, epochs):
    """(fitted estimator, wall seconds of fit)."""
    est = make()
    with limit(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the ConvergenceWarning of reaching max_iter
        start = time.perf_counter()
        est.fit(x, y)
        seconds = time.perf_counter() - start
    if est.n_iter_ != epochs:
        raise RuntimeError(f"{type(est).__module__}: trained {est.n_iter_} epochs, not {epochs}")
    return est, seconds


def compare(x_train, y_train, x_test, y_test, epochs=5, threads=(1, 2), repeats=1, settle=SETTLE):
    """One row per thread count: {threads, <name>_seconds, <name>_accuracy, ratio}."""
    rows = []
    for t in threads:
        runs = contenders(epochs, t)
        seconds, accuracy = {name: [] for name in runs}, {}
        order = list(runs)
        for r in range(repeats):
            for name in order[r % len(order):] + order[:r % len(order)]:
                time.sleep(settle)
                est, s = fit_timed(*runs[name], x_train, y_train, epochs)
                seconds[name].append(s)
                accuracy[name] = est.score(x_test, y_test)  # the same every repeat (random_state)
        row = {"threads": t}
        for name in runs:
            row[f"{name}_seconds"] = statistics.median(seconds[name])
            row[f"{name}_accuracy"] = accuracy[name]
        row["ratio"] = row["sklearn_seconds"] / row["fastnn_seconds"]
        rows.append(row)
    return rows


def table(rows):
    lines = [f"{'threads':>7} {'fastnn s':>9} {'sklearn s':>10} {'sklearn/fastnn':>15} "
             f"{'fastnn acc':>11} {'sklearn acc':>12}"]
    for r in rows:
        lines.append(f"{r['threads']:>7} {r['fastnn_seconds']:>9.3f} {r['sklearn_seconds']:>10.3f} "
                     f"{r['ratio']:>14.1f}x {r['fastnn_accuracy']:>11.4f} {r['sklearn_accuracy']:>12.4f}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--train", type=int, help="use only the first N training images")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.repeats < 1 or min(args.threads) < 1:
        parser.error("--epochs, --repeats and --threads must be >= 1")
    import sklearn
    x_train, y_train, x_test, y_test, what = mnist(args.train)
    print(f"{what}; 784-50-10 relu, sgd lr 0.1, batch 100, {args.epochs} epochs, "
          f"scikit-learn {sklearn.__version__}, median of {args.repeats}")
    print(table(compare(x_train, y_train, x_test, y_test, args.epochs, args.threads, args.repeats)))


if __name__ == "__main__":
    main()
