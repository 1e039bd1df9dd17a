"""Process-wide runtime: binds OpenBLAS into the kernel modules and owns the thread count.

Why scipy-openblas32 loaded by ctypes (measured on the 2-core dev machine, RSS after import):
`import numpy` 25 MB; + this OpenBLAS 30.6 MB (+5.5 MB); `scipy.linalg.cython_blas` instead
costs 56 MB (+31 MB), half the 64 MB budget of a whole streaming training run.

Threads: fastnn's OpenBLAS always runs on one thread; kernels split their GEMMs over OpenMP
threads (gemm_parallel in src_c/_blas.pxd). One pool, so threads never multiply, and no second
pool spins on the cores OpenMP needs (measured on LeNet: OpenBLAS threads + OpenMP threads made
a 2-thread step 4x slower than a 1-thread one). numpy's own BLAS is left alone.

Default thread count: $FASTNN_NUM_THREADS, else $OMP_NUM_THREADS (both fix it), else automatic:
the usable cores shared by the MPI ranks on this host (MPICH's MPI_LOCALNRANKS, Open MPI's
OMPI_COMM_WORLD_LOCAL_SIZE), lowered while other processes keep cores busy (adapt_threads,
fastnn/_share.py) and raised again when they stop. set_num_threads(n) fixes it too.
"""
import ctypes
import os
import time

import scipy_openblas32

from . import _activation, _conv, _dense, _isa, _openmp_env, _runtime_c
from ._share import OthersCpu

_BLAS_USERS = (_dense, _conv)


def _load_openblas():
    path = os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(fullname=True))
    lib = ctypes.CDLL(path)
    return path, lib


_blas_path, _blas = _load_openblas()
_sgemm = ctypes.cast(_blas.scipy_cblas_sgemm, ctypes.c_void_p).value
_dgemm = ctypes.cast(_blas.scipy_cblas_dgemm, ctypes.c_void_p).value
_blas_threads = ctypes.cast(_blas.scipy_openblas_get_num_threads, ctypes.c_void_p).value
for _module in _BLAS_USERS:
    _module._bind_blas(_sgemm, _dgemm, _blas_threads)
_blas.scipy_openblas_get_config.restype = ctypes.c_char_p
_blas.scipy_openblas_set_num_threads.argtypes = [ctypes.c_int]

_blas.scipy_openblas_set_num_threads(1)
_num_threads = 1
_isa.settle()  # FASTNN_ISA: checked, and every kernel module's build chosen, here


_LOCAL_RANKS = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")  # MPICH, Open MPI


def _default_threads(environ=os.environ):
    env = environ.get("FASTNN_NUM_THREADS")
    if env is not None:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(f"FASTNN_NUM_THREADS must be a positive integer, got {env!r}") from None
        if value < 1:
            raise ValueError(f"FASTNN_NUM_THREADS must be a positive integer, got {env!r}")
        return value
    omp = _positive_int(environ.get("OMP_NUM_THREADS", "").split(",")[0])  # "4,2": nested levels
    if omp:
        return omp
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    ranks = next((n for n in map(_positive_int, map(environ.get, _LOCAL_RANKS)) if n), 1)
    return max(1, cores // ranks)


def _positive_int(text):
    """int(text) when it is a positive integer, else None (other programs' variables: a bad
    value is theirs to report, not a reason for `import fastnn` to fail)."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def _explicit_threads(environ=os.environ):
    """Whether the environment fixes the thread count (then it never adapts)."""
    return "FASTNN_NUM_THREADS" in environ or _positive_int(environ.get("OMP_NUM_THREADS", "").split(",")[0]) is not None


def set_num_threads(n):
    """Threads for fastnn's kernels (OpenMP; GEMMs are split into single-threaded BLAS blocks).
    Fixes the count: it no longer follows the machine's load (see adapt_threads)."""
    global _num_threads, _auto
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    _num_threads, _auto = n, None


# Automatic thread count: at most _auto.most threads, fewer while others use the cores.
ADAPT_SECONDS = 0.25  # how often the load is looked at (a /proc/stat read: ~20 us)
OTHERS_SLACK = 0.5    # cores of others' use tolerated before giving a core up


class _Auto:
    def __init__(self, most):
        self.most, self.others, self.next_look = most, OthersCpu(), 0.0


_auto = None


def adapt_threads():
    """Follow the machine: called by fit between steps and by predict/evaluate; a no-op unless
    the thread count is automatic, and at most every ADAPT_SECONDS."""
    global _num_threads
    auto = _auto
    if auto is None:
        return
    now = time.monotonic()
    if now < auto.next_look:
        return
    auto.next_look = now + ADAPT_SECONDS
    free = auto.most - auto.others.look() + OTHERS_SLACK
    _num_threads = max(1, min(auto.most, int(free)))


def automatic_threads():
    """Whether the thread count follows the machine's load (no set_num_threads, no
    FASTNN_NUM_THREADS or OMP_NUM_THREADS)."""
    return _auto is not None


def get_num_threads():
    """Threads fastnn's kernels use (set_num_threads; by default FASTNN_NUM_THREADS or the CPUs
    this process may run on)."""
    return _num_threads


def info():
    """Build flags, OpenMP, BLAS and thread settings, as a dict."""
    return {
        "version": _version(),
        "build_flags": _runtime_c.build_flags(),
        "openmp": _runtime_c.openmp_enabled(),
        "openmp_max_threads": _runtime_c.openmp_max_threads(),
        "blas": _blas.scipy_openblas_get_config().decode(),
        "blas_library": _blas_path,
        "blas_threads": _blas.scipy_openblas_get_num_threads(),
        "small_gemm_simd": _dense.small_gemm_simd(),  # fastnn_small_gemm.h's build picked here
        "direct_conv_simd": _conv.direct_simd(),  # fastnn_direct_conv.h's
        "activation_simd": _activation.simd(),  # fastnn_elementwise.h's (float32 activations)
        **_isa.report(),  # the kernels' build level (avx512, avx2, baseline) and why (fastnn/_isa.py)
        "num_threads": _num_threads,
        "num_threads_automatic": _auto is not None,
        # The wait policy libgomp started with, and whether fastnn chose it (_openmp_env).
        "openmp_wait_policy": {name: os.environ.get(name) for name in _openmp_env.USER_KNOBS},
        "openmp_wait_policy_source": "fastnn default" if _openmp_env.APPLIED else "user",
    }


def _version():
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("fastnn")
    except PackageNotFoundError:
        return "unknown"


set_num_threads(_default_threads())
if not _explicit_threads():
    _auto = _Auto(_num_threads)
