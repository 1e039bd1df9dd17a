/* Single-precision GEMM for small row counts (a dense layer at batch 1-32), row-major.
 *
 * Why not OpenBLAS here: at M = 10 (Nielsen's batch) OpenBLAS spends more time packing and
 * dispatching than multiplying: x (10, 784) @ w.T (784, 30) took 21 us (22 GFLOP/s) where this
 * register-blocked loop takes ~5 us (bench/bench_dense.py, group "gemm-small"). Large GEMMs
 * still go to OpenBLAS (fastnn_small_gemm_ok() decides, from that benchmark).
 *
 * Two loop shapes cover the three orientations fastnn uses:
 *   dot   C = alpha * A @ B^T + beta * C   (A (m, k), B (n, k): k contiguous in both)
 *         a 2 x 4 block of C is 8 running dot products of 8 lanes each.
 *   axpy  C = alpha * op(A) @ B + beta * C (B (k, n) rows contiguous; op(A) read by strides)
 *         a 4 x 16 block of C: each k broadcasts 4 A values against one 16-wide row of B.
 * Written with GCC vector extensions, compiled twice (AVX2+FMA and the build's baseline) and
 * picked once at run time, so a portable build still runs 8-wide FMAs where the CPU has them.
 * beta == 0 never reads C (it may hold NaN garbage), as BLAS promises.
 */
#ifndef FASTNN_SMALL_GEMM_H
#define FASTNN_SMALL_GEMM_H
#include <string.h>
#include "fastnn_cpu.h"

typedef float fastnn_f8 __attribute__((vector_size(32)));

static inline __attribute__((always_inline)) fastnn_f8 fastnn_load8(const float *p) {
    fastnn_f8 v;
    memcpy(&v, p, sizeof v);  /* unaligned load: compiles to one vmovups */
    return v;
}

static inline __attribute__((always_inline)) void fastnn_store8(float *p, fastnn_f8 v) {
    memcpy(p, &v, sizeof v);
}

static inline __attribute__((always_inline)) float fastnn_hsum8(fastnn_f8 v) {
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

static inline __attribute__((always_inline)) float fastnn_scale(float acc, float alpha, float beta,
                                                                 const float *c) {
    return beta == 0.0f ? alpha * acc : alpha * acc + beta * *c;
}

/* One (rows <= 2) x (cols <= 4) block of the dot shape. */
static inline __attribute__((always_inline)) void fastnn_dot_block(
        int rows, int cols, int k, float alpha, const float *a, int lda, const float *b, int ldb,
        float beta, float *c, int ldc) {
    fastnn_f8 acc[2][4] = {{{0}}};
    float tail[2][4] = {{0}};
    int k8 = k - k % 8, p, i, j;
    for (p = 0; p < k8; p += 8) {
        fastnn_f8 a0 = fastnn_load8(a + p), a1 = rows > 1 ? fastnn_load8(a + lda + p) : a0;
        for (j = 0; j < 4; j++) {
            if (j < cols) {
                fastnn_f8 bj = fastnn_load8(b + j * ldb + p);
                acc[0][j] += a0 * bj;
                acc[1][j] += a1 * bj;
            }
        }
    }
    for (p = k8; p < k; p++)
        for (i = 0; i < rows; i++)
            for (j = 0; j < cols; j++)
                tail[i][j] += a[i * lda + p] * b[j * ldb + p];
    for (i = 0; i < rows; i++)
        for (j = 0; j < cols; j++)
            c[i * ldc + j] = fastnn_scale(fastnn_hsum8(acc[i][j]) + tail[i][j], alpha, beta,
                                          c + i * ldc + j);
}

/* k per pass of the dot shape, for long inner dimensions only (LeNet conv1's dW: k = 36,864):
 * a pass's slices of up to 64 rows of A and B (128 KB) stay in L2, instead of every 4-row panel
 * of B being streamed from L3 again for each 2 rows of A. */
enum { FASTNN_DOT_KC = 512 };

static inline __attribute__((always_inline)) void fastnn_gemm_dot_pass(
        int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
        float beta, float *c, int ldc) {
    int i, j;
    /* B's 4-row panel stays in L1 while A's rows stream past it. */
    for (j = 0; j + 4 <= n; j += 4) {
        for (i = 0; i + 2 <= m; i += 2)
            fastnn_dot_block(2, 4, k, alpha, a + i * lda, lda, b + j * ldb, ldb, beta, c + i * ldc + j, ldc);
        if (i < m)
            fastnn_dot_block(1, 4, k, alpha, a + i * lda, lda, b + j * ldb, ldb, beta, c + i * ldc + j, ldc);
    }
    if (j < n) {
        for (i = 0; i + 2 <= m; i += 2)
            fastnn_dot_block(2, n - j, k, alpha, a + i * lda, lda, b + j * ldb, ldb, beta, c + i * ldc + j, ldc);
        if (i < m)
            fastnn_dot_block(1, n - j, k, alpha, a + i * lda, lda, b + j * ldb, ldb, beta, c + i * ldc + j, ldc);
    }
}

static inline __attribute__((always_inline)) void fastnn_gemm_dot_body(
        int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
        float beta, float *c, int ldc) {
    int p0;
    if (k <= 8 * FASTNN_DOT_KC || m + n > 64) {
        fastnn_gemm_dot_pass(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    for (p0 = 0; p0 < k; p0 += FASTNN_DOT_KC) {  /* later passes add to C (beta = 1) */
        int kc = k - p0 < FASTNN_DOT_KC ? k - p0 : FASTNN_DOT_KC;
        fastnn_gemm_dot_pass(m, n, kc, alpha, a + p0, lda, b + p0, ldb, p0 ? 1.0f : beta, c, ldc);
    }
}

/* One (rows <= 4) x 16 block of the axpy shape. */
static inline __attribute__((always_inline)) void fastnn_axpy_block16(
        int rows, int k, float alpha, const float *a, int sam, int sak, const float *b, int ldb,
        float beta, float *c, int ldc) {
    fastnn_f8 acc[4][2] = {{{0}}};
    int p, i, h;
    for (p = 0; p < k; p++) {
        fastnn_f8 b0 = fastnn_load8(b + p * ldb), b1 = fastnn_load8(b + p * ldb + 8);
        for (i = 0; i < 4; i++) {
            if (i < rows) {
                float s = a[i * sam + p * sak];
                acc[i][0] += s * b0;
                acc[i][1] += s * b1;
            }
        }
    }
    for (i = 0; i < rows; i++) {
        for (h = 0; h < 2; h++) {
            float *ci = c + i * ldc + 8 * h;
            fastnn_f8 out = alpha * acc[i][h];
            if (beta != 0.0f)
                out += beta * fastnn_load8(ci);
            fastnn_store8(ci, out);
        }
    }
}

/* The last cols < 16 columns of the axpy shape, a row at a time: the inner loop runs across
 * columns, so no addition waits on the one before it (a k-inner loop would be latency-bound). */
static inline __attribute__((always_inline)) void fastnn_axpy_narrow(
        int rows, int cols, int k, float alpha, const float *a, int sam, int sak, const float *b,
        int ldb, float beta, float *c, int ldc) {
    int i, j, p;
    for (i = 0; i < rows; i++) {
        float acc[16] = {0};
        for (p = 0; p < k; p++) {
            float s = a[i * sam + p * sak];
            for (j = 0; j < cols; j++)
                acc[j] += s * b[p * ldb + j];
        }
        for (j = 0; j < cols; j++)
            c[i * ldc + j] = fastnn_scale(acc[j], alpha, beta, c + i * ldc + j);
    }
}

static inline __attribute__((always_inline)) void fastnn_gemm_axpy_body(
        int m, int n, int k, float alpha, const float *a, int sam, int sak, const float *b,
        int ldb, float beta, float *c, int ldc) {
    int i, j;
    /* A 16-column panel of B (k x 64 bytes) is reused by every row block. */
    /* `rows` reaches the block as a constant (switch), so its accumulators stay in registers. */
    for (j = 0; j + 16 <= n; j += 16)
        for (i = 0; i < m; i += 4) {
            const float *ai = a + i * sam, *bj = b + j;
            float *cij = c + i * ldc + j;
            switch (m - i < 4 ? m - i : 4) {
            case 4: fastnn_axpy_block16(4, k, alpha, ai, sam, sak, bj, ldb, beta, cij, ldc); break;
            case 3: fastnn_axpy_block16(3, k, alpha, ai, sam, sak, bj, ldb, beta, cij, ldc); break;
            case 2: fastnn_axpy_block16(2, k, alpha, ai, sam, sak, bj, ldb, beta, cij, ldc); break;
            default: fastnn_axpy_block16(1, k, alpha, ai, sam, sak, bj, ldb, beta, cij, ldc);
            }
        }
    if (j < n)
        fastnn_axpy_narrow(m, n - j, k, alpha, a, sam, sak, b + j, ldb, beta, c + j, ldc);
}

/* The two builds of each body: AVX2+FMA, and whatever the compiler flags give. */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FASTNN_HAVE_AVX2_CLONE 1
__attribute__((target("avx2,fma"))) static void fastnn_gemm_dot_avx2(
        int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
        float beta, float *c, int ldc) {
    fastnn_gemm_dot_body(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
__attribute__((target("avx2,fma"))) static void fastnn_gemm_axpy_avx2(
        int m, int n, int k, float alpha, const float *a, int sam, int sak, const float *b,
        int ldb, float beta, float *c, int ldc) {
    fastnn_gemm_axpy_body(m, n, k, alpha, a, sam, sak, b, ldb, beta, c, ldc);
}
#endif

static void fastnn_gemm_dot_base(int m, int n, int k, float alpha, const float *a, int lda,
                                 const float *b, int ldb, float beta, float *c, int ldc) {
    fastnn_gemm_dot_body(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static void fastnn_gemm_axpy_base(int m, int n, int k, float alpha, const float *a, int sam,
                                  int sak, const float *b, int ldb, float beta, float *c, int ldc) {
    fastnn_gemm_axpy_body(m, n, k, alpha, a, sam, sak, b, ldb, beta, c, ldc);
}

/* 1: the AVX2+FMA clones run here; 0: the baseline ones. Decided once, on first use. */
static int fastnn_small_gemm_avx2(void) {
#ifdef FASTNN_HAVE_AVX2_CLONE
    return fastnn_cpu_avx2_fma();
#else
    return 0;
#endif
}

/* C (m, n) = alpha * op(A) @ op(B) + beta * C, the same contract as cblas_sgemm (row-major). */
static void fastnn_small_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
                               const float *a, int lda, const float *b, int ldb, float beta,
                               float *c, int ldc) {
    int avx2 = fastnn_small_gemm_avx2();
    if (!trans_a && trans_b) {
#ifdef FASTNN_HAVE_AVX2_CLONE
        if (avx2) { fastnn_gemm_dot_avx2(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); return; }
#endif
        fastnn_gemm_dot_base(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    /* op(B) = B (k, n): the axpy shape; op(A)(i, p) = a[i * sam + p * sak]. */
    int sam = trans_a ? 1 : lda, sak = trans_a ? lda : 1;
#ifdef FASTNN_HAVE_AVX2_CLONE
    if (avx2) { fastnn_gemm_axpy_avx2(m, n, k, alpha, a, sam, sak, b, ldb, beta, c, ldc); return; }
#endif
    fastnn_gemm_axpy_base(m, n, k, alpha, a, sam, sak, b, ldb, beta, c, ldc);
}

#endif
