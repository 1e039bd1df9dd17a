"""The float32 activation passes (fastnn_elementwise.h) on LeNet's conv1 output: a batch of 64
(737,280 values, 2.9 MB) and one image (11,520 values, in L1/L2), one thread. Run once per
build to compare them (docs/kernels.md, "Vector builds"):

    FASTNN_ISA=avx2 pytest bench/bench_activation.py --benchmark-only
    FASTNN_ISA=avx512 pytest bench/bench_activation.py --benchmark-only
"""
import numpy as np
import pytest

import fastnn
from fastnn import _activation

SIZES = {"batch64": 64 * 20 * 24 * 24, "batch1": 20 * 24 * 24}


@pytest.mark.benchmark(group="activation f32")
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("op", ["relu_forward", "sigmoid_forward", "sigmoid_backward"])
def test_activation(benchmark, threads, op, size):
    threads(1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SIZES[size], dtype=np.float32)
    out = np.empty_like(x)
    kernel = getattr(_activation, op)["float"]
    args = (out, x, 1) if op.endswith("forward") else (out, x, rng.random(x.size, dtype=np.float32), 1)
    benchmark(kernel, *args)
    benchmark.extra_info.update(simd=fastnn.info()["activation_simd"], values=x.size)
    assert np.isfinite(out).all()
