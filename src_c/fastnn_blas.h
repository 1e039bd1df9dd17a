/* CBLAS gemm through function pointers bound at import time.
 *
 * Why pointers and not a link: the OpenBLAS we use ships in the scipy-openblas32 wheel,
 * whose path is only known at run time (pip builds us in an isolated env). fastnn._runtime
 * finds the library with ctypes and hands each module the addresses; nothing else links.
 * Each extension module that includes this header owns its own copy of the pointers.
 */
#ifndef FASTNN_BLAS_H
#define FASTNN_BLAS_H
#include <stddef.h>

enum { FASTNN_ROW_MAJOR = 101, FASTNN_NO_TRANS = 111, FASTNN_TRANS = 112 };

typedef void (*fastnn_sgemm_t)(int order, int trans_a, int trans_b, int m, int n, int k,
                               float alpha, const float *a, int lda, const float *b, int ldb,
                               float beta, float *c, int ldc);
typedef void (*fastnn_dgemm_t)(int order, int trans_a, int trans_b, int m, int n, int k,
                               double alpha, const double *a, int lda, const double *b, int ldb,
                               double beta, double *c, int ldc);

typedef int (*fastnn_blas_threads_t)(void);

static fastnn_sgemm_t fastnn_sgemm_ptr = NULL;
static fastnn_dgemm_t fastnn_dgemm_ptr = NULL;
static fastnn_blas_threads_t fastnn_blas_threads_ptr = NULL;

static void fastnn_bind_gemm(size_t sgemm_address, size_t dgemm_address, size_t threads_address) {
    fastnn_sgemm_ptr = (fastnn_sgemm_t)sgemm_address;
    fastnn_dgemm_ptr = (fastnn_dgemm_t)dgemm_address;
    fastnn_blas_threads_ptr = (fastnn_blas_threads_t)threads_address;
}

#ifdef _OPENMP
#include <omp.h>
static int fastnn_openmp_enabled(void) { return 1; }
static int fastnn_openmp_max_threads(void) { return omp_get_max_threads(); }
#else
static int fastnn_openmp_enabled(void) { return 0; }
static int fastnn_openmp_max_threads(void) { return 1; }
#endif

#ifndef FASTNN_BUILD_FLAGS
#define FASTNN_BUILD_FLAGS "unknown"
#endif
static const char *fastnn_build_flags(void) { return FASTNN_BUILD_FLAGS; }

#endif
