"""fastnn vs PyTorch (CPU) vs plain numpy as pytest-benchmark groups: one group per workload,
one benchmark per contender x thread count, so `--benchmark-compare` and the saved JSON line
them up. The side-by-side table with ratios and targets is bench/compare.py.

    pytest bench/bench_compare.py --benchmark-only          (benchmark venv, with torch)
    pytest bench/bench_compare.py --benchmark-disable       (CI: one step each, a few seconds)

PyTorch benchmarks skip when torch is not importable (it is never a fastnn dependency). The
optional peers (JAX, ONNX Runtime, scikit-learn) run in a worker process of the interpreter that
has them ($FASTNN_PEER_PYTHON_JAX, ..._ONNXRUNTIME, ..._SKLEARN, else this one) and skip when it
lacks them or cannot express the workload; a round there is one worker measurement (its own
timing, in extra_info as seconds_per_step/seconds_per_call) plus one pipe round trip.
"""
import pytest

from baselines import cases, peers

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


# mode -> the peer whose worker offers it
PEER_TRAIN = {"jax.jit": "jax", "jax.scan": "jax", "sklearn": "sklearn"}
PEER_INFER = {"jax": "jax", "onnxruntime": "onnxruntime", "sklearn": "sklearn"}


def _peer_worker(peer, name, threads, steps):
    note = peers.availability(peer, peers.interpreter(peer))
    if note:
        pytest.skip(note)
    try:
        return peers.Worker(peer, cases.fastnn_model(name), name, threads, steps, 0.05, peers.interpreter(peer))
    except peers.PeerError as e:  # e.g. sklearn has no convolution
        pytest.skip(str(e))


@pytest.mark.parametrize("num_threads", THREADS)
@pytest.mark.parametrize("mode", list(PEER_TRAIN))
@pytest.mark.parametrize("name", list(cases.WORKLOADS))
def test_peer_train(benchmark, name, mode, num_threads):
    benchmark.group = f"compare-train-{name}"
    steps = 1 if benchmark.disabled else STEPS[name]
    with _peer_worker(PEER_TRAIN[mode], name, num_threads, steps) as worker:
        seconds = []
        _run(benchmark, lambda: seconds.append(worker.train(mode)), threads=num_threads,
             samples=steps * cases.WORKLOADS[name])
    assert seconds and all(s > 0 for s in seconds)
    if not benchmark.disabled:
        benchmark.extra_info["seconds_per_step"] = sorted(seconds)[len(seconds) // 2]


@pytest.mark.parametrize("num_threads", THREADS)
@pytest.mark.parametrize("mode", list(PEER_INFER))
@pytest.mark.parametrize("batch", [1, 64, 1000])
def test_peer_lenet_inference(benchmark, batch, mode, num_threads):
    benchmark.group = f"compare-infer-lenet-b{batch}"
    with _peer_worker(PEER_INFER[mode], "lenet", num_threads, 1) as worker:
        seconds = []
        _run(benchmark, lambda: seconds.append(worker.infer(mode, batch)), threads=num_threads, images=batch)
    assert seconds and all(s > 0 for s in seconds)
    if not benchmark.disabled:
        benchmark.extra_info["seconds_per_call"] = sorted(seconds)[len(seconds) // 2]
