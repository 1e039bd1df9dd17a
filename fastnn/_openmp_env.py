"""OpenMP's wait policy, chosen before libgomp starts: it reads the environment once, when the
first fastnn kernel module loads it, so fastnn/__init__.py calls this before anything else.

The choice: idle threads spin GOMP_SPINCOUNT=300000 times (about 3 ms by libgomp's estimate of
100,000 spins per ms; libgomp's own default, made explicit so that `fastnn.info()` can say it).
A LeNet step waits on its threads a few dozen times, with Python between the regions: shorter
spins let the threads fall asleep there and pay a wake-up each time. LeNet's 2-thread step
(bench/compare.py's workload, best of 5x20 steps, alternating): 6.3-7.2 ms spinning 300000,
7.8-8.8 ms spinning 10000; OMP_WAIT_POLICY=PASSIVE: 9.4 ms, and LeNet's batch-1 inference fell
from 8,800 to 4,600 images/s (2 threads, bench/compare.py). Spinning hurts only beside other busy processes, where the
spinning threads take the cores the others need: fastnn then lowers its thread count
(fastnn/_share.py, fastnn._runtime.adapt_threads), so the wait policy does not have to.

Nothing is changed when the user set any of these variables: their choice wins. The values
stay in os.environ, so child processes inherit them. Imported first by fastnn/__init__.py.
"""
import os

WAIT_DEFAULTS = {"GOMP_SPINCOUNT": "300000"}
USER_KNOBS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")  # KMP_: LLVM's libomp


def set_wait_policy_defaults(environ):
    """Put WAIT_DEFAULTS into `environ` unless it already chooses a wait policy (any of
    USER_KNOBS); returns what was set ({} when the user's settings were kept)."""
    if any(name in environ for name in USER_KNOBS):
        return {}
    environ.update(WAIT_DEFAULTS)
    return dict(WAIT_DEFAULTS)


APPLIED = set_wait_policy_defaults(os.environ)  # what fastnn set, for fastnn.info()
