"""Dense kernels (raw fastnn._dense calls on preallocated outputs, as a layer makes them).

Run: pytest bench/bench_dense.py --benchmark-only   (CI: pytest bench --benchmark-disable)
GFLOP/s counts the three GEMMs; `ratio` compares with numpy float32 matmul on the same shapes.
"""
import numpy as np
import pytest

from fastnn import _dense

from roofline import run_and_record


@pytest.mark.benchmark(group="dense-forward-backward")
@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("n,i,o", [(64, 800, 500)])
def test_dense_forward_backward(benchmark, threads, n, i, o, num_threads):
    threads(num_threads)
    rng = np.random.default_rng(0)
    x, w, b, dy = (rng.standard_normal(s, dtype=np.float32) for s in [(n, i), (o, i), (o,), (n, o)])
    y, dx, dw, db = np.empty((n, o), np.float32), np.empty_like(x), np.empty_like(w), np.empty_like(b)
    # y = x @ w.T, dx = dy @ w, dw = dy.T @ x
    gemms = [(n, i, o, False, True), (n, o, i), (o, n, i, True, False)]

    def step():
        _dense.dense_forward(y, x, w, b, 0, num_threads)
        _dense.dense_backward(dx, dw, db, dy, x, w, None, 0, num_threads)

    run_and_record(benchmark, step, gemms, num_threads)
