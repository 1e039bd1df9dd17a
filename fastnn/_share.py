"""How much of the machine other processes are using: the input of fastnn's automatic thread
count (fastnn._runtime.adapt_threads).

Why: OpenMP threads that wait for each other at every parallel region need a core each. Beside
another busy process (a second training run, two MPI ranks, a compile) a 2-thread run keeps
waiting for a thread the scheduler has parked: two LeNet runs started together on a 2-core
machine took 5.65x as long as one alone (bench/concurrent_runs.py), and sleeping instead of
spinning costs every lone run a wake-up per region. So the thread count follows the machine:
all usable cores while others leave them free, fewer while others keep them busy. Results do
not depend on it (every kernel is bit-identical at any thread count).
"""
import os
import time

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_seconds():
    """CPU seconds all processes spent busy since boot (Linux /proc/stat); None elsewhere."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()[1:9]  # user nice system idle iowait irq softirq steal
    except OSError:
        return None
    ticks = [int(v) for v in fields]
    return (sum(ticks) - ticks[3] - ticks[4]) / _CLOCK_TICKS


class OthersCpu:
    """Cores other processes kept busy between two looks (`look()`): the machine's busy time
    minus this process's own CPU time, per second of wall time."""

    def __init__(self):
        self._last = self._now()

    @staticmethod
    def _now():
        t = os.times()
        return _busy_seconds(), t.user + t.system, time.monotonic()

    def look(self):
        """Cores used by others since the previous look (0.0 where the machine does not say)."""
        busy, own, now = self._now()
        busy0, own0, now0 = self._last
        self._last = busy, own, now
        if busy is None or busy0 is None or now <= now0:
            return 0.0
        return max(0.0, (busy - busy0) - (own - own0)) / (now - now0)
