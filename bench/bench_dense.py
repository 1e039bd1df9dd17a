"""Dense kernels (raw fastnn._dense calls on preallocated outputs, as a layer makes them).

Run: pytest bench/bench_dense.py --benchmark-only   (CI: pytest bench --benchmark-disable)
GFLOP/s counts the three GEMMs; `ratio` compares with numpy float32 matmul on the same shapes.
"""
import numpy as np
import pytest

from fastnn import _dense

from roofline import fma_fractions, run_and_record


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


# The evidence for sgemm_impl() in src_c/_blas.pxd: fastnn_small_sgemm vs OpenBLAS on the
# GEMMs of the seed workloads, same shapes and orientation, one thread. (label, ta, tb, m, n, k)
SMALL_GEMMS = [("nielsen-forward", "N", "T", 10, 30, 784), ("nielsen-dW", "T", "N", 30, 784, 10),
               ("nielsen100-forward", "N", "T", 10, 100, 784), ("nielsen100-dW", "T", "N", 100, 784, 10),
               ("lenet-fc-batch1", "N", "T", 1, 500, 800), ("mlp-forward", "N", "T", 100, 50, 784),
               ("mlp-dW", "T", "N", 50, 784, 100), ("spiral-forward", "N", "T", 30, 10, 2)]


@pytest.mark.benchmark(group="gemm-small")
@pytest.mark.parametrize("impl", ["small", "blas"])
@pytest.mark.parametrize("label,ta,tb,m,n,k", SMALL_GEMMS, ids=[g[0] for g in SMALL_GEMMS])
def test_gemm_small_vs_openblas(benchmark, threads, impl, label, ta, tb, m, n, k):
    threads(1)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if ta == "T" else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if tb == "T" else (k, n), dtype=np.float32)
    c = np.empty((m, n), np.float32)
    benchmark.pedantic(_dense.sgemm, args=(ta, tb, 1.0, a, b, 0.0, c, impl),
                       rounds=200, warmup_rounds=20, iterations=10)
    if not benchmark.disabled:
        gflops = 2 * m * n * k / benchmark.stats.stats.median / 1e9
        benchmark.extra_info.update(gflops=round(gflops, 1), **fma_fractions(gflops, 1))


# The mlp preset's one-call train step on real MNIST batches (the bundled subset), with its first
# layer skipping the batch's all-zero input columns (src_c/train_step.pyx) or not.
@pytest.mark.benchmark(group="skip-zero-columns")
@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("preset,batch", [("mlp", 100), ("nielsen", 10)])
@pytest.mark.parametrize("columns", ["skip-zero", "all"], ids=["skip", "full"])
def test_skip_zero_columns(benchmark, threads, num_threads, preset, batch, columns):
    from fastnn import datasets, zoo
    threads(num_threads)
    (x, y), _ = datasets.mnist_subset()
    x = x.reshape(len(x), -1)[:batch * 20]
    x = (x / np.float32(255)).astype(np.float32) if x.dtype == np.uint8 else x.astype(np.float32)
    y = y[:batch * 20].astype(np.int64)
    model = zoo.get(preset).build(seed=0)
    batches = [(x[i:i + batch], y[i:i + batch]) for i in range(0, len(x), batch)]
    model.train_step(*batches[0])  # makes the one-call step's plan for this batch size
    model._fused_steps[batch].columns = columns  # DenseTrainStep's option (src_c/train_step.pyx)
    state = {"i": 1}

    def step():
        xb, yb = batches[state["i"] % len(batches)]
        state["i"] += 1
        model.train_step(xb, yb)

    benchmark(step)


# One compiled run of steps (DenseTrainStep.run, what fit calls on in-memory arrays) over a
# shuffled order: the spiral preset takes the tiny-stack path (src_c/fastnn_tiny_dense.h),
# nielsen and mlp the GEMM one, on 60,000 random rows so that the gathered rows come from memory
# as MNIST's do. On two threads nielsen and mlp gather the next batches on the second thread
# (DenseTrainStep.pipelined). The time is per run of `steps` steps; extra_info has it per step.
@pytest.mark.benchmark(group="compiled-run")
@pytest.mark.parametrize("preset,batch,rows,steps,num_threads", [
    ("spiral", 30, 300, 10, 1), ("nielsen", 10, 60000, 256, 1), ("nielsen", 10, 60000, 256, 2),
    ("mlp", 100, 60000, 64, 1), ("mlp", 100, 60000, 64, 2)])
def test_compiled_run(benchmark, threads, preset, batch, rows, steps, num_threads):
    from fastnn import zoo
    threads(num_threads)
    model = zoo.get(preset).build(seed=0)
    rng = np.random.default_rng(0)
    x = rng.random((rows,) + model.input_shape, dtype=np.float32)
    y = rng.integers(0, model.output_shape[0], rows).astype(np.int64)
    order = rng.permutation(rows).astype(np.int64)
    plan = model._fused_plan(batch)
    assert plan.tiny == (preset == "spiral") and plan.pipelined == (preset != "spiral")
    losses, correct = np.empty(steps), np.empty(steps, np.int64)
    update = model.optimizer.start_step()
    benchmark(plan.run, x, y, order, 0, losses, correct, *update, num_threads)
    assert np.all(np.isfinite(losses))
    if not benchmark.disabled:
        benchmark.extra_info["us_per_step"] = round(benchmark.stats.stats.min / steps * 1e6, 2)
