"""Which build of the vector kernels runs: FASTNN_ISA, checked once when fastnn is imported.

The kernels (src_c/fastnn_cpu.h) come in three builds: 'avx512' (16-lane AVX-512 clones),
'avx2' (8-lane AVX2+FMA clones) and 'baseline' (the build's own compiler flags). By default the
best one the CPU runs. FASTNN_ISA=avx2 or baseline (or avx512) forces a lower one, so tests and
benchmarks can compare the builds on one machine; fastnn.info()["isa"] says which runs.

A value that is not one of the three, or one above what this CPU runs, raises ValueError at
import (the way a bad FASTNN_NUM_THREADS does): running another build than the one asked for
would make a forced test or benchmark measure the wrong code without saying so. The kernels
themselves never run an instruction the CPU lacks, whatever the variable says.

The decision is taken once per process: every kernel module reads the variable now, so setting
it after `import fastnn` changes nothing (start a new process, as tests/test_isa.py does).
"""
import os

from . import _activation, _conv, _dense, _pool, _runtime_c

LEVELS = ("baseline", "avx2", "avx512")  # lowest first


def check(environ=os.environ):
    """Raise ValueError when FASTNN_ISA is set (not empty) to a build this CPU cannot run."""
    value = environ.get("FASTNN_ISA", "")
    if value == "":
        return
    best = _runtime_c.isa_best()
    runnable = LEVELS[:LEVELS.index(best) + 1]
    if value not in LEVELS:
        raise ValueError(f"FASTNN_ISA must be one of {', '.join(map(repr, runnable))} on this CPU "
                         f"(or unset for the best), got {value!r}")
    if value not in runnable:
        raise ValueError(f"FASTNN_ISA={value!r} asks for kernels this CPU cannot run; it runs "
                         f"{', '.join(map(repr, runnable))} (best {best!r})")


def settle():
    """Check FASTNN_ISA, then have every kernel module take its decision now."""
    check()
    levels = {module.__name__: module.isa() for module in (_activation, _conv, _dense, _pool)}
    chosen = _runtime_c.isa()
    if set(levels.values()) != {chosen}:  # the same rule read the same variable: cannot differ
        raise RuntimeError(f"fastnn kernel modules disagree on the ISA: {levels}, runtime {chosen!r}")


def report():
    """info()'s ISA entries."""
    return {"isa": _runtime_c.isa(), "isa_best": _runtime_c.isa_best(),
            "isa_source": "FASTNN_ISA" if _runtime_c.isa_forced() else "cpu"}
