# Included by every kernel module that calls gemm(): lets fastnn._runtime hand it the
# OpenBLAS addresses. Included rather than cimported because each module owns its pointers.
def _bind_blas(size_t sgemm_address, size_t dgemm_address, size_t threads_address):
    fastnn_bind_gemm(sgemm_address, dgemm_address, threads_address)
