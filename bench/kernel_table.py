"""README-ready table of the kernel benchmarks: GFLOP/s, the numpy roofline ratio and the
fraction of the machine's measured FMA peak (bench/roofline.py, bench/fma_peak.py).

    pytest bench/bench_conv.py bench/bench_dense.py --benchmark-only --benchmark-json=k.json
    python bench/kernel_table.py k.json
"""
import argparse
import json
import sys

import fma_peak


def rows(report):
    """(name, threads, GFLOP/s, roofline ratio, fraction of peak, peak width, others' CPU share
    while the peak was measured) per benchmark that recorded GFLOP/s."""
    out = []
    for b in report["benchmarks"]:
        info = b.get("extra_info", {})
        if "gflops" not in info:
            continue
        out.append((b["fullname"].split("::")[-1], info.get("threads", 1), info["gflops"], info.get("ratio"),
                    info.get("fraction_of_fma_peak"), info.get("fma_peak_width"), info.get("fma_peak_others_cpu", 0)))
    return out


def table(report):
    lines = ["| benchmark | threads | GFLOP/s | / numpy roofline | / FMA peak (width) |", "|---|---|---|---|---|"]
    for name, threads, gflops, ratio, frac, width, noise in rows(report):
        ratio_cell = "" if ratio is None else f"{ratio:.2f}"
        frac_cell = "" if frac is None else f"{frac:.0%} ({width}-bit)"
        if frac is not None and noise > fma_peak.NOISY:  # a disturbed peak is too low
            frac_cell += f" NOISY peak (others {noise:.0%})"
        lines.append(f"| {name} | {threads} | {gflops:.1f} | {ratio_cell} | {frac_cell} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="pytest-benchmark's --benchmark-json output")
    args = parser.parse_args(argv)
    try:
        with open(args.json) as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        print(f"kernel_table: cannot read {args.json}: {e}", file=sys.stderr)
        return 2
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
