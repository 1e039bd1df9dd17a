/* Single-precision GEMM for small row counts (a dense layer at batch 1-32), row-major.
 *
 * Why not OpenBLAS here: at M = 10 (Nielsen's batch) OpenBLAS spends more time packing and
 * dispatching than multiplying: x (10, 784) @ w.T (784, 30) took 21 us (22 GFLOP/s) where this
 * register-blocked loop takes ~5 us (bench/bench_dense.py, group "gemm-small"). Large GEMMs
 * still go to OpenBLAS (fastnn_small_gemm_ok() decides, from that benchmark).
 *
 * Two loop shapes cover the three orientations fastnn uses:
 *   dot   C = alpha * A @ B^T + beta * C   (A (m, k), B (n, k): k contiguous in both)
 *         a 2 x 4 block of C is 8 running dot products of L lanes each.
 *   axpy  C = alpha * op(A) @ B + beta * C (B (k, n) rows contiguous; op(A) read by strides)
 *         a 4 x 2L block of C: each k broadcasts 4 A values against one 2L-wide row of B.
 * Written with GCC vector extensions (fastnn_small_gemm_lanes.h), compiled three times (the
 * build's baseline and AVX2+FMA with L = 8 lanes, AVX-512 with L = 16) and picked once at run
 * time (fastnn_cpu.h), so a portable build still runs wide FMAs where the CPU has them.
 * beta == 0 never reads C (it may hold NaN garbage), as BLAS promises.
 */
#ifndef FASTNN_SMALL_GEMM_H
#define FASTNN_SMALL_GEMM_H
#include <string.h>
#include "fastnn_cpu.h"

static inline __attribute__((always_inline)) float fastnn_scale(float acc, float alpha, float beta,
                                                                 const float *c) {
    return beta == 0.0f ? alpha * acc : alpha * acc + beta * *c;
}

/* k per pass of the dot shape, for long inner dimensions only (LeNet conv1's dW: k = 36,864):
 * a pass's slices of up to 64 rows of A and B (128 KB) stay in L2, instead of every 4-row panel
 * of B being streamed from L3 again for each 2 rows of A. */
enum { FASTNN_DOT_KC = 512 };

/* Whether each shape runs its AVX-512 clone when FASTNN_ISA is unset (fastnn_cpu.h): only
 * where it measured at least as fast as the AVX2 clone (docs/kernels.md, AMD EPYC whose 512-bit
 * FMAs give the same 114 GFLOP/s as 256-bit ones). The axpy shape: 1.1-1.5x (its 4 x 32 block
 * spreads each broadcast of A over twice the columns); the dot shape: 0.94-1.04x on the
 * shapes fastnn gives it, so it keeps the AVX2 clone. */
#define FASTNN_GEMM_DOT_AVX512_BY_DEFAULT 0
#define FASTNN_GEMM_AXPY_AVX512_BY_DEFAULT 1

#define FASTNN_GL_CAT_(a, b) a##b
#define FASTNN_GL_CAT(a, b) FASTNN_GL_CAT_(a, b)

/* The bodies, once per width: _8 for the baseline and AVX2 clones, _16 (compiled for AVX-512
 * only) for the AVX-512 clone. */
#define FASTNN_GL_L 8
#include "fastnn_small_gemm_lanes.h"
#undef FASTNN_GL_L
#ifdef FASTNN_HAVE_X86_CLONES
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx2,fma")
#define FASTNN_GL_L 16
#include "fastnn_small_gemm_lanes.h"
#undef FASTNN_GL_L
#pragma GCC pop_options
#endif

/* The builds of each body: AVX-512 (16 lanes), AVX2+FMA (8), and whatever the compiler flags give. */
#ifdef FASTNN_HAVE_X86_CLONES
FASTNN_TARGET_AVX512 static void fastnn_gemm_dot_avx512(
        int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
        float beta, float *c, int ldc) {
    fastnn_gemm_dot_body_16(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
FASTNN_TARGET_AVX512 static void fastnn_gemm_axpy_avx512(
        int m, int n, int k, float alpha, const float *a, int sam, int sak, const float *b,
        int ldb, float beta, float *c, int ldc) {
    fastnn_gemm_axpy_body_16(m, n, k, alpha, a, sam, sak, b, ldb, beta, c, ldc);
}
FASTNN_TARGET_AVX2 static void fastnn_gemm_dot_avx2(
        int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
        float beta, float *c, int ldc) {
    fastnn_gemm_dot_body_8(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
FASTNN_TARGET_AVX2 static void fastnn_gemm_axpy_avx2(
        int m, int n, int k, float alpha, const float *a, int sam, int sak, const float *b,
        int ldb, float beta, float *c, int ldc) {
    fastnn_gemm_axpy_body_8(m, n, k, alpha, a, sam, sak, b, ldb, beta, c, ldc);
}
#endif

static void fastnn_gemm_dot_base(int m, int n, int k, float alpha, const float *a, int lda,
                                 const float *b, int ldb, float beta, float *c, int ldc) {
    fastnn_gemm_dot_body_8(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static void fastnn_gemm_axpy_base(int m, int n, int k, float alpha, const float *a, int sam,
                                  int sak, const float *b, int ldb, float beta, float *c, int ldc) {
    fastnn_gemm_axpy_body_8(m, n, k, alpha, a, sam, sak, b, ldb, beta, c, ldc);
}

/* The level (FASTNN_ISA_*) each shape runs: dot = 1 for C = A @ B^T, else the axpy shape. */
static int fastnn_small_gemm_isa(int dot) {
    int isa = fastnn_isa();
    if (isa == FASTNN_ISA_AVX512 && !fastnn_isa_use_avx512(dot ? FASTNN_GEMM_DOT_AVX512_BY_DEFAULT
                                                               : FASTNN_GEMM_AXPY_AVX512_BY_DEFAULT))
        return FASTNN_ISA_AVX2;
    return isa;
}

/* C (m, n) = alpha * op(A) @ op(B) + beta * C, the same contract as cblas_sgemm (row-major). */
static void fastnn_small_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
                               const float *a, int lda, const float *b, int ldb, float beta,
                               float *c, int ldc) {
    if (!trans_a && trans_b) {
#ifdef FASTNN_HAVE_X86_CLONES
        switch (fastnn_small_gemm_isa(1)) {
        case FASTNN_ISA_AVX512: fastnn_gemm_dot_avx512(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); return;
        case FASTNN_ISA_AVX2: fastnn_gemm_dot_avx2(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); return;
        }
#endif
        fastnn_gemm_dot_base(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    /* op(B) = B (k, n): the axpy shape; op(A)(i, p) = a[i * sam + p * sak]. */
    int sam = trans_a ? 1 : lda, sak = trans_a ? lda : 1;
#ifdef FASTNN_HAVE_X86_CLONES
    switch (fastnn_small_gemm_isa(0)) {
    case FASTNN_ISA_AVX512: fastnn_gemm_axpy_avx512(m, n, k, alpha, a, sam, sak, b, ldb, beta, c, ldc); return;
    case FASTNN_ISA_AVX2: fastnn_gemm_axpy_avx2(m, n, k, alpha, a, sam, sak, b, ldb, beta, c, ldc); return;
    }
#endif
    fastnn_gemm_axpy_base(m, n, k, alpha, a, sam, sak, b, ldb, beta, c, ldc);
}

#endif
