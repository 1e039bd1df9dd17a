# Build and OpenMP facts for fastnn.info(); no kernels here.
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
