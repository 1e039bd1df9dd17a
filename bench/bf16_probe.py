"""Would bfloat16 products (float32 sums) pay for LeNet's training step on this CPU? A probe.

    python bench/bf16_probe.py [--threads 1] [--repeats 5] [--seconds 0.05] [--json OUT]

The issue asks for an opt-in bfloat16 path, kept only if LeNet's training step gets >= 1.5x
faster. This times the largest pieces of that step, conv2's forward, dW and dX at batch 64
(x (64, 20, 12, 12), w (50, 20, 5, 5), y and dy (64, 50, 8, 8), stride 1, no padding), each
twice, with bench/bf16_conv_probe.c (compiled with the system C compiler at run time, a second
or so, cached per process; its header comment describes the kernels and layouts):

  f32   fastnn's float32 direct convolution tiles (8 lanes: the forward's AVX2 tile, the dW and
        dX tiles of a build with 32 vector registers),
  bf16  the same loop nests on AVX512-BF16's vdpbf16ps, plus, timed apart, what it costs to get
        their inputs into the bfloat16 layouts each needs (the forward pairs channels, dW
        samples, dX filters: every pass converts its own, each step),

single-threaded, best of `repeats` runs (noise only slows a run), and prints each one's GFLOP/s,
its fraction of the float32 FMA peak (bench/fma_peak.py, measured here) and its error against a
float64 numpy reference on random data in [-1, 1]; then, per pass, the speed-up float32 kernel
time / (bf16 kernel + its conversions), and from those the whole step's:

  step speed-up = 1 / (REST + sum over passes of share / speed-up),

with STEP_SHARES, an assumption taken from a profile of fastnn's LeNet fit step on one thread:
fastnn_dconv_fwd 19.7%, dW 22.1%, dX 18.2% of the step (0.20 / 0.22 / 0.18), the other 40%
(REST) unchanged. Those shares include conv1's (C = 1) parts, which would need bf16 kernels of
their own and are here credited with conv2's speed-ups: the projection is an upper bound.
Exit 1 if a float32 kernel is wrong or a bf16 error exceeds BF16_TOLERANCE; 2 if the probe
cannot run (no C compiler, or no AVX2 + FMA); rows a CPU lacks the instructions for (AVX-512VL
for the float32 dW and dX, AVX512-BF16 for bf16) are marked "unsupported".
"""
import argparse
import collections
import ctypes
import functools
import json
import os
import sys

import numpy as np

import fma_peak
from noise import OthersCpu

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bf16_conv_probe.c")
N, C, H, W, K, R, S = 64, 20, 12, 12, 50, 5, 5  # the shape the C file is compiled for
P, Q = H - R + 1, W - S + 1
FLOPS = 2 * N * K * C * R * S * P * Q  # each pass's multiply-adds (dX's scatter form wastes none)
# the C file's B_* arrays, in its order: float32 tensors, then the bfloat16 layouts
FLOAT32_ARRAYS = ("y", "x", "w", "b", "dy", "dw", "dx")
BF16_ARRAYS = ("xb", "wb", "dw_xb", "dw_dyb", "dx_dyb", "dx_wb")
# the C file's RUN_* kernels
(RUN_F32, RUN_BF16, RUN_BF16_X, RUN_BF16_W, RUN_DW_F32, RUN_DW_BF16, RUN_DW_BF16_X, RUN_DW_BF16_DY,
 RUN_DX_F32, RUN_DX_BF16, RUN_DX_BF16_DY, RUN_DX_BF16_W) = range(12)
F32_TOLERANCE = 1e-5  # max |error| / max |reference|: float32 sums of 500 to 4096 products
BF16_TOLERANCE = 3e-2  # bfloat16 keeps 8 significant bits: ~4e-3 per input, ~1e-2 per product

# One pass: its output array, float32 kernel, bf16 kernel, bf16's conversions, share of the step.
Pass = collections.namedtuple("Pass", "name output f32 bf16 conversions share")
PASSES = (
    Pass("fwd", "y", (RUN_F32, "float32 4x3 tile (AVX2 FMA)"), (RUN_BF16, "bf16 5x4 tile (vdpbf16ps)"),
         ((RUN_BF16_X, "x -> channel-paired bf16 windows"), (RUN_BF16_W, "w -> channel-paired bf16")), 0.20),
    Pass("dW", "dw", (RUN_DW_F32, "float32 5x5 tile (FMA, 32 regs)"), (RUN_DW_BF16, "bf16 5x5 tile (vdpbf16ps)"),
         ((RUN_DW_BF16_X, "x -> sample-paired bf16 windows"), (RUN_DW_BF16_DY, "dy -> sample-paired bf16")), 0.22),
    Pass("dX", "dx", (RUN_DX_F32, "float32 5x4 scatter (FMA, 32 regs)"), (RUN_DX_BF16, "bf16 5x4 scatter (vdpbf16ps)"),
         ((RUN_DX_BF16_DY, "dy -> filter-paired bf16"), (RUN_DX_BF16_W, "w -> [c][r][s][k] bf16")), 0.18),
)
STEP_SHARES = {p.name: p.share for p in PASSES}
REST = 1 - sum(STEP_SHARES.values())  # the rest of the step, which bfloat16 leaves as it is
STEP_TARGET = 1.5


class ProbeUnavailable(RuntimeError):
    """No C compiler, or it failed: the probe cannot run here."""


@functools.lru_cache(maxsize=1)
def _library():
    # -O3 as fastnn's own build (setup.py); no -march: the kernels carry their own targets
    out = fma_peak.compile_c("bf16_probe", SOURCE, "bf16_conv_probe.so", ["-O3", "-shared", "-fPIC"],
                             ProbeUnavailable)
    lib = ctypes.CDLL(out)
    arrays = ctypes.POINTER(ctypes.c_void_p)
    lib.probe_supported.argtypes = [ctypes.c_int]
    lib.probe_elements.argtypes = [ctypes.c_int]
    lib.probe_elements.restype = ctypes.c_long
    lib.probe_run.argtypes = [ctypes.c_int, arrays]
    lib.probe_best_seconds.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_double, arrays]
    lib.probe_best_seconds.restype = ctypes.c_double
    return lib


class Buffers:
    """The kernels' arrays by name (random x, w, b, dy in [-1, 1]) and `pointers`, the C file's
    B_* array of their addresses."""

    def __init__(self, lib, seed=0):
        rng = np.random.default_rng(seed)
        self.arrays = {}
        for i, name in enumerate(FLOAT32_ARRAYS + BF16_ARRAYS):
            dtype = np.float32 if name in FLOAT32_ARRAYS else np.uint16
            self.arrays[name] = np.zeros(lib.probe_elements(i), dtype)
        for name in ("x", "w", "b", "dy"):
            self.arrays[name][:] = rng.uniform(-1, 1, self.arrays[name].size)
        self.pointers = (ctypes.c_void_p * len(self.arrays))(*(a.ctypes.data for a in self.arrays.values()))

    def __getitem__(self, name):
        """Array `name` in its tensor's shape (float32 ones only)."""
        shapes = {"y": (N, K, P, Q), "dy": (N, K, P, Q), "x": (N, C, H, W), "dx": (N, C, H, W),
                  "w": (K, C, R, S), "dw": (K, C, R, S), "b": (K,)}
        return self.arrays[name].reshape(shapes[name])


def references(bufs):
    """float64 {output name: its value} for the forward, dW and dX, from the sliding windows of x
    and, for dX, dy scattered tap by tap."""
    x, w, b, dy = (bufs[name].astype(np.float64) for name in ("x", "w", "b", "dy"))
    windows = np.lib.stride_tricks.sliding_window_view(x, (R, S), axis=(2, 3))
    dx = np.zeros_like(x)
    for r in range(R):
        for s in range(S):
            dx[:, :, r:r + P, s:s + Q] += np.einsum("nkpq,kc->ncpq", dy, w[:, :, r, s])
    return {"y": np.einsum("ncpqrs,kcrs->nkpq", windows, w) + b[None, :, None, None],
            "dw": np.einsum("nkpq,ncpqrs->kcrs", dy, windows),
            "dx": dx}


def relative_error(lib, bufs, output, ref, kernels):
    """max |output - ref| / max |ref| after running `kernels` (in order) on bufs."""
    bufs[output].fill(np.nan)
    for which in kernels:
        lib.probe_run(which, bufs.pointers)
    return float(np.abs(bufs[output] - ref).max() / np.abs(ref).max())


def step_speedup(speedups):
    """The whole step's speed-up when each pass in `speedups` ({name: float32 time / bf16 time})
    speeds up by its factor and the rest of the step (REST) not at all."""
    return 1 / (REST + sum(STEP_SHARES[name] / speedups[name] for name in STEP_SHARES))


def measure(repeats=5, seconds=0.05):
    """{"rows": [(pass, kernel, seconds per batch or None, GFLOP/s or None, error or None)],
    "speedups": {pass: float32 kernel / (bf16 kernel + its conversions), or None}, "step": the
    projected step speed-up or None, "peak": fma_peak's Peak (1 thread), "others_cpu": others'
    share of the CPUs while the kernels ran}."""
    lib = _library()
    if not lib.probe_supported(RUN_F32):
        raise ProbeUnavailable("bf16_probe: this CPU lacks AVX2 + FMA (fastnn's direct convolution's ISA)")
    bufs = Buffers(lib)
    refs = references(bufs)
    errors = {}
    for p in PASSES:
        if lib.probe_supported(p.f32[0]):
            errors[p.f32[0]] = relative_error(lib, bufs, p.output, refs[p.output], [p.f32[0]])
        if lib.probe_supported(p.bf16[0]):
            errors[p.bf16[0]] = relative_error(lib, bufs, p.output, refs[p.output],
                                               [which for which, _ in p.conversions] + [p.bf16[0]])
    peak = fma_peak.measure(1)
    seconds_of = {}
    with OthersCpu() as noise:
        for p in PASSES:
            for which, _ in (p.f32, p.bf16) + p.conversions:
                if lib.probe_supported(which):
                    seconds_of[which] = lib.probe_best_seconds(which, repeats, seconds, bufs.pointers)
    rows, speedups = [], {}
    for p in PASSES:
        for which, name in (p.f32, p.bf16) + p.conversions:
            t = seconds_of.get(which)
            gflops = FLOPS / t / 1e9 if t is not None and which in (p.f32[0], p.bf16[0]) else None
            rows.append((p.name, name, t, gflops, errors.get(which)))
        speedups[p.name] = None
        if p.bf16[0] in seconds_of:
            bf16_total = seconds_of[p.bf16[0]] + sum(seconds_of[which] for which, _ in p.conversions)
            rows.append((p.name, "bf16 kernel + its conversions", bf16_total, FLOPS / bf16_total / 1e9,
                         errors[p.bf16[0]]))
            if p.f32[0] in seconds_of:
                speedups[p.name] = seconds_of[p.f32[0]] / bf16_total
    step = step_speedup(speedups) if None not in speedups.values() else None
    return {"rows": rows, "speedups": speedups, "step": step, "peak": peak, "others_cpu": noise.share}


def table(result):
    """measure()'s result -> the markdown table, the speed-ups and the projected step."""
    peak_width, peak = fma_peak.widest(result["peak"].gflops)
    bf16_peak = result["peak"].bf16
    lines = [f"LeNet conv2, batch {N}: x ({N}, {C}, {H}, {W}), w ({K}, {C}, {R}, {S}), y and dy "
             f"({N}, {K}, {P}, {Q}), {FLOPS / 1e6:.1f} MFLOP a pass, 1 thread; float32 FMA peak "
             f"{peak:.1f} GFLOP/s ({peak_width}-bit), bf16 dot peak "
             + ("unsupported" if bf16_peak is None else f"{bf16_peak:.1f}"),
             "",
             "| pass | kernel | ms per batch of 64 | GFLOP/s | fraction of fp32 FMA peak | relative error |",
             "|---|---|---|---|---|---|"]
    for pass_name, name, t, gflops, error in result["rows"]:
        if t is None:
            lines.append(f"| {pass_name} | {name} | unsupported | | | |")
            continue
        flops = f"{gflops:.1f} | {gflops / peak:.2f}" if gflops is not None else " | "
        err = f"{error:.1e}" if error is not None else ""
        lines.append(f"| {pass_name} | {name} | {t * 1e3:.3f} | {flops} | {err} |")
    lines.append("")
    share = result["others_cpu"]
    flag = "  NOISY: times too long" if share > fma_peak.NOISY else ""
    lines.append(f"kernels: others used {share:.0%} of the CPUs{flag}; "
                 f"FMA peak: {fma_peak.noise_flag(result['peak'].others_cpu)}")
    lines.append("float32 kernel time / (bf16 kernel + its conversions), above 1 when bf16 is faster:")
    for name, speedup in result["speedups"].items():
        lines.append(f"{name} bf16(+conv)/f32: " + ("unsupported" if speedup is None else f"{speedup:.2f}x"))
    if result["step"] is None:
        lines.append("projected LeNet step: unsupported")
    else:
        terms = " + ".join(f"{STEP_SHARES[name]:.2f}/{speedup:.2f}" for name, speedup in result["speedups"].items())
        lines.append(f"projected LeNet step: 1 / ({REST:.2f} + {terms}) = {result['step']:.2f}x "
                     f"(needed: {STEP_TARGET}x; an upper bound: conv1's shares get conv2's speed-ups)")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, choices=[1], default=1,
                        help="single-threaded only: the question is the per-core speed-up")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per kernel; the best is kept")
    parser.add_argument("--seconds", type=float, default=0.05, help="least length of one timed run")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if args.repeats < 1 or not args.seconds > 0:
        print("bf16_probe: --repeats >= 1 and --seconds > 0", file=sys.stderr)
        return 2
    try:
        result = measure(args.repeats, args.seconds)
    except (ProbeUnavailable, fma_peak.PeakUnavailable) as e:
        print(e, file=sys.stderr)
        return 2
    print(table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**result, "peak": result["peak"]._asdict(),
                       "rows": [dict(zip(("pass", "kernel", "seconds", "gflops", "relative_error"), row))
                                for row in result["rows"]]}, f, indent=1)
    f32_kernels = {p.f32[1] for p in PASSES}
    wrong = [f"{pass_name} {name}: {err:.1e}" for pass_name, name, _, _, err in result["rows"]
             if err is not None and not err <= (F32_TOLERANCE if name in f32_kernels else BF16_TOLERANCE)]
    if wrong:
        print(f"bf16_probe: wrong results (allowed: float32 {F32_TOLERANCE:.0e}, bf16 {BF16_TOLERANCE:.0e}): "
              + "; ".join(wrong), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
