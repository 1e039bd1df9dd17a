"""The numpy-matmul "roofline" that kernel benchmarks are measured against.

The roofline of a kernel is numpy's float32 matmul speed on the same GEMM shapes (with the
same transposes and thread count), measured in the same run: the best a kernel built on one
GEMM per product can expect, so `ratio` = kernel GFLOP/s / roofline GFLOP/s shows what its
non-GEMM passes (im2col, col2im, bias, transposes) cost. Wall clock only (time.perf_counter):
process_time sums CPU over OpenMP threads.
"""
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

import fastnn

ROUNDS = 30  # timed rounds per benchmark and per roofline


def gemm_flops(gemms):
    """Floating-point operations of GEMMs given as (M, K, N[, trans_a, trans_b])."""
    return sum(2 * g[0] * g[1] * g[2] for g in gemms)


def gemm_roofline(gemms, num_threads, rounds=ROUNDS, settle=0.5):
    """Median GFLOP/s of numpy float32 matmul running `gemms` back to back on num_threads.

    Each GEMM is (M, K, N[, trans_a, trans_b]): (M, K) @ (K, N), an operand stored transposed
    when its flag is set, as the kernel's own GEMM call sees it.
    """
    rng = np.random.default_rng(0)
    pairs = []
    for m, k, n, *flags in gemms:
        ta, tb = (flags + [False, False])[:2]
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        pairs.append((a.T if ta else a, b.T if tb else b))
    # OpenBLAS workers spin ~0.1 s after their last call (libgomp's a few ms) and steal a core
    # from whatever runs next: let the previous benchmark's threads fall asleep, and ours after.
    time.sleep(settle)
    times = []
    with threadpool_limits(limits=num_threads, user_api="blas"):
        for _ in range(rounds + 2):
            start = time.perf_counter()
            for a, b in pairs:
                np.matmul(a, b)
            times.append(time.perf_counter() - start)
    time.sleep(settle)
    return gemm_flops(gemms) / statistics.median(times[2:]) / 1e9


def run_and_record(benchmark, fn, gemms, num_threads, rounds=ROUNDS):
    """Benchmarks fn() (one call per round) and records GFLOP/s vs its GEMM roofline.

    Under --benchmark-disable fn runs once and only the roofline's code path is exercised.
    """
    disabled = benchmark.disabled
    roofline = gemm_roofline(gemms, num_threads, *((1, 0) if disabled else (rounds,)))
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=5, iterations=1)
    if disabled:
        return
    gflops = gemm_flops(gemms) / benchmark.stats.stats.median / 1e9
    benchmark.extra_info.update(threads=num_threads, gflops=round(gflops, 1),
                                roofline_gflops=round(roofline, 1),
                                ratio=round(gflops / roofline, 3))
