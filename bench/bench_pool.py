"""Max-pool 2x2 forward and its backward (depool) on a LeNet-sized activation, 1 vs 2 threads.

Times the raw kernels with preallocated outputs, as layers call them in the training loop.
Real numbers: `pytest bench/bench_pool.py --benchmark-only`; CI: `--benchmark-disable`.
"""
import time

import numpy as np
import pytest

import fastnn
from fastnn import _pool

SHAPE = (64, 20, 24, 24)  # conv1 output of a LeNet-5-like MNIST net, batch 64
KERNEL = 2


def _buffers():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SHAPE, dtype=np.float32)
    n, c, h, w = SHAPE
    pooled = (n, c, (h - KERNEL) // KERNEL + 1, (w - KERNEL) // KERNEL + 1)
    y, argmax = np.empty(pooled, np.float32), np.empty(pooled, np.int64)
    _pool.maxpool2d_forward(y, argmax, x, KERNEL, KERNEL, KERNEL, KERNEL, 1)
    return x, y, argmax, np.empty_like(x)


def _calls(x, y, argmax, dx, threads):
    """op -> (call, bytes it moves: every input read and output written once)."""
    moved = {"maxpool2d_forward": x.nbytes + y.nbytes + argmax.nbytes,
             "depool2d": dx.nbytes + y.nbytes + argmax.nbytes}
    return {
        "maxpool2d_forward": (lambda: _pool.maxpool2d_forward(
            y, argmax, x, KERNEL, KERNEL, KERNEL, KERNEL, threads), moved["maxpool2d_forward"]),
        "depool2d": (lambda: _pool.depool2d(dx, y, argmax, threads), moved["depool2d"]),
    }


@pytest.fixture
def num_threads(request):
    before = fastnn.get_num_threads()
    fastnn.set_num_threads(request.param)
    yield request.param
    fastnn.set_num_threads(before)


@pytest.mark.benchmark(group="pool (64,20,24,24) f32 2x2", timer=time.perf_counter)
@pytest.mark.parametrize("num_threads", [1, 2], indirect=True)
@pytest.mark.parametrize("op", ["maxpool2d_forward", "depool2d"])
def test_pool(benchmark, op, num_threads):
    x, y, argmax, dx = _buffers()
    call, nbytes = _calls(x, y, argmax, dx, num_threads)[op]
    benchmark.pedantic(call, rounds=300, iterations=1, warmup_rounds=10)
    benchmark.extra_info.update(op=op, threads=num_threads, shape=SHAPE, bytes=nbytes)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["GB/s"] = round(nbytes / benchmark.stats.stats.median / 1e9, 2)
    # The timed kernels still give the right answer.
    if op == "depool2d":
        assert dx.sum() == pytest.approx(float(y.sum(dtype=np.float64)), rel=1e-4)


# Rows of 32 outputs: the 16-lane AVX-512 row's case (LeNet's rows of 12 and 4 never take it).
# Run once per build to compare them: FASTNN_ISA=avx2|avx512 pytest bench/bench_pool.py -k wide
WIDE = (64, 8, 32, 64)


@pytest.mark.benchmark(group="pool wide rows f32 2x2", timer=time.perf_counter)
def test_pool_wide_rows(benchmark, threads):
    threads(1)
    x = np.random.default_rng(0).standard_normal(WIDE, dtype=np.float32)
    pooled = WIDE[:2] + (WIDE[2] // 2, WIDE[3] // 2)
    y, argmax = np.empty(pooled, np.float32), np.empty(pooled, np.int64)
    benchmark.pedantic(lambda: _pool.maxpool2d_forward(y, argmax, x, 2, 2, 2, 2, 1), rounds=300,
                       iterations=1, warmup_rounds=10)
    benchmark.extra_info.update(isa=_pool.maxpool2x2_isa(pooled[3]), row_outputs=pooled[3])
    assert np.array_equal(y, x.reshape(pooled[:3] + (2, pooled[3], 2)).max(axis=(3, 5)))
