"""Issue 16, item 3 (not timing): fastnn's OpenMP wait policy is in the environment before any
kernel module loads libgomp, only when the user chose none; thread defaults share the host."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from fastnn import _openmp_env, _runtime

KNOBS = _openmp_env.USER_KNOBS


def _child_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in KNOBS + ("FASTNN_NUM_THREADS", "OMP_NUM_THREADS")}
    env.update(extra)
    return env


def test_defaults_are_set_only_when_no_policy_was_chosen():
    environ = {"PATH": "/bin"}
    assert _openmp_env.set_wait_policy_defaults(environ) == _openmp_env.WAIT_DEFAULTS
    assert environ == {"PATH": "/bin", **_openmp_env.WAIT_DEFAULTS}
    for knob, value in (("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "infinity"), ("KMP_BLOCKTIME", "200")):
        environ = {knob: value}
        assert _openmp_env.set_wait_policy_defaults(environ) == {}
        assert environ == {knob: value}  # the user's one setting, nothing added beside it


# Records the wait policy in the environment when the first fastnn submodule other than
# _openmp_env is looked up (any later one may load a kernel module, hence libgomp).
WATCH = textwrap.dedent("""
    import json, os, sys
    seen = {}
    class Watch:
        def find_spec(self, name, path=None, target=None):
            if name.startswith("fastnn.") and name != "fastnn._openmp_env" and not seen:
                seen.update({k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}, first=name)
            return None
    sys.meta_path.insert(0, Watch())
    import fastnn
    print(json.dumps({"at_first_kernel": seen, "info": fastnn.info()["openmp_wait_policy_source"]}))
""")


def test_the_policy_is_in_the_environment_before_the_first_kernel_loads():
    out = subprocess.run([sys.executable, "-c", WATCH], env=_child_env(), capture_output=True,
                         text=True, check=True).stdout
    result = json.loads(out)
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        assert result["at_first_kernel"][name] == _openmp_env.WAIT_DEFAULTS.get(name)
    assert result["info"] == "fastnn default"


def test_a_users_policy_reaches_libgomp_unchanged():
    out = subprocess.run([sys.executable, "-c", WATCH], env=_child_env(OMP_WAIT_POLICY="ACTIVE"),
                         capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    assert result["at_first_kernel"]["OMP_WAIT_POLICY"] == "ACTIVE"
    assert result["at_first_kernel"]["GOMP_SPINCOUNT"] is None
    assert result["info"] == "user"


def _cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


@pytest.mark.parametrize("environ,expected", [
    ({}, lambda c: c),
    ({"MPI_LOCALNRANKS": "2"}, lambda c: max(1, c // 2)),
    ({"OMPI_COMM_WORLD_LOCAL_SIZE": "64"}, lambda c: max(1, c // 64)),
    ({"OMPI_COMM_WORLD_LOCAL_SIZE": "banana"}, lambda c: c),  # not ours to refuse
    ({"OMP_NUM_THREADS": "3,1"}, lambda c: 3),
    ({"FASTNN_NUM_THREADS": "5", "OMP_NUM_THREADS": "3", "MPI_LOCALNRANKS": "2"}, lambda c: 5),
])
def test_default_threads_share_the_host_between_mpi_ranks(environ, expected):
    assert _runtime._default_threads(environ) == expected(_cores())


def test_a_bad_fastnn_num_threads_is_an_error():
    with pytest.raises(ValueError, match="FASTNN_NUM_THREADS"):
        _runtime._default_threads({"FASTNN_NUM_THREADS": "0"})


# -- the automatic thread count -----------------------------------------------------------------
class FakeOthers:
    def __init__(self, cores):
        self.cores = cores

    def look(self):
        return self.cores


@pytest.mark.parametrize("others,expected", [(0.0, 2), (0.4, 2), (0.6, 1), (1.0, 1), (3.0, 1)])
def test_the_automatic_thread_count_gives_up_cores_others_keep_busy(monkeypatch, others, expected):
    auto = _runtime._Auto(2)
    auto.others = FakeOthers(others)
    monkeypatch.setattr(_runtime, "_auto", auto)
    monkeypatch.setattr(_runtime, "_num_threads", 2)
    _runtime.adapt_threads()
    assert _runtime.get_num_threads() == expected
    auto.others, auto.next_look = FakeOthers(0.0), 0.0  # the others stopped: all cores again
    _runtime.adapt_threads()
    assert _runtime.get_num_threads() == 2


def test_an_explicit_thread_count_never_adapts(monkeypatch):
    monkeypatch.setattr(_runtime, "_auto", _runtime._Auto(2))
    monkeypatch.setattr(_runtime, "_num_threads", 2)
    import fastnn
    previous = fastnn.get_num_threads()
    fastnn.set_num_threads(2)
    assert not _runtime.automatic_threads()
    _runtime.adapt_threads()
    assert fastnn.get_num_threads() == 2
    fastnn.set_num_threads(previous)
    assert _runtime._explicit_threads({"FASTNN_NUM_THREADS": "2"})
    assert _runtime._explicit_threads({"OMP_NUM_THREADS": "1"}) and not _runtime._explicit_threads({})


def test_others_cpu_sees_a_busy_child_process():
    from fastnn._share import OthersCpu
    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat on this system")
    watch = OthersCpu()
    child = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<0.6: pass"])
    child.wait()
    assert watch.look() > 0.3  # the child spun for 0.6 s of the window
