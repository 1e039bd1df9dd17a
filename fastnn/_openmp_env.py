"""OpenMP's wait policy, chosen before libgomp starts: it reads the environment once, when the
first fastnn kernel module loads it, so fastnn/__init__.py calls this before anything else.

Why: by default an idle libgomp thread spins about 3 ms (GOMP_SPINCOUNT 300000) waiting for the
next parallel region; when the process stops using its threads (it went back to Python, or
lowered its thread count because another process is busy: fastnn._runtime.adapt_threads) that
spinning takes a core from others for no work. Sleeping at once (OMP_WAIT_POLICY=PASSIVE)
costs a futex wake-up per region instead: LeNet's 2-thread step took 9.4 ms against 6.9-7.2 ms,
and its batch-1 inference ran at 4,600 instead of 10,900 images/s (bench/compare.py). So threads
spin for about 0.1 ms (GOMP_SPINCOUNT=10000; libgomp counts about 100,000 spins per ms): long
enough for the regions of one step, which follow each other within microseconds, short enough
that an idle pool sleeps. Running beside other busy processes is handled by the thread count
(fastnn/_share.py), not by the wait policy.

Nothing is changed when the user set any of these variables: their choice wins. The values
stay in os.environ, so child processes inherit them. Imported first by fastnn/__init__.py.
"""
import os

WAIT_DEFAULTS = {"GOMP_SPINCOUNT": "10000"}
USER_KNOBS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")  # KMP_: LLVM's libomp


def set_wait_policy_defaults(environ):
    """Put WAIT_DEFAULTS into `environ` unless it already chooses a wait policy (any of
    USER_KNOBS); returns what was set ({} when the user's settings were kept)."""
    if any(name in environ for name in USER_KNOBS):
        return {}
    environ.update(WAIT_DEFAULTS)
    return dict(WAIT_DEFAULTS)


APPLIED = set_wait_policy_defaults(os.environ)  # what fastnn set, for fastnn.info()
