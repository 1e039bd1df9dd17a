"""The numpy-matmul "roofline" that kernel benchmarks are measured against.

The roofline of a kernel is numpy's float32 matmul speed on the same GEMM shapes (with the
same transposes and thread count), measured in the same run: the best a kernel built on one
GEMM per product can expect, so `ratio` = kernel GFLOP/s / roofline GFLOP/s shows what its
non-GEMM passes (im2col, col2im, bias, transposes) cost. Wall clock only (time.perf_counter):
process_time sums CPU over OpenMP threads.

numpy's sgemm itself reaches only part of what the CPU can do, so each kernel also reports
`fraction_of_fma_peak`: its GFLOP/s over the measured float32 FMA peak of the widest vectors the
CPU has, at the same thread count (bench/fma_peak.py), and the same per vector width in
`fraction_of_fma_peak_by_width` (fastnn's AVX2 kernels against the 256-bit peak, say).
`python bench/kernel_table.py BENCH.json` prints them as a table.
"""
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

import fastnn

import fma_peak

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


def fma_fractions(gflops, num_threads):
    """extra_info entries: `gflops` over the machine's measured FMA peak at num_threads threads
    (empty, with a note, when no C compiler can build the peak benchmark)."""
    try:
        measured = fma_peak.measure(num_threads)
    except fma_peak.PeakUnavailable as e:
        return {"fma_peak_note": str(e)}
    peaks = measured.gflops
    width, peak = fma_peak.widest(peaks)
    return {"fma_peak_gflops": {str(w): g for w, g in peaks.items() if g is not None},
            "fma_peak_others_cpu": round(measured.others_cpu, 3), "fma_peak_width": width, "fraction_of_fma_peak": round(gflops / peak, 3),
            "fraction_of_fma_peak_by_width": {str(w): round(gflops / g, 3) for w, g in peaks.items()
                                              if g is not None}}


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
                                ratio=round(gflops / roofline, 3), **fma_fractions(gflops, num_threads))
