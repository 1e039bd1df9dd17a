"""OpenMP's wait policy, chosen before libgomp starts: it reads the environment once, when the
first fastnn kernel module loads it, so fastnn/__init__.py calls this before anything else.

Why: by default an idle libgomp thread spins about 3 ms (GOMP_SPINCOUNT 300000) waiting for the
next parallel region. Beside another busy process on the same cores, that spinning takes the
CPU from the very thread it waits for: two `fastnn train --model mlp --epochs 1` at once on a
2-core machine took 15.1 s each instead of 0.22 s (issue 16). Waiting passively (sleep at once,
a futex wake-up per region) removes the cliff. Before sleeping, GOMP_SPINCOUNT=100 spins about
1 us (libgomp's own estimate: 100000 spins per ms), enough to catch a region that follows at
once, as they do inside one training step. 10 us of spin was already too much: with
GOMP_SPINCOUNT=1000, `fastnn train --model mlp --epochs 1` beside busy processes on the 2-core
dev VM took 0.65-0.80 s against 0.22-0.40 s passive (indicative; bench/concurrent_runs.py
compares policies).

Nothing is changed when the user set any of these variables: their choice wins. The values
stay in os.environ, so child processes inherit them. Imported first by fastnn/__init__.py.
"""
import os

WAIT_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "100"}
USER_KNOBS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")  # KMP_: LLVM's libomp


def set_wait_policy_defaults(environ):
    """Put WAIT_DEFAULTS into `environ` unless it already chooses a wait policy (any of
    USER_KNOBS); returns what was set ({} when the user's settings were kept)."""
    if any(name in environ for name in USER_KNOBS):
        return {}
    environ.update(WAIT_DEFAULTS)
    return dict(WAIT_DEFAULTS)


APPLIED = set_wait_policy_defaults(os.environ)  # what fastnn set, for fastnn.info()
