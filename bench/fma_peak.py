"""The machine's measured float32 FMA peak, per vector width and thread count.

    python bench/fma_peak.py [--threads 1 2] [--seconds 0.3] [--repeats 5] [--json OUT]

Compiles bench/fma_peak.c with the system C compiler (gcc or $CC; a second or so, cached per
process) and runs its register-resident FMA loop: 128-, 256- and 512-bit vectors, each only
where the CPU has the instructions (a width it lacks is reported as unsupported, not guessed),
and the same loop of AVX512-BF16 dot products (`bf16`: the ceiling of a bfloat16 kernel with
float32 sums, reported beside the float32 peaks, never used as "the peak").
The kernel benchmarks divide their GFLOP/s by these peaks (roofline.fma_fractions): the numpy
roofline says how close a kernel is to a good GEMM library, this says how close it is to the CPU.
Best of `repeats` runs: machine noise only ever lowers a peak. Wall clock only.
"""
import argparse
import collections
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile

from noise import OthersCpu

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fma_peak.c")
WIDTHS = (128, 256, 512)
NOISY = 0.05  # others' CPU share above which a peak is flagged (it is then too low)
# gflops: {width: best GFLOP/s, or None where the CPU lacks the width}; others_cpu: the share of
# the CPUs other processes took meanwhile (a busy machine lowers the peak, and so inflates every
# fraction of it).
# bf16: the bfloat16 dot-product loop's GFLOP/s (None where the CPU lacks it).
Peak = collections.namedtuple("Peak", "gflops others_cpu bf16")


class PeakUnavailable(RuntimeError):
    """No C compiler, or the program failed: the peak is not known on this machine."""


def compile_c(who, source, output, flags, unavailable):
    """Builds `source` with the system C compiler (gcc, cc or $CC) into a new temporary
    directory as `output` and returns its path; raises `unavailable` (an exception class),
    naming `who`, when there is no compiler or it fails. Shared by the bench/*.c probes."""
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise unavailable(f"{who}: no C compiler (gcc, cc or $CC) to build {os.path.basename(source)}")
    out = os.path.join(tempfile.mkdtemp(prefix=f"fastnn-{who}-"), output)
    try:
        proc = subprocess.run([cc, *flags, source, "-o", out], capture_output=True, text=True)
    except OSError as e:
        raise unavailable(f"{who}: cannot run {cc}: {e}") from e
    if proc.returncode != 0:
        raise unavailable(f"{who}: {cc} failed: {proc.stderr.strip()[-300:]}")
    return out


@functools.lru_cache(maxsize=1)
def _binary():
    return compile_c("fma_peak", SOURCE, "fma_peak", ["-O2", "-pthread"], PeakUnavailable)


def parse(output):
    """fma_peak's lines -> ({width: GFLOP/s or None when the CPU lacks that width}, bf16 GFLOP/s
    or None)."""
    peaks, bf16 = {}, None
    for line in output.splitlines():
        fields = line.split()
        gflops = None if fields[1] == "unsupported" else float(fields[2])
        if fields[0] == "bf16":
            bf16 = gflops
        else:
            peaks[int(fields[0])] = gflops
    return peaks, bf16


@functools.lru_cache(maxsize=None)
def measure(threads, seconds=0.3, repeats=5):
    """Peak of `threads` threads, measured once per process (per arguments)."""
    if threads < 1:
        raise ValueError(f"fma_peak: threads must be >= 1, got {threads}")
    binary = _binary()
    with OthersCpu() as noise:
        proc = subprocess.run([binary, str(threads), str(seconds), str(repeats)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise PeakUnavailable(f"fma_peak: exited {proc.returncode}: {proc.stderr.strip()}")
    peaks, bf16 = parse(proc.stdout)
    return Peak(peaks, noise.share, bf16)


def widest(peaks):
    """(width, GFLOP/s) of the widest vector the CPU has: the machine's float32 limit."""
    width = max(w for w, g in peaks.items() if g is not None)
    return width, peaks[width]


def noise_flag(share):
    return f"others used {share:.0%} of the CPUs" + ("  NOISY: peak too low" if share > NOISY else "")


def table(results):
    """results {threads: Peak} -> the README-ready lines."""
    lines = ["| threads | " + " | ".join(f"{w}-bit GFLOP/s" for w in WIDTHS) +
             " | 512-bit bf16 dot GFLOP/s | noise |", "|---|" + "---|" * (len(WIDTHS) + 2)]
    for threads, peak in results.items():
        cells = ["unsupported" if g is None else f"{g:.1f}"
                 for g in [peak.gflops.get(w) for w in WIDTHS] + [peak.bf16]]
        lines.append(f"| {threads} | " + " | ".join(cells) + f" | {noise_flag(peak.others_cpu)} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=0.3, help="length of one timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per width; the best is kept")
    parser.add_argument("--json", help="also write the peaks here")
    args = parser.parse_args(argv)
    try:
        results = {t: measure(t, args.seconds, args.repeats) for t in args.threads}
    except (PeakUnavailable, ValueError) as e:
        print(e, file=sys.stderr)
        return 2
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({t: p._asdict() for t, p in results.items()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
