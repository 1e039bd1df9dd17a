"""fastnn vs PyTorch (CPU) vs plain numpy as pytest-benchmark groups: one group per workload,
one benchmark per contender x thread count, so `--benchmark-compare` and the saved JSON line
them up. The side-by-side table with ratios and targets is bench/compare.py.

    pytest bench/bench_compare.py --benchmark-only          (benchmark venv, with torch)
    pytest bench/bench_compare.py --benchmark-disable       (CI: one step each, a few seconds)

PyTorch benchmarks skip when torch is not importable (it is never a fastnn dependency).
"""
import pytest

from baselines import cases

STEPS = {"nielsen": 200, "mlp": 50, "lenet": 5, "spiral": 200}  # train steps per round
ROUNDS = 10
THREADS = [1, 2]


def _skip_missing(who):
    if not cases.available(who):
        pytest.skip("torch is not importable here (pip install torch==2.13.0 in a benchmark venv)")


def _run(benchmark, fn, **info):
    benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    if not benchmark.disabled:
        benchmark.extra_info.update(info, seconds_median=benchmark.stats.stats.median)


@pytest.mark.parametrize("num_threads", THREADS)
@pytest.mark.parametrize("who", cases.CONTENDERS)
@pytest.mark.parametrize("name", list(cases.WORKLOADS))
def test_train(benchmark, name, who, num_threads):
    _skip_missing(who)
    benchmark.group = f"compare-train-{name}"
    steps = 1 if benchmark.disabled else STEPS[name]
    data = cases.batches(name, steps)
    with cases.thread_limit(who, num_threads):
        train_step, _ = cases.contender(who, name)

        def epoch():
            for x, y in data:
                train_step(x, y)
        _run(benchmark, epoch, threads=num_threads, samples=steps * cases.WORKLOADS[name])


@pytest.mark.parametrize("num_threads", THREADS)
@pytest.mark.parametrize("who", cases.CONTENDERS)
@pytest.mark.parametrize("batch", [1, 64, 1000])
def test_lenet_inference(benchmark, batch, who, num_threads):
    _skip_missing(who)
    benchmark.group = f"compare-infer-lenet-b{batch}"
    x = cases.samples("lenet", batch)[0]
    with cases.thread_limit(who, num_threads):
        _, predict = cases.contender(who, "lenet")
        _run(benchmark, lambda: predict(x), threads=num_threads, images=batch)


@pytest.mark.parametrize("num_threads", THREADS)
@pytest.mark.parametrize("who", cases.CONTENDERS)
@pytest.mark.parametrize("case", list(cases.KERNELS))
def test_kernel(benchmark, case, who, num_threads):
    """A LeNet conv or pool layer alone: forward + backward at batch 64."""
    _skip_missing(who)
    benchmark.group = f"compare-kernel-{case}"
    with cases.thread_limit(who, num_threads):
        _run(benchmark, cases.kernel_step(who, case), threads=num_threads)
