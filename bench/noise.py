"""How much of the machine other processes took while a measurement ran (a shared 2-core VM):
the flag bench/compare.py and bench/fma_peak.py print beside each number."""
import os
import time


def cpu_seconds(pid):
    """User + system CPU seconds of a live process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class OthersCpu:
    """CPU share other processes took while the block ran: machine busy time from /proc/stat
    minus ours (this process, its waited-for children, and the live processes `pids`, such as
    peer workers), over elapsed * cores. `share` is set when the block ends."""

    def __init__(self, pids=()):
        self.pids = list(pids)

    def _ours(self):
        t = os.times()
        return (t.user + t.system + t.children_user + t.children_system
                + sum(cpu_seconds(pid) for pid in self.pids))

    @staticmethod
    def _busy_seconds():
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
        return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait

    def __enter__(self):
        self.start = (time.perf_counter(), self._busy_seconds(), self._ours())
        return self

    def __exit__(self, *exc):
        wall, busy, ours = (b - a for a, b in zip(self.start, (time.perf_counter(), self._busy_seconds(),
                                                             self._ours())))
        self.share = max(0.0, busy - ours) / (wall * os.cpu_count())
