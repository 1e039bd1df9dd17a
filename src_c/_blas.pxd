# The one BLAS wrapper: row-major GEMM over fused float types.
# C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C, all row-major.
# Kernels call gemm() only outside prange regions, so OpenBLAS threads never
# multiply with OpenMP threads (fastnn._runtime gives both the same count).
from cython cimport floating

cdef extern from "fastnn_blas.h" nogil:
    ctypedef void (*fastnn_sgemm_t)(int, int, int, int, int, int, float, const float*, int,
                                    const float*, int, float, float*, int)
    ctypedef void (*fastnn_dgemm_t)(int, int, int, int, int, int, double, const double*, int,
                                    const double*, int, double, double*, int)
    fastnn_sgemm_t fastnn_sgemm_ptr
    fastnn_dgemm_t fastnn_dgemm_ptr
    int FASTNN_ROW_MAJOR, FASTNN_NO_TRANS, FASTNN_TRANS
    void fastnn_bind_gemm(size_t sgemm_address, size_t dgemm_address)
    int fastnn_gemm_bound()


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating* a, int lda,
                      const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    cdef int ta = FASTNN_TRANS if trans_a else FASTNN_NO_TRANS
    cdef int tb = FASTNN_TRANS if trans_b else FASTNN_NO_TRANS
    if floating is float:
        fastnn_sgemm_ptr(FASTNN_ROW_MAJOR, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    else:
        fastnn_dgemm_ptr(FASTNN_ROW_MAJOR, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
