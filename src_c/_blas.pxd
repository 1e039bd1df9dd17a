# The one BLAS wrapper: row-major GEMM over fused float types.
# C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C, all row-major.
# OpenBLAS runs single-threaded (fastnn._runtime sets it); kernels parallelise GEMMs with
# gemm_parallel(), so OpenMP is the only thread pool and threads never multiply.
from cython cimport floating
from cython.parallel cimport prange
from _parallel cimport GEMM_PARALLEL_MIN_WORK, GEMM_PARALLEL_MIN_WEIGHT_BYTES, GEMM_SPLIT_MIN_COLUMNS

cdef extern from "fastnn_blas.h" nogil:
    ctypedef void (*fastnn_sgemm_t)(int, int, int, int, int, int, float, const float*, int,
                                    const float*, int, float, float*, int)
    ctypedef void (*fastnn_dgemm_t)(int, int, int, int, int, int, double, const double*, int,
                                    const double*, int, double, double*, int)
    ctypedef int (*fastnn_blas_threads_t)()
    fastnn_sgemm_t fastnn_sgemm_ptr
    fastnn_dgemm_t fastnn_dgemm_ptr
    fastnn_blas_threads_t fastnn_blas_threads_ptr
    int FASTNN_ROW_MAJOR, FASTNN_NO_TRANS, FASTNN_TRANS
    void fastnn_bind_gemm(size_t sgemm_address, size_t dgemm_address, size_t threads_address)

cdef extern from "fastnn_small_gemm.h" nogil:
    void fastnn_small_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
                            const float* a, int lda, const float* b, int ldb, float beta,
                            float* c, int ldc)
    int fastnn_small_gemm_isa(int dot)

cdef enum Transpose:
    # op(A) in gemm(): A as stored or its transpose (fastnn_small_sgemm's 0/1 flag values)
    NO_TRANS = 0
    TRANS = 1

cdef enum GemmImpl:
    GEMM_BLAS = 0   # the plain path: OpenBLAS, every shape and both dtypes
    GEMM_SMALL = 1  # fastnn_small_gemm.h: float32, no (TRANS, TRANS) form


cdef inline GemmImpl sgemm_impl(Transpose trans_a, Transpose trans_b, int m, int n, int k) noexcept nogil:
    # The one place a float32 GEMM picks its implementation. GEMM_SMALL where it beat OpenBLAS
    # in bench/bench_dense.py (group "gemm-small"): the dense forward x @ w.T at batch <= 32
    # with long rows (Nielsen's 10x784x30: 2-2.6x; batch-1 inference 2.5-6x), and dW = dy^T @ x
    # at batch <= 32 with wide inputs (1.05-1.35x). Tiny and tall products stay with OpenBLAS,
    # whose fixed cost is lower there. tests/test_dense.py holds the two equal within rounding.
    if trans_a == NO_TRANS and trans_b == TRANS and m <= 32 and k >= 64:
        return GEMM_SMALL
    if trans_a == TRANS and trans_b == NO_TRANS and k <= 32 and n >= 256:
        return GEMM_SMALL
    return GEMM_BLAS


cdef inline void sgemm_by(GemmImpl impl, Transpose trans_a, Transpose trans_b, int m, int n, int k,
                          float alpha, const float* a, int lda, const float* b, int ldb,
                          float beta, float* c, int ldc) noexcept nogil:
    # The float32 GEMM by the given implementation: the small kernel beside the plain OpenBLAS call.
    if impl == GEMM_SMALL:
        fastnn_small_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    else:
        fastnn_sgemm_ptr(FASTNN_ROW_MAJOR, FASTNN_TRANS if trans_a == TRANS else FASTNN_NO_TRANS,
                         FASTNN_TRANS if trans_b == TRANS else FASTNN_NO_TRANS,
                         m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


cdef inline void gemm(Transpose trans_a, Transpose trans_b, int m, int n, int k,
                      floating alpha, const floating* a, int lda,
                      const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    if floating is float:
        sgemm_by(sgemm_impl(trans_a, trans_b, m, n, k), trans_a, trans_b, m, n, k,
                 alpha, a, lda, b, ldb, beta, c, ldc)
    else:
        fastnn_dgemm_ptr(FASTNN_ROW_MAJOR, FASTNN_TRANS if trans_a == TRANS else FASTNN_NO_TRANS,
                         FASTNN_TRANS if trans_b == TRANS else FASTNN_NO_TRANS,
                         m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


cdef enum:
    # Column blocks are multiples of this, so every thread's block stays SIMD-aligned.
    GEMM_BLOCK_ALIGN = 16


cdef inline bint _streams_weights(Transpose trans_a, Transpose trans_b, int m, int n, int k,
                                  size_t itemsize, int parts) noexcept nogil:
    # A dense forward at a small batch whose weights (n x k) outgrow a core's L2: the product
    # is bound by reading them, and each thread reads only its share (LeNet's fc1 at batch 1,
    # 1.6 MB of weights). Only the small kernel's dot shape, float32 (itemsize 4), and only
    # with blocks of over 64 columns: each output is then the same dot product, in the same
    # order, at any thread count (fastnn_small_gemm_lanes.h's k-split depends on m + n > 64).
    return (itemsize == 4 and trans_a == NO_TRANS and trans_b == TRANS
            and sgemm_impl(trans_a, trans_b, m, n, k) == GEMM_SMALL
            and n >= GEMM_SPLIT_MIN_COLUMNS * parts
            and <double>n * k * itemsize >= GEMM_PARALLEL_MIN_WEIGHT_BYTES)


cdef inline void gemm_parallel(Transpose trans_a, Transpose trans_b, int m, int n, int k,
                               floating alpha, const floating* a, int lda,
                               const floating* b, int ldb,
                               floating beta, floating* c, int ldc, int num_threads) noexcept nogil:
    """gemm() split over OpenMP threads, each calling the single-threaded OpenBLAS on a block of
    C's columns (or rows, when C is narrow). fastnn keeps OpenBLAS at one thread, so OpenMP's
    pool is the only one: two pools spinning on two cores starve each other (measured 4x slower
    LeNet steps)."""
    cdef int parts = num_threads, p, lo, hi, step
    # If someone gave OpenBLAS more threads (threadpoolctl.threadpool_limits does, for every
    # BLAS in the process), let it thread this GEMM alone: splitting would nest two pools.
    if parts < 2 or fastnn_blas_threads_ptr() != 1 or not (
            <double>m * n * k >= GEMM_PARALLEL_MIN_WORK
            or _streams_weights(trans_a, trans_b, m, n, k, sizeof(floating), parts)):
        gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    if n >= m:  # split C's columns: op(B)'s columns
        step = ((n + parts - 1) // parts + GEMM_BLOCK_ALIGN - 1) // GEMM_BLOCK_ALIGN * GEMM_BLOCK_ALIGN
        for p in prange(parts, schedule='static', num_threads=parts):
            lo = p * step
            hi = min(n, lo + step)
            if lo < hi:
                gemm(trans_a, trans_b, m, hi - lo, k, alpha, a, lda,
                     b + (lo * ldb if trans_b == TRANS else lo), ldb, beta, c + lo, ldc)
    else:  # split C's rows: op(A)'s rows
        step = (m + parts - 1) // parts
        for p in prange(parts, schedule='static', num_threads=parts):
            lo = p * step
            hi = min(m, lo + step)
            if lo < hi:
                gemm(trans_a, trans_b, hi - lo, n, k, alpha, a + (lo if trans_a == TRANS else lo * lda), lda,
                     b, ldb, beta, c + lo * ldc, ldc)
