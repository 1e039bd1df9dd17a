# Build, OpenMP and CPU facts for fastnn.info(); no kernels here.
from _cpu cimport fastnn_cpu_isa_best, fastnn_isa, fastnn_isa_forced, fastnn_isa_name
cdef extern from "fastnn_blas.h":
    int fastnn_openmp_enabled()
    int fastnn_openmp_max_threads()
    const char* fastnn_build_flags()


def openmp_enabled():
    return bool(fastnn_openmp_enabled())


def openmp_max_threads():
    return fastnn_openmp_max_threads()


def build_flags():
    return fastnn_build_flags().decode()


def isa_best():
    """The best kernel level this CPU runs: 'avx512', 'avx2' or 'baseline' (fastnn_cpu.h)."""
    return fastnn_isa_name(fastnn_cpu_isa_best()).decode()


def isa():
    """The level the kernels run: isa_best(), or $FASTNN_ISA where that is one the CPU runs."""
    return fastnn_isa_name(fastnn_isa()).decode()


def isa_forced():
    """Whether $FASTNN_ISA chose isa() (then every kernel runs that level's clone)."""
    return bool(fastnn_isa_forced())

